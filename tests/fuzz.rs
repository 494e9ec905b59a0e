//! End-to-end fuzzing of every topic the node subscribes to, against a real mosquitto
//! and the real binary: with a fixed seed, a few thousand random and mutated payloads
//! on `P/cmd/<name>` (every command and some unknown names), `P/detections/<cam>`,
//! `P/workers/<worker>/status` and Home Assistant's `homeassistant/status`, paced at
//! about 500 messages a second. The node must not exit, must answer every request whose
//! id can be read exactly once (on `P/replies/<id>`), must stay within the board's
//! `rss_budget`, must keep its events contiguous, and must still answer a signed
//! `status` at the end.
//!
//! `HELDAR_FUZZ_SEED=N` runs another seed, `HELDAR_FUZZ_MESSAGES=N` another count.

mod support;

use heldar_edge::commands::auth::{Signed, sign};
use heldar_edge::commands::request::readable_id;
use heldar_edge::protocol::COMMAND_NAMES;
use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const NODE: &str = "fz";
const ROOT: &str = "heldar/fz";
const CAMERA: &str = "cam";
const WORKER: &str = "w-fuzz";
const SECRET: &str = "fuzz-secret-0123456789abcdef";
const SEED: u64 = 0x5EED_F022_2026_1124;
const MESSAGES: usize = 6000;
/// Messages per second.
const RATE: u64 = 500;
/// The generic board's `max_message_bytes` (64 KiB): larger requests are refused unread.
const MAX_MESSAGE_BYTES: usize = 65_536;
/// The node's limit for a worker status.
const STATUS_MAX_BYTES: usize = 4096;
/// Home Assistant's birth message limit.
const BIRTH_MAX_BYTES: usize = 64;
/// Unknown command names (each a single topic level without wildcards).
const UNKNOWN_NAMES: &[&str] = &["nope", "STATUS", "status2", "", "ünïcødé", "status ", ".", "-", "reload\u{200b}"];

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Text of up to `max` characters, ASCII with multi-byte characters among it.
    fn text(&mut self, max: usize) -> String {
        let n = self.below(max + 1);
        (0..n)
            .map(|_| match self.below(10) {
                0 => self.pick(&['ü', '☃', '😀', '日', '\u{2028}', 'é', '"', '\\']),
                1 => self.pick(&[' ', '\n', '\t', '\u{7f}', '\u{1}']),
                _ => (b'a' + self.below(26) as u8) as char,
            })
            .collect()
    }

    fn token(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        (0..len).map(|_| self.pick(CHARS) as char).collect()
    }
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Values that replace a field's own ("retyped").
const RETYPES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "2.5",
    "1e308",
    "1e999",
    "-0",
    "123456789012345678901234567890",
    "NaN",
    "Infinity",
    "-Infinity",
    "\"2\"",
    "\"\"",
    "[]",
    "{}",
    "[1,2,3]",
    "{\"a\":{\"b\":{\"c\":[]}}}",
    "\"\\u0000\"",
    "\"\\ud800\"",
];

/// A JSON object as fields of raw text, so fields can be dropped, retyped and duplicated.
#[derive(Clone, Default)]
struct Object(Vec<(String, String)>);

impl Object {
    fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.push((key.to_string(), value.into()));
        self
    }

    fn render(&self, rng: &mut Rng) -> String {
        let ws = |rng: &mut Rng| if rng.chance(10) { rng.pick(&[" ", "\n", "\t ", "  \r\n"]) } else { "" };
        let fields: Vec<String> =
            self.0.iter().map(|(k, v)| format!("{}{}:{}{}", ws(rng), quoted(k), ws(rng), v)).collect();
        format!("{{{}}}", fields.join(","))
    }

    /// Drops, retypes, duplicates or adds fields, `n` times.
    fn mutate(&mut self, rng: &mut Rng, n: usize) {
        for _ in 0..n {
            let len = self.0.len();
            match rng.below(5) {
                0 if len > 0 => {
                    self.0.remove(rng.below(len));
                }
                1 if len > 0 => {
                    let at = rng.below(len);
                    self.0[at].1 = retyped(rng);
                }
                2 if len > 0 => {
                    let field = self.0[rng.below(len)].clone();
                    let at = rng.below(len + 1);
                    self.0.insert(at, field);
                }
                3 => {
                    let key = rng.pick(&["x", "extra", "v2", "ID", "id ", "args", "auth"]).to_string();
                    let value = retyped(rng);
                    self.0.push((key, value));
                }
                _ => {
                    let at = rng.below(len + 1);
                    self.0.insert(at, (rng.text(6), quoted(&rng.text(20))));
                }
            }
        }
    }
}

fn retyped(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => {
            let depth = rng.pick(&[5, 64, 127, 128, 129, 1000, 20_000]);
            nested(rng, depth)
        }
        1 => quoted(&rng.text(2000)),
        _ => rng.pick(RETYPES).to_string(),
    }
}

/// `depth` nested arrays or objects.
fn nested(rng: &mut Rng, depth: usize) -> String {
    if rng.chance(50) {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth)
    }
}

/// Byte-level edits: truncation (anywhere, so also inside a multi-byte character), flips,
/// insertions of random bytes or hostile tokens, deletions, duplications.
fn mutate_bytes(rng: &mut Rng, mut bytes: Vec<u8>, n: usize) -> Vec<u8> {
    for _ in 0..n {
        let len = bytes.len();
        match rng.below(6) {
            0 => bytes.truncate(rng.below(len + 1)),
            1 if len > 0 => {
                let at = rng.below(len);
                bytes[at] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let insert: Vec<u8> = match rng.below(4) {
                    0 => {
                        let n = 1 + rng.below(8);
                        rng.bytes(n)
                    }
                    1 => rng
                        .pick(&["NaN", "Infinity", "1e999", "-", "\"", "\\", "\u{fffd}", "\u{1F600}"])
                        .as_bytes()
                        .to_vec(),
                    2 => rng.pick(&[",", ":", "{", "}", "[", "]", "\"id\":\"x\"", "\"v\":2"]).as_bytes().to_vec(),
                    _ => vec![0xE2, 0x82],
                };
                bytes.splice(at..at, insert);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                bytes.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {}
        }
    }
    bytes
}

/// Pads `payload`, a JSON object ending in `}`, with a `"pad"` field to exactly `size` bytes
/// (the pad's text is ASCII and multi-byte characters).
fn padded(payload: &[u8], size: usize) -> Vec<u8> {
    let head = &payload[..payload.len() - 1];
    let field = b",\"pad\":\"";
    let room = size.saturating_sub(head.len() + field.len() + 2);
    let mut pad = String::new();
    while pad.len() + 3 <= room {
        pad.push(if pad.len().is_multiple_of(7) { '☃' } else { 'x' });
    }
    while pad.len() < room {
        pad.push('x');
    }
    let mut out = head.to_vec();
    out.extend_from_slice(field);
    out.extend_from_slice(pad.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// The topics fuzzed, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Command,
    Detections,
    WorkerStatus,
    HomeAssistant,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Command => "P/cmd/<name>",
            Kind::Detections => "P/detections/<cam>",
            Kind::WorkerStatus => "P/workers/<worker>/status",
            Kind::HomeAssistant => "homeassistant/status",
        }
    }

    fn of_topic(topic: &str) -> Option<Self> {
        let rest = topic.strip_prefix(ROOT).unwrap_or(topic);
        if rest.starts_with("/cmd/") {
            Some(Kind::Command)
        } else if rest.starts_with("/detections/") {
            Some(Kind::Detections)
        } else if rest.starts_with("/workers/") {
            Some(Kind::WorkerStatus)
        } else if topic == "homeassistant/status" {
            Some(Kind::HomeAssistant)
        } else {
            None
        }
    }
}

/// The id a reply to `payload` goes to, by the rule of docs/commands.md: none over
/// `max_message_bytes` (refused unread); for JSON, its `id` when that is a string of
/// `[A-Za-z0-9_-]{1,64}`; for anything else, the id `readable_id` can read.
fn answerable_id(payload: &[u8]) -> Option<String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => value
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| {
                (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(str::to_string),
        Err(_) => readable_id(payload),
    }
}

/// The latest frame offered to workers, to answer it.
#[derive(Clone)]
struct Frame {
    seq: u64,
    ts: String,
}

/// What the fuzzer has sent and expects.
struct Fuzzer {
    rng: Rng,
    next_id: u64,
    /// Every id a reply is expected on, with the command name.
    expected: HashMap<String, String>,
    frame: Option<Frame>,
    /// Worker ids fuzzed (a pool, so statuses come and go).
    workers: Vec<String>,
}

impl Fuzzer {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let workers = (0..40).map(|i| format!("w{i}-{}", rng.token(4))).collect();
        Self { rng, next_id: 0, expected: HashMap::new(), frame: None, workers }
    }

    /// A fresh request id: valid, unique, 1..64 long; or one the node cannot read.
    fn id(&mut self) -> String {
        self.next_id += 1;
        let rng = &mut self.rng;
        match rng.below(20) {
            0 => "has space".to_string(),
            1 => "x".repeat(65),
            2 => "ünï".to_string(),
            3 => String::new(),
            4 => format!("{}/{}", self.next_id, rng.token(3)),
            _ => {
                let base = format!("f{}", self.next_id);
                let extra = rng.below(64 - base.len() + 1);
                format!("{base}{}", rng.token(extra))
            }
        }
    }

    fn window(&mut self) -> (String, String) {
        let now = UnixMs::now().0;
        let from = now - self.rng.below(120_000) as i64;
        let to = from + self.rng.below(90_000) as i64 - 10_000;
        let time = |rng: &mut Rng, ms: i64| match rng.below(12) {
            0 => rng.text(30),
            1 => UnixMs(ms).to_rfc3339().replace('Z', "+02:00"),
            2 => UnixMs(ms).to_rfc3339()[..19].to_string(),
            _ => UnixMs(ms).to_rfc3339(),
        };
        (time(&mut self.rng, from), time(&mut self.rng, to))
    }

    /// Args for command `name`: mostly well formed for it, sometimes anything.
    fn args(&mut self, name: &str) -> Object {
        let (from, to) = self.window();
        let rng = &mut self.rng;
        let camera = quoted(if rng.chance(80) { CAMERA } else { rng.pick(&["nope", "", "CAM", "ünï"]) });
        let cameras = if rng.chance(50) { format!("[{camera}]") } else { "[]".to_string() };
        let args = Object::default();
        let mut args = match name {
            "record" => args
                .with("camera", camera)
                .with("mode", quoted(rng.pick(&["on", "events", "on", "events", "off", "bogus"])))
                .with("duration_s", rng.pick(&["1", "2", "0", "-1", "2678401", "1e20", "1.5"]).to_string()),
            "snapshot" => args.with("camera", camera),
            "lock" => {
                let reason = rng.pick(&[10, 200, 201, 300]);
                args.with("cameras", cameras)
                    .with("from", quoted(&from))
                    .with("to", quoted(&to))
                    .with("reason", quoted(&rng.text(reason)))
            }
            "unlock" if rng.chance(50) => args.with("id", (rng.below(20) as i64 - 2).to_string()),
            "unlock" => args.with("cameras", cameras).with("from", quoted(&from)).with("to", quoted(&to)),
            "export" => args
                .with("cameras", cameras)
                .with("from", quoted(&from))
                .with("to", quoted(&to))
                .with("cut", rng.pick(&["true", "false"]).to_string())
                .with("destination", quoted(rng.pick(&["nope", "", "disk"]))),
            "backup" => args.with("policy", quoted(rng.pick(&["nightly", "", "now"]))),
            _ if rng.chance(70) => args,
            _ => args.with(&rng.text(5), quoted(&rng.text(30))),
        };
        if self.rng.chance(20) {
            let n = 1 + self.rng.below(3);
            args.mutate(&mut self.rng, n);
        }
        args
    }

    /// A request on `P/cmd/<name>`: signed (as `ops`, now) or not, mutated or not.
    fn command(&mut self) -> (String, Vec<u8>) {
        let name = if self.rng.chance(75) {
            self.rng.pick(COMMAND_NAMES).to_string()
        } else {
            self.rng.pick(UNKNOWN_NAMES).to_string()
        };
        let payload = match self.rng.below(100) {
            0..=3 => {
                let n = self.rng.below(300);
                self.rng.bytes(n)
            }
            4..=6 => self.rng.text(300).into_bytes(),
            7 => Vec::new(),
            8..=9 => format!("{{\"v\":2,\"id\":{},\"args\":{}}}", quoted(&self.id()), nested(&mut self.rng, 20_000))
                .into_bytes(),
            _ => self.envelope(&name),
        };
        let payload = match self.rng.below(100) {
            // Long requests: up to, at and just over max_message_bytes.
            0..=3 if payload.ends_with(b"}") => {
                let size = self.rng.pick(&[
                    10_000,
                    MAX_MESSAGE_BYTES - 1,
                    MAX_MESSAGE_BYTES,
                    MAX_MESSAGE_BYTES + 1,
                    MAX_MESSAGE_BYTES + 3000,
                    70_000,
                ]);
                padded(&payload, size)
            }
            _ => payload,
        };
        (name, payload)
    }

    fn envelope(&mut self, name: &str) -> Vec<u8> {
        let id = self.id();
        let args = self.args(name).render(&mut self.rng);
        let signed = self.rng.chance(25);
        let mut envelope = Object::default().with("v", "2").with("id", quoted(&id));
        if signed || self.rng.chance(70) {
            envelope = envelope.with("args", args.clone());
        }
        if signed || self.rng.chance(30) {
            let ts = if self.rng.chance(90) {
                UnixMs::now().to_rfc3339()
            } else {
                UnixMs(UnixMs::now().0 - 3_600_000).to_rfc3339()
            };
            let nonce = format!("n{}-{}", self.next_id, self.rng.token(8));
            let key = if self.rng.chance(90) { "ops" } else { "nobody" };
            let sig = if signed {
                sign(SECRET.as_bytes(), Signed { root: ROOT, name, id: &id, ts: &ts, nonce: &nonce }, args.as_bytes())
            } else {
                format!("{:064x}", self.rng.next())
            };
            let mut auth = Object::default()
                .with("key", quoted(key))
                .with("ts", quoted(&ts))
                .with("nonce", quoted(&nonce))
                .with("sig", quoted(&sig));
            if self.rng.chance(10) {
                auth.mutate(&mut self.rng, 1);
            }
            envelope = envelope.with("auth", auth.render(&mut self.rng));
        }
        // Field order is not significant.
        if self.rng.chance(30) {
            let fields = &mut envelope.0;
            for i in (1..fields.len()).rev() {
                let j = self.rng.below(i + 1);
                fields.swap(i, j);
            }
        }
        if self.rng.chance(25) {
            let n = 1 + self.rng.below(3);
            envelope.mutate(&mut self.rng, n);
        }
        let bytes = envelope.render(&mut self.rng).into_bytes();
        if self.rng.chance(35) {
            let n = 1 + self.rng.below(3);
            mutate_bytes(&mut self.rng, bytes, n)
        } else {
            bytes
        }
    }

    /// A worker's answer on `P/detections/<cam>`: to the latest frame or not, mutated or not.
    fn detections(&mut self) -> (String, Vec<u8>) {
        if let Some(frame) = self.frame.clone()
            && self.rng.chance(40)
        {
            return (format!("{ROOT}/detections/{CAMERA}"), self.valid_detections(&frame));
        }
        let rng = &mut self.rng;
        let camera =
            if rng.chance(85) { CAMERA.to_string() } else { rng.pick(&["nope", "", "CAM", "ünï"]).to_string() };
        let (seq, ts) = match &self.frame {
            Some(f) if rng.chance(70) => (f.seq.to_string(), quoted(&f.ts)),
            Some(f) => (
                rng.pick(&["0", "-1", "1e999", "18446744073709551616", "\"1\""]).to_string(),
                quoted(&UnixMs::parse_rfc3339(&f.ts).map_or(String::new(), |t| UnixMs(t.0 + 1).to_rfc3339())),
            ),
            None => ("1".to_string(), quoted(&UnixMs::now().to_rfc3339())),
        };
        let count = if rng.chance(3) { 101 } else { rng.below(6) };
        let items: Vec<String> = (0..count)
            .map(|_| {
                let x = rng.below(80) as f64 / 100.0;
                let y = rng.below(80) as f64 / 100.0;
                let mut d = Object::default()
                    .with("label", quoted(rng.pick(&["person", "person", "car", "Person!", "", "fire truck"])))
                    .with("confidence", rng.pick(&["0.9", "0.5", "1", "0", "1.5", "-0.1"]).to_string())
                    .with("bbox", format!("[{x},{y},0.1,0.2]"))
                    .with("track_id", rng.pick(&["\"t1\"", "\"t2\"", "7", "[7]", "\"\"", "null"]).to_string());
                if rng.chance(20) {
                    d = d.with("attributes", rng.pick(&["{\"colour\":\"red\"}", "\"red\"", "null"]).to_string());
                }
                if rng.chance(10) {
                    d.mutate(rng, 1);
                }
                d.render(rng)
            })
            .collect();
        let worker =
            if rng.chance(80) { WORKER.to_string() } else { rng.pick(&["w 1", "", "ünï", "w2"]).to_string() };
        let mut message = Object::default()
            .with("v", "1")
            .with("worker", quoted(&worker))
            .with("camera", quoted(&camera))
            .with("seq", seq)
            .with("ts", ts)
            .with("detections", format!("[{}]", items.join(",")));
        if rng.chance(20) {
            let n = 1 + rng.below(3);
            message.mutate(rng, n);
        }
        let mut payload = message.render(rng).into_bytes();
        payload = match rng.below(100) {
            0..=4 => {
                let n = rng.below(400);
                rng.bytes(n)
            }
            5..=8 => {
                let size = rng.pick(&[MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1, 70_000, 20_000]);
                padded(&payload, size)
            }
            9..=30 => {
                let n = 1 + rng.below(3);
                mutate_bytes(rng, payload, n)
            }
            _ => payload,
        };
        (format!("{ROOT}/detections/{camera}"), payload)
    }

    /// A well-formed answer to `frame` from one of the workers: tracks walking about the
    /// picture, so the zone has something to report.
    fn valid_detections(&mut self, frame: &Frame) -> Vec<u8> {
        let rng = &mut self.rng;
        let worker =
            if rng.chance(50) { WORKER.to_string() } else { self.workers[rng.below(self.workers.len())].clone() };
        let items: Vec<Value> = (0..rng.below(4))
            .map(|_| {
                let (x, y) = (rng.below(80) as f64 / 100.0, rng.below(70) as f64 / 100.0);
                serde_json::json!({
                    "label": rng.pick(&["person", "car"]),
                    "confidence": 0.5 + rng.below(50) as f64 / 100.0,
                    "bbox": [x, y, 0.1, 0.2],
                    "track_id": format!("t{}", rng.below(12)),
                })
            })
            .collect();
        serde_json::json!({"v": 1, "worker": worker, "camera": CAMERA, "seq": frame.seq, "ts": frame.ts, "detections": items})
            .to_string()
            .into_bytes()
    }

    /// A status on `P/workers/<worker>/status`.
    fn worker_status(&mut self) -> (String, Vec<u8>) {
        let rng = &mut self.rng;
        let worker = if rng.chance(90) {
            self.workers[rng.below(self.workers.len())].clone()
        } else {
            rng.pick(&["has space", "", "ünï", "x".repeat(65).as_str(), "-"]).to_string()
        };
        let labels: Vec<String> =
            (0..rng.below(6)).map(|_| quoted(rng.pick(&["person", "car", "Person", "", "a b"]))).collect();
        let mut status = Object::default()
            .with("v", if rng.chance(95) { "1" } else { "2" })
            .with("state", quoted(rng.pick(&["online", "offline", "online", "busy"])))
            .with("labels", format!("[{}]", labels.join(",")))
            .with("max_fps", rng.pick(&["5", "0.5", "0", "-1", "null", "1e400"]).to_string())
            .with("model", quoted(&rng.text(40)));
        if rng.chance(20) {
            let n = 1 + rng.below(3);
            status.mutate(rng, n);
        }
        let payload = status.render(rng).into_bytes();
        let payload = match rng.below(100) {
            0..=3 => Vec::new(),
            4..=8 => {
                let n = rng.below(300);
                rng.bytes(n)
            }
            9..=13 => {
                let size = rng.pick(&[STATUS_MAX_BYTES, STATUS_MAX_BYTES + 1, 20_000, MAX_MESSAGE_BYTES + 1]);
                padded(&payload, size)
            }
            14..=17 => {
                // 65 labels (over the 64 allowed), or many long ones over 4 KiB.
                let n = rng.pick(&[65, 200]);
                let labels: Vec<String> = (0..n).map(|i| quoted(&format!("label {i}"))).collect();
                format!("{{\"v\":1,\"state\":\"online\",\"labels\":[{}]}}", labels.join(",")).into_bytes()
            }
            18..=35 => {
                let n = 1 + rng.below(3);
                mutate_bytes(rng, payload, n)
            }
            _ => payload,
        };
        (format!("{ROOT}/workers/{worker}/status"), payload)
    }

    /// Home Assistant's birth, last will, or something else.
    fn birth(&mut self) -> Vec<u8> {
        let rng = &mut self.rng;
        match rng.below(10) {
            0..=2 => b"online".to_vec(),
            3..=4 => b"offline".to_vec(),
            5 => Vec::new(),
            6 => "o".repeat(rng.pick(&[BIRTH_MAX_BYTES, BIRTH_MAX_BYTES + 1, 5000])).into_bytes(),
            7 => {
                let n = rng.below(100);
                rng.bytes(n)
            }
            8 => mutate_bytes(rng, b"online".to_vec(), 1),
            _ => rng.text(70).into_bytes(),
        }
    }

    /// The next message to send: (kind, topic, payload, command name when a command).
    fn message(&mut self) -> (Kind, String, Vec<u8>, Option<String>) {
        match self.rng.below(100) {
            0..=49 => {
                let (name, payload) = self.command();
                (Kind::Command, format!("{ROOT}/cmd/{name}"), payload, Some(name))
            }
            50..=79 => {
                let (topic, payload) = self.detections();
                (Kind::Detections, topic, payload, None)
            }
            80..=94 => {
                let (topic, payload) = self.worker_status();
                (Kind::WorkerStatus, topic, payload, None)
            }
            _ => (Kind::HomeAssistant, "homeassistant/status".to_string(), self.birth(), None),
        }
    }
}

/// Counts per topic for the report.
#[derive(Default)]
struct Counts {
    sent: usize,
    expected_replies: usize,
    replies: usize,
    errors: usize,
    bytes: usize,
}

/// Samples the node's RSS every second, and notices when it exits.
struct RssMonitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, usize, Option<String>)>,
}

impl RssMonitor {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0u64, 0usize);
            while !stopped.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let field =
                    |key: &str| status.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string());
                let state = field("State:").unwrap_or_default();
                if state.is_empty() || state.starts_with('Z') || state.starts_with('X') {
                    return (peak, samples, Some(format!("the node exited (state {state:?})")));
                }
                let rss = field("VmRSS:").and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
                peak = peak.max(rss);
                samples += 1;
                std::thread::sleep(SECOND);
            }
            (peak, samples, None)
        });
        Self { stop, thread }
    }

    /// Peak VmRSS in KiB, samples taken, and why the node is gone if it is.
    fn finish(self) -> (u64, usize, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("monitor")
    }
}

/// The generic board's `rss_budget`, in KiB, as board/generic.toml sets it.
fn rss_budget_kib() -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/board/generic.toml");
    let board: toml::Table = toml::from_str(&std::fs::read_to_string(path).expect("board/generic.toml")).expect("toml");
    let budget = board["limits"]["rss_budget"].as_str().expect("rss_budget");
    heldar_edge::config::size::parse_byte_size(budget).expect("a size") / 1024
}

fn signed_request(name: &str, id: &str, args: &str) -> String {
    let ts = UnixMs::now().to_rfc3339();
    let nonce = format!("final-{id}-{}", std::process::id());
    let sig = sign(SECRET.as_bytes(), Signed { root: ROOT, name, id, ts: &ts, nonce: &nonce }, args.as_bytes());
    format!(r#"{{"v":2,"id":"{id}","args":{args},"auth":{{"key":"ops","ts":"{ts}","nonce":"{nonce}","sig":"{sig}"}}}}"#)
}

/// Everything the observer saw, by what it is.
#[derive(Default)]
struct Seen {
    replies: BTreeMap<String, Vec<Value>>,
    errors: Vec<Value>,
    online: bool,
}

impl Seen {
    fn take(&mut self, fuzzer: &mut Fuzzer, messages: Vec<Message>) {
        for m in messages {
            if let Some(id) = m.topic.strip_prefix(&format!("{ROOT}/replies/")) {
                let reply: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                self.replies.entry(id.to_string()).or_default().push(reply);
            } else if m.topic == format!("{ROOT}/errors") {
                self.errors.push(serde_json::from_slice(&m.payload).unwrap_or(Value::Null));
            } else if m.topic == format!("{ROOT}/frames/{CAMERA}") {
                let newline = m.payload.iter().position(|b| *b == b'\n').unwrap_or(0);
                if let Ok(header) = serde_json::from_slice::<Value>(&m.payload[..newline])
                    && let (Some(seq), Some(ts)) = (header["seq"].as_u64(), header["ts"].as_str())
                {
                    fuzzer.frame = Some(Frame { seq, ts: ts.to_string() });
                }
            } else if m.topic == format!("{ROOT}/status") {
                self.online = m.payload == b"online";
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_on_every_subscribed_topic() {
    let started = Instant::now();
    let seed = std::env::var("HELDAR_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let total = std::env::var("HELDAR_FUZZ_MESSAGES").ok().and_then(|s| s.parse().ok()).unwrap_or(MESSAGES);
    let budget_kib = rss_budget_kib();
    eprintln!("fuzz: seed {seed:#x}, {total} messages at {RATE}/s, rss_budget {budget_kib} KiB");

    let dir = TempDir::new("fuzz");
    let broker = Broker::start(&dir.join("broker"));
    let secret = dir.join("ops.key");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let all: Vec<String> = COMMAND_NAMES.iter().map(|n| format!("\"{n}\"")).collect();
    let extra = format!(
        "[[camera]]\nid = \"{CAMERA}\"\nsource = \"lavfi:testsrc2=size=160x120:rate=10\"\nsegment_s = 2\nsample_fps = 2\n\
         [[camera.zone]]\nid = \"yard\"\npolygon = [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]]\n\
         [commands]\nauth = \"hmac\"\n\
         [[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\nallow = [{}]\n\
         [homeassistant]\ndiscovery = true\n",
        all.join(", ")
    );
    let mut node = Node::configure(&dir.0, NODE, &broker.url(), &extra);

    // A persistent subscriber to the events, there before the first one.
    let events_filter = format!("{ROOT}/events/#");
    let mut events = Watcher::connect(broker.port, "fuzz-events", false, &[events_filter.as_str()]).await;
    let filters = [
        format!("{ROOT}/replies/+"),
        format!("{ROOT}/errors"),
        format!("{ROOT}/frames/{CAMERA}"),
        format!("{ROOT}/status"),
    ];
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    let mut observer = Watcher::connect(broker.port, "fuzz-observer", true, &filters).await;
    node.start(&["--emit-test-events", "50"]);
    let monitor = RssMonitor::start(node.pid());

    let mut fuzzer = Fuzzer::new(seed);
    let mut seen = Seen::default();
    // A worker online, so frames are offered and detections can answer them.
    observer
        .client
        .publish(
            format!("{ROOT}/workers/{WORKER}/status"),
            QoS::AtLeastOnce,
            true,
            r#"{"v":1,"state":"online","labels":["person","car"]}"#,
        )
        .await
        .expect("publish");
    let deadline = Instant::now() + 30 * SECOND;
    while fuzzer.frame.is_none() || !seen.online {
        assert!(Instant::now() < deadline, "no frame offered within 30 s; log:\n{}", node.log());
        let messages = observer.collect(SECOND / 5, |_| false).await;
        seen.take(&mut fuzzer, messages);
    }
    eprintln!("fuzz: node online, first frame after {:.1} s", started.elapsed().as_secs_f64());

    // Fuzz, paced at RATE messages a second.
    let mut counts: BTreeMap<Kind, Counts> = BTreeMap::new();
    let mut by_name: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let fuzz_start = tokio::time::Instant::now();
    let mut skipped = 0;
    let mut sent = 0;
    while sent < total {
        let (kind, topic, payload, name) = fuzzer.message();
        if kind == Kind::Command {
            // Every id answered must be unique: a mutation that made an id seen before is not sent.
            if let Some(id) = answerable_id(&payload) {
                if fuzzer.expected.contains_key(&id) {
                    skipped += 1;
                    continue;
                }
                let name = name.clone().unwrap_or_default();
                fuzzer.expected.insert(id, name.clone());
                counts.entry(kind).or_default().expected_replies += 1;
                by_name.entry(name).or_default().1 += 1;
            }
            by_name.entry(name.unwrap_or_default()).or_default().0 += 1;
        }
        let c = counts.entry(kind).or_default();
        c.sent += 1;
        c.bytes += payload.len();
        observer.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish");
        sent += 1;
        if sent % 10 == 0 {
            tokio::time::sleep_until(fuzz_start + Duration::from_millis(sent as u64 * 1000 / RATE)).await;
            let messages = observer.collect(Duration::from_millis(1), |_| false).await;
            seen.take(&mut fuzzer, messages);
        }
    }
    let fuzz_s = fuzz_start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: {sent} sent in {fuzz_s:.1} s ({:.0}/s), {skipped} regenerated for a repeated id",
        sent as f64 / fuzz_s
    );

    // Every readable request answered: wait for the last replies (signed commands may run a while).
    let deadline = Instant::now() + 60 * SECOND;
    loop {
        let missing = fuzzer.expected.keys().filter(|id| !seen.replies.contains_key(*id)).count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        let messages = observer.collect(SECOND / 2, |_| false).await;
        seen.take(&mut fuzzer, messages);
    }
    // A little longer, so a second reply would be seen.
    let messages = observer.collect(2 * SECOND, |_| false).await;
    seen.take(&mut fuzzer, messages);

    // Still answering a signed status.
    let status = signed_request("status", "final-status", "{}");
    observer.client.publish(format!("{ROOT}/cmd/status"), QoS::AtLeastOnce, false, status).await.expect("publish");
    let reply = observer.next_on(&format!("{ROOT}/replies/final-status"), 30 * SECOND).await;
    let (peak_kib, samples, exited) = monitor.finish();
    let reply = reply
        .unwrap_or_else(|| panic!("no reply to a signed status after the fuzzing; log tail:\n{}", tail(&node.log())));
    let status = reply.json();
    assert_eq!(status["ok"], true, "{status}");
    let stats = &status["result"];

    // Events contiguous: every seq from 1 to the last one, whatever arrived twice.
    let last_seq = stats["outbox"]["last_seq"].as_u64().expect("outbox.last_seq");
    let mut seqs = BTreeSet::new();
    let mut event_messages = 0;
    let deadline = Instant::now() + 30 * SECOND;
    while seqs.range(1..=last_seq).count() < last_seq as usize && Instant::now() < deadline {
        for m in events.collect(SECOND / 2, |_| false).await {
            event_messages += 1;
            seqs.insert(m.json()["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {}", m.text())));
        }
    }
    for m in events.collect(SECOND / 2, |_| false).await {
        event_messages += 1;
        seqs.insert(m.json()["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {}", m.text())));
    }
    let max_seq = seqs.last().copied().unwrap_or(0);

    // The report.
    for e in &seen.errors {
        if let Some(kind) = e["topic"].as_str().and_then(Kind::of_topic) {
            counts.entry(kind).or_default().errors += 1;
        }
    }
    for (id, replies) in &seen.replies {
        if fuzzer.expected.contains_key(id) {
            counts.entry(Kind::Command).or_default().replies += replies.len();
        }
    }
    eprintln!(
        "fuzz: {:<28} {:>6} {:>10} {:>8} {:>9} {:>10}",
        "topic", "sent", "readable", "replies", "P/errors", "bytes"
    );
    for (kind, c) in &counts {
        eprintln!(
            "fuzz: {:<28} {:>6} {:>10} {:>8} {:>9} {:>10}",
            kind.label(),
            c.sent,
            c.expected_replies,
            c.replies,
            c.errors,
            c.bytes
        );
    }
    for (name, (sent, readable)) in &by_name {
        let replies: usize = fuzzer
            .expected
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(id, _)| seen.replies.get(id).map_or(0, Vec::len))
            .sum();
        eprintln!("fuzz:   P/cmd/{:<21} {:>6} {:>10} {:>8}", format!("{name:?}"), sent, readable, replies);
    }
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for reply in seen.replies.values().flatten() {
        let code = if reply["ok"] == true { "ok" } else { reply["error"]["code"].as_str().unwrap_or("?") };
        *codes.entry(code.to_string()).or_default() += 1;
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for e in &seen.errors {
        let reason = e["error"].as_str().unwrap_or("?").split(':').next().unwrap_or("?").to_string();
        *reasons.entry(reason).or_default() += 1;
    }
    eprintln!("fuzz: reply codes {codes:?}");
    eprintln!("fuzz: P/errors reasons {reasons:?}");
    eprintln!("fuzz: node stats: mqtt {} outbox {}", stats["mqtt"], stats["outbox"]);
    eprintln!(
        "fuzz: node stats: workers {} detections {} zones {}",
        stats["workers"], stats["detections"]["accepted"], stats["zones"]
    );
    eprintln!("fuzz: node stats: rejects {}", stats["rejects"]);
    eprintln!(
        "fuzz: peak VmRSS {peak_kib} KiB of {budget_kib} KiB ({samples} samples); events: {} messages, seq 1..={max_seq}, last_seq {last_seq}",
        event_messages
    );

    // The verdicts.
    assert!(exited.is_none(), "{}; log tail:\n{}", exited.unwrap_or_default(), tail(&node.log()));
    let missing: Vec<&String> = fuzzer.expected.keys().filter(|id| !seen.replies.contains_key(*id)).collect();
    let twice: Vec<(&String, usize)> =
        seen.replies.iter().filter(|(_, r)| r.len() > 1).map(|(id, r)| (id, r.len())).collect();
    let unexpected: Vec<&String> =
        seen.replies.keys().filter(|id| !fuzzer.expected.contains_key(*id) && *id != "final-status").collect();
    assert!(
        missing.is_empty(),
        "{} readable requests got no reply, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(twice.is_empty(), "requests answered more than once: {twice:?}");
    assert!(unexpected.is_empty(), "replies to ids no request could be read for: {unexpected:?}");
    for (id, replies) in &seen.replies {
        let reply = &replies[0];
        assert!(reply["v"] == 1 && reply["id"] == id.as_str() && reply["ok"].is_boolean(), "reply on {id}: {reply}");
    }
    assert!(samples >= 5, "RSS sampled {samples} times only");
    assert!(peak_kib <= budget_kib, "peak VmRSS {peak_kib} KiB over the board's rss_budget of {budget_kib} KiB");
    assert!(last_seq >= 50, "the 50 test events at least: last_seq {last_seq}");
    let gaps: Vec<u64> = (1..=max_seq).filter(|s| !seqs.contains(s)).collect();
    assert!(
        gaps.is_empty() && max_seq >= last_seq,
        "events not contiguous: missing seq {gaps:?} of 1..={max_seq} (last_seq {last_seq})"
    );

    let exit = node.terminate(15 * SECOND);
    assert!(exit.success(), "the node did not stop cleanly: {exit:?}");
    eprintln!("fuzz: done in {:.1} s", started.elapsed().as_secs_f64());
}

/// The end of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
