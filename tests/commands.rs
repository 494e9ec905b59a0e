//! Commands over a real mosquitto against the real service: signatures, the
//! time window, replays (also after a restart), allow lists, malformed
//! requests, a flood that gets `busy` without stopping recording, locks,
//! exports, backups, recording overrides that survive a restart, snapshots,
//! and the operator CLI.

mod support;

use heldar_edge::commands::auth::{Signed, sign};
use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const OPS_SECRET: &str = "ops-secret-0123456789";
const VIEWER_SECRET: &str = "viewer-secret-abcdef";

fn write_secret(path: &Path, secret: &str) {
    std::fs::write(path, format!("{secret}\n")).expect("secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A node with one synthetic camera, keys `ops` (everything) and `viewer` (status), a backup policy.
fn node(dir: &TempDir, broker: &Broker, id: &str, camera_extra: &str) -> Node {
    write_secret(&dir.join("ops.key"), OPS_SECRET);
    write_secret(&dir.join("viewer.key"), VIEWER_SECRET);
    let backup = dir.join("backup");
    let extra = format!(
        "[[camera]]\nid = \"cam\"\nsource = \"lavfi:testsrc2=size=320x240:rate=10\"\nsegment_s = 2\nsample_fps = 0\n{camera_extra}\n\
         [[backup.destination]]\nid = \"disk\"\nkind = \"local\"\npath = \"{}\"\n\
         [[backup.policy]]\nid = \"now\"\ndestination = \"disk\"\nevery_s = 0\nlookback_s = 0\n\
         [commands]\nauth = \"hmac\"\n\
         [[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\n\
         allow = [\"status\", \"record\", \"snapshot\", \"lock\", \"unlock\", \"export\", \"backup\", \"sweep\", \"reload\"]\n\
         [[commands.key]]\nid = \"viewer\"\nsecret_file = \"viewer.key\"\nallow = [\"status\"]\n",
        backup.display()
    );
    Node::configure(&dir.0, id, &broker.url(), &extra)
}

/// The topic root of the node behind the documented mosquitto ACL.
const ROOT_ACL: &str = "heldar/nvr-01";

/// Signs a request for the node of topic root `root` the way the contract says: over the
/// exact bytes of `args`.
#[allow(clippy::too_many_arguments)]
fn signed(root: &str, name: &str, id: &str, args: &Value, key: &str, secret: &str, ts: UnixMs, nonce: &str) -> String {
    let args = args.to_string();
    let ts = ts.to_rfc3339();
    let sig = sign(secret.as_bytes(), Signed { root, name, id, ts: &ts, nonce }, args.as_bytes());
    format!(
        r#"{{"v":2,"id":"{id}","args":{args},"auth":{{"key":"{key}","ts":"{ts}","nonce":"{nonce}","sig":"{sig}"}}}}"#
    )
}

struct Operator {
    watcher: Watcher,
    root: String,
    next: u32,
    /// Every reply and request seen, for the schema check.
    replies: Vec<Value>,
    requests: Vec<Value>,
}

impl Operator {
    async fn connect(broker: &Broker, node: &str) -> Self {
        let root = format!("heldar/{node}");
        let filters = [format!("{root}/replies/+"), format!("{root}/errors"), format!("{root}/snapshots/+")];
        let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
        let watcher = Watcher::connect(broker.port, &format!("operator-{node}"), true, &filters).await;
        Self { watcher, root, next: 0, replies: Vec::new(), requests: Vec::new() }
    }

    async fn publish(&mut self, name: &str, payload: impl Into<Vec<u8>>) {
        let payload = payload.into();
        if let Ok(request) = serde_json::from_slice::<Value>(&payload)
            && request["auth"].is_object()
        {
            self.requests.push(request);
        }
        let topic = format!("{}/cmd/{name}", self.root);
        self.watcher.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish");
    }

    async fn reply(&mut self, id: &str, timeout: Duration) -> Value {
        let topic = format!("{}/replies/{id}", self.root);
        let reply = self.watcher.next_on(&topic, timeout).await.unwrap_or_else(|| panic!("no reply to {id}")).json();
        self.replies.push(reply.clone());
        reply
    }

    /// Sends a request signed by `ops` now and waits for its reply.
    async fn ops(&mut self, name: &str, args: Value) -> Value {
        self.next += 1;
        let id = format!("t{}", self.next);
        let payload = signed(
            &self.root,
            name,
            &id,
            &args,
            "ops",
            OPS_SECRET,
            UnixMs::now(),
            &format!("nonce-{id}-{}", std::process::id()),
        );
        self.publish(name, payload).await;
        self.reply(&id, 60 * SECOND).await
    }
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error: {reply}"))
}

async fn wait_online(broker: &Broker, node: &str) {
    let topic = format!("heldar/{node}/status");
    let mut status = Watcher::connect(broker.port, &format!("status-{node}"), true, &[topic.as_str()]).await;
    let deadline = tokio::time::Instant::now() + 20 * SECOND;
    loop {
        let message = status.next_on(&topic, deadline - tokio::time::Instant::now()).await.expect("online");
        if message.text() == "online" {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_authorized_once_each_and_audited() {
    let dir = TempDir::new("commands-auth");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = node(&dir, &broker, "cmd", "");
    let mut op = Operator::connect(&broker, "cmd").await;
    node.start(&[]);
    wait_online(&broker, "cmd").await;

    let status = op.ops("status", json!({})).await;
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(status["result"]["config"]["cameras"][0]["id"], "cam");
    assert_eq!(status["result"]["node"], "cmd");

    // The attack table: each refused with its code, and no lock is taken.
    let window = json!({"from": UnixMs(UnixMs::now().0 - 60_000).to_rfc3339(), "to": UnixMs::now().to_rfc3339()});
    let attacks: Vec<(&str, String, &str)> =
        vec![
            ("unsigned", format!(r#"{{"v":2,"id":"unsigned","args":{window}}}"#), "unauthorized"),
            (
                "forged",
                signed(&op.root, "lock", "forged", &window, "ops", "not-the-secret", UnixMs::now(), "nonce-forged1"),
                "unauthorized",
            ),
            (
                "tampered",
                signed(&op.root, "lock", "tampered", &window, "ops", OPS_SECRET, UnixMs::now(), "nonce-tamper1")
                    .replacen(r#""from":""#, r#""from": ""#, 1),
                "unauthorized",
            ),
            (
                "old",
                signed(
                    &op.root,
                    "lock",
                    "old",
                    &window,
                    "ops",
                    OPS_SECRET,
                    UnixMs(UnixMs::now().0 - 60_000),
                    "nonce-old-01",
                ),
                "stale",
            ),
            (
                "future",
                signed(
                    &op.root,
                    "lock",
                    "future",
                    &window,
                    "ops",
                    OPS_SECRET,
                    UnixMs(UnixMs::now().0 + 60_000),
                    "nonce-fut-01",
                ),
                "stale",
            ),
            (
                "viewer",
                signed(&op.root, "lock", "viewer", &window, "viewer", VIEWER_SECRET, UnixMs::now(), "nonce-view-1"),
                "forbidden",
            ),
            (
                "stranger",
                signed(&op.root, "lock", "stranger", &window, "nobody", OPS_SECRET, UnixMs::now(), "nonce-str-01"),
                "unauthorized",
            ),
            ("broken", r#"{"v":2,"id":"broken","args":{"from":}"#.to_string(), "bad_request"),
        ];
    for (id, payload, expected) in &attacks {
        op.publish("lock", payload.clone()).await;
        let reply = op.reply(id, 10 * SECOND).await;
        assert_eq!(code(&reply), *expected, "{id}: {reply}");
    }
    assert_eq!(node.count("SELECT count(*) FROM evidence_locks"), 0, "no attack took a lock");
    assert_eq!(node.count("SELECT count(*) FROM command_audit"), 0, "refused requests are not audited");

    // A replay is refused, also after a restart.
    let once = signed(&op.root, "status", "once", &json!({}), "viewer", VIEWER_SECRET, UnixMs::now(), "nonce-once-1");
    op.publish("status", once.clone()).await;
    assert_eq!(op.reply("once", 10 * SECOND).await["ok"], true);
    op.publish("status", once.clone()).await;
    assert_eq!(code(&op.reply("once", 10 * SECOND).await), "replayed");

    // Malformed: unknown command, bad args, bad envelope; no id → P/errors.
    op.publish(
        "reboot",
        signed(&op.root, "reboot", "rb", &json!({}), "ops", OPS_SECRET, UnixMs::now(), "nonce-rb-001"),
    )
    .await;
    assert_eq!(code(&op.reply("rb", 10 * SECOND).await), "unknown_command");
    let lock = op.ops("lock", json!({"from": "yesterday"})).await;
    assert_eq!(code(&lock), "bad_request", "{lock}");
    // Protocol v1 is refused, naming v2.
    op.publish("status", r#"{"v":1,"id":"v1"}"#).await;
    let v1 = op.reply("v1", 10 * SECOND).await;
    assert_eq!(code(&v1), "bad_request");
    assert!(v1["error"]["message"].as_str().unwrap_or_default().contains("v must be 2"), "{v1}");
    let errors_topic = "heldar/cmd/errors";
    let mut errors = Vec::new();
    op.publish("status", "{not json").await;
    let error = op.watcher.next_on(errors_topic, 10 * SECOND).await.expect("P/errors").json();
    errors.push(error.clone());
    assert!(error["error"].as_str().unwrap().starts_with("bad_json"), "{error}");
    assert_eq!(error["topic"], "heldar/cmd/cmd/status");
    op.publish("status", r#"{"v":2}"#).await;
    let error = op.watcher.next_on(errors_topic, 10 * SECOND).await.expect("P/errors").json();
    errors.push(error.clone());
    assert!(error["error"].as_str().unwrap().starts_with("bad_id"), "{error}");
    op.publish("status", vec![b' '; 70_000]).await;
    let error = op.watcher.next_on(errors_topic, 10 * SECOND).await.expect("P/errors").json();
    errors.push(error.clone());
    assert!(error["error"].as_str().unwrap().starts_with("too_large"), "{error}");

    // Locks by window, by id.
    let (from, to) = (UnixMs(UnixMs::now().0 - 60_000), UnixMs::now());
    let locked =
        op.ops("lock", json!({"from": from.to_rfc3339(), "to": to.to_rfc3339(), "reason": "incident 7"})).await;
    assert_eq!(locked["ok"], true, "{locked}");
    let lock_id = locked["result"]["id"].as_i64().expect("lock id");
    assert_eq!(
        node.count(&format!("SELECT count(*) FROM evidence_locks WHERE id = {lock_id} AND reason = 'incident 7'")),
        1
    );
    let unknown = op.ops("lock", json!({"cameras": ["nope"], "from": from.to_rfc3339(), "to": to.to_rfc3339()})).await;
    assert_eq!(code(&unknown), "not_found");
    let unlocked = op.ops("unlock", json!({"id": lock_id})).await;
    assert_eq!(unlocked["result"]["ids"], json!([lock_id]), "{unlocked}");
    assert_eq!(code(&op.ops("unlock", json!({"id": lock_id})).await), "not_found");

    // Export and backup of what was recorded so far.
    support::wait_for(20 * SECOND, "two segments", || node.count("SELECT count(*) FROM segments") >= 2);
    let export = op.ops("export", json!({"from": from.to_rfc3339(), "to": UnixMs::now().to_rfc3339()})).await;
    assert_eq!(export["ok"], true, "{export}");
    let archive = Path::new(export["result"]["path"].as_str().unwrap()).to_path_buf();
    assert_eq!(std::fs::metadata(&archive).expect("archive").len(), export["result"]["bytes"].as_u64().unwrap());
    assert_eq!(sha256_of(&archive), export["result"]["sha256"].as_str().unwrap());
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("dir");
    let untar = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&unpacked).status().expect("tar");
    assert!(untar.success());
    let manifest: Value = serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().expect("files");
    assert_eq!(files.len() as u64, export["result"]["files"].as_u64().unwrap());
    for file in files {
        assert_eq!(sha256_of(&unpacked.join(file["path"].as_str().unwrap())), file["sha256"].as_str().unwrap());
    }
    let mut progress =
        Watcher::connect(broker.port, "progress", true, &["heldar/cmd/backup/+", "heldar/cmd/events/_node/+"]).await;
    let backup = op.ops("backup", json!({"policy": "now"})).await;
    assert_eq!(backup["ok"], true, "{backup}");
    let job = backup["result"]["job"].as_i64().expect("job");
    let done = progress
        .collect(30 * SECOND, |m| {
            m.iter().any(|m| m.topic.ends_with(&format!("/{job}")) && m.json()["status"] != "running")
        })
        .await;
    let last = done.iter().rev().find(|m| m.topic.ends_with(&format!("/backup/{job}"))).expect("progress").json();
    assert_eq!(last["status"], "done", "{last}");
    assert!(last["files_done"].as_u64().unwrap() >= 2);
    let event = done.iter().find(|m| m.topic.ends_with("/backup_done")).cloned();
    let event = match event {
        Some(event) => event,
        None => progress.next_on("heldar/cmd/events/_node/backup_done", 10 * SECOND).await.expect("backup_done"),
    };
    assert_eq!(event.json()["job"], job);
    assert_eq!(code(&op.ops("backup", json!({"policy": "never"})).await), "not_found");

    // Sweep; then the audit trail holds what changed something, and nothing of the refusals.
    assert_eq!(op.ops("sweep", json!({})).await["ok"], true);
    let audited = node.count("SELECT count(*) FROM command_audit WHERE key = 'ops' AND command IN ('lock', 'unlock', 'export', 'backup', 'sweep')");
    assert_eq!(audited, 9, "lock ×3 (one bad, one not found), unlock ×2, export, backup ×2, sweep");
    assert_eq!(node.count("SELECT count(*) FROM command_audit WHERE command = 'status'"), 0);
    assert_eq!(node.count("SELECT count(*) FROM command_audit WHERE ok = 1 AND command = 'unlock'"), 1);

    // The nonce store survives a restart.
    assert!(node.terminate(20 * SECOND).success());
    node.start(&[]);
    wait_online(&broker, "cmd").await;
    op.publish("status", once).await;
    assert_eq!(code(&op.reply("once", 20 * SECOND).await), "replayed");
    assert!(!node.log().contains(OPS_SECRET) && !node.log().contains(VIEWER_SECRET), "a secret was logged");
    assert!(
        op.replies.len() >= 20 && op.requests.len() >= 15,
        "{} replies, {} requests",
        op.replies.len(),
        op.requests.len()
    );
    support::assert_schema("command-reply.json", &op.replies);
    support::assert_schema("command-request.json", &op.requests);
    support::assert_schema("error.json", &errors);
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_2000_gets_one_reply_each_without_holding_up_recording_or_events() {
    let dir = TempDir::new("commands-flood");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = node(&dir, &broker, "fld", "");
    let mut op = Operator::connect(&broker, "fld").await;
    let mut events = Watcher::connect(broker.port, "events-fld", true, &["heldar/fld/events/#"]).await;
    node.start(&["--emit-test-events", "300"]);
    wait_online(&broker, "fld").await;
    support::wait_for(20 * SECOND, "a first segment", || node.count("SELECT count(*) FROM segments") >= 1);
    let before = node.count("SELECT count(*) FROM segments");
    // Mostly status; every tenth a snapshot, which takes a decode: 4 run, 16 wait, the rest is `busy`.
    let n = 2000;
    for i in 0..n {
        let id = format!("f{i}");
        let (name, args) = if i % 10 == 0 { ("snapshot", json!({"camera": "cam"})) } else { ("status", json!({})) };
        let payload =
            signed(&op.root, name, &id, &args, "ops", OPS_SECRET, UnixMs::now(), &format!("nonce-flood-{i:05}"));
        op.publish(name, payload).await;
    }
    let replies =
        op.watcher.collect(120 * SECOND, |m| m.iter().filter(|m| m.topic.contains("/replies/")).count() >= n).await;
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in replies.iter().filter(|m| m.topic.contains("/replies/")) {
        by_id.entry(m.topic.rsplit('/').next().unwrap().to_string()).or_default().push(m.json());
    }
    if by_id.len() != n {
        let status = op.ops("status", json!({})).await;
        panic!("{} of {n} answered; {}", by_id.len(), status["result"]["mqtt"]);
    }
    assert!(by_id.values().all(|r| r.len() == 1), "exactly one reply each");
    let ok = by_id.values().filter(|r| r[0]["ok"] == true).count();
    let busy = by_id.values().filter(|r| r[0]["error"]["code"] == "busy").count();
    assert_eq!(busy + ok, n, "only ok or busy");
    assert!(ok >= 20, "the queue and the running ones at least: busy {busy}, ok {ok}");
    // Events and recording went on: every test event arrived, seq contiguous; segments kept closing.
    let seen = events.collect(30 * SECOND, |m| m.len() >= 300).await;
    let mut seqs: Vec<i64> = seen.iter().map(|m| m.json()["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    support::wait_for(20 * SECOND, "recording went on", || node.count("SELECT count(*) FROM segments") >= before + 3);
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_overrides_expire_survive_a_restart_and_snapshots_arrive() {
    let dir = TempDir::new("commands-record");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = node(&dir, &broker, "rec", "");
    let mut op = Operator::connect(&broker, "rec").await;
    let mut states = Watcher::connect(broker.port, "states-rec", true, &["heldar/rec/cameras/cam/state"]).await;
    node.start(&[]);
    let state_is = |want: &'static str| move |m: &[Message]| m.last().is_some_and(|m| m.json()["state"] == want);
    assert!(!states.collect(20 * SECOND, state_is("recording")).await.is_empty());

    // A snapshot of the segment being written.
    op.publish(
        "snapshot",
        signed(
            &op.root,
            "snapshot",
            "shot",
            &json!({"camera": "cam"}),
            "ops",
            OPS_SECRET,
            UnixMs::now(),
            "nonce-shot-1",
        ),
    )
    .await;
    let arrived = op
        .watcher
        .collect(30 * SECOND, |m| {
            m.iter().any(|m| m.topic.ends_with("/replies/shot"))
                && m.iter().any(|m| m.topic.ends_with("/snapshots/cam"))
        })
        .await;
    let shot = arrived.iter().find(|m| m.topic.ends_with("/replies/shot")).expect("reply").json();
    assert_eq!(shot["ok"], true, "{shot}");
    assert_eq!((shot["result"]["seq"].as_u64(), shot["result"]["width"].as_u64()), (Some(1), Some(320)));
    let jpeg = arrived.iter().find(|m| m.topic.ends_with("/snapshots/cam")).expect("snapshot");
    assert_eq!(&jpeg.payload[..2], &[0xFF, 0xD8], "a JPEG");
    assert_eq!(jpeg.payload.len() as u64, shot["result"]["bytes"].as_u64().unwrap());
    assert_eq!(shot["result"]["height"], 240, "the camera's size: {shot}");
    let file = dir.join("snapshot.jpg");
    std::fs::write(&file, &jpeg.payload).expect("jpeg");
    assert!(support::plays(&file), "the snapshot decodes");
    let ts = UnixMs::parse_rfc3339(shot["result"]["ts"].as_str().unwrap()).unwrap();
    assert!((UnixMs::now().0 - ts.0).abs() < 10_000, "recent: {shot}");
    assert_eq!(code(&op.ops("snapshot", json!({"camera": "nope"})).await), "not_found");

    // Off for 4 s: the recorder closes its segment, the state says disabled, then recording comes back.
    let segments = node.count("SELECT count(*) FROM segments");
    let off = op.ops("record", json!({"camera": "cam", "mode": "off", "duration_s": 4})).await;
    assert_eq!(off["result"]["mode"], "off", "{off}");
    assert!(!states.collect(10 * SECOND, state_is("disabled")).await.is_empty());
    let closed = node.count("SELECT count(*) FROM segments");
    assert!(closed > segments, "the open segment was closed and indexed");
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(node.count("SELECT count(*) FROM segments"), closed, "no new segment while off");
    assert!(!states.collect(20 * SECOND, state_is("recording")).await.is_empty(), "back after 4 s");
    support::wait_for(10 * SECOND, "segments again", || node.count("SELECT count(*) FROM segments") > closed);
    assert_eq!(node.count("SELECT count(*) FROM record_overrides"), 0);
    support::wait_for(20 * SECOND, "the gap", || {
        node.count("SELECT count(*) FROM recording_gaps WHERE reason = 'recording turned off'") == 1
    });

    // Off for a minute survives a restart.
    assert_eq!(op.ops("record", json!({"camera": "cam", "mode": "off", "duration_s": 60})).await["ok"], true);
    assert!(!states.collect(10 * SECOND, state_is("disabled")).await.is_empty());
    assert!(node.terminate(20 * SECOND).success());
    node.start(&[]);
    wait_online(&broker, "rec").await;
    let after = states.collect(6 * SECOND, |_| false).await;
    assert!(
        after.iter().all(|m| m.json()["state"] == "disabled"),
        "still off after the restart: {:?}",
        after.iter().map(Message::text).collect::<Vec<_>>()
    );
    // On again (the configured mode, no duration): the override is gone.
    let on = op.ops("record", json!({"camera": "cam", "mode": "on"})).await;
    assert_eq!((on["result"]["mode"].as_str(), on["result"]["until"].as_str()), (Some("continuous"), None), "{on}");
    assert!(!states.collect(20 * SECOND, state_is("recording")).await.is_empty());
    assert_eq!(node.count("SELECT count(*) FROM record_overrides"), 0);
    assert_eq!(code(&op.ops("record", json!({"camera": "cam", "mode": "loud"})).await), "bad_request");
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_cli_signs_waits_and_exits_by_the_reply() {
    let dir = TempDir::new("commands-cli");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = node(&dir, &broker, "cli", "");
    node.start(&[]);
    wait_online(&broker, "cli").await;
    let call = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
            .arg("call")
            .args(args)
            .arg("-c")
            .arg(&node.config)
            .output()
            .expect("heldar-edge call")
    };
    let key = dir.join("ops.key");
    let key = key.to_str().unwrap();
    let status = call(&["status", "--key", "ops", "--secret-file", key]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let reply: Value = serde_json::from_slice(&status.stdout).expect("reply JSON");
    assert_eq!(reply["result"]["node"], "cli");
    let from = UnixMs(UnixMs::now().0 - 10_000).to_rfc3339();
    let lock = call(&[
        "lock",
        &format!("from={from}"),
        &format!("to={}", UnixMs::now().to_rfc3339()),
        "--key",
        "ops",
        "--secret-file",
        key,
    ]);
    assert!(lock.status.success(), "{}", String::from_utf8_lossy(&lock.stdout));
    let unsigned = call(&["status"]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unsigned.stdout).contains("unauthorized"));
    assert!(node.terminate(20 * SECOND).success());
}

/// An MQTT client with a user name and password: subscribes to `filter`, returns what arrives.
async fn client_as(
    port: u16,
    user: &str,
    password: &str,
    filter: &str,
) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Message>) {
    let mut options = rumqttc::MqttOptions::new(format!("acl-{user}"), "127.0.0.1", port);
    options.set_credentials(user, password).set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscriber, filter) = (client.clone(), filter.to_string());
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = subscriber.subscribe(filter.as_str(), QoS::AtLeastOnce).await;
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(Message { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain });
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(10 * SECOND, ready_rx.recv()).await.expect("SUBACK");
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_mosquitto_acl_lets_the_operator_command_and_keeps_the_viewer_out() {
    let dir = TempDir::new("commands-acl");
    let acl_port = support::free_port();
    let broker_dir = dir.join("broker");
    std::fs::create_dir_all(&broker_dir).expect("broker dir");
    let passwd = broker_dir.join("passwd");
    for (i, (user, password)) in [("nvr-01", "node-pw"), ("ops", "ops-pw"), ("viewer", "viewer-pw")].iter().enumerate()
    {
        let mut command = Command::new(support::system_binary("mosquitto_passwd", "mosquitto"));
        if i == 0 {
            command.arg("-c");
        }
        let out = command.arg("-b").arg(&passwd).args([user, password]).output().expect("mosquitto_passwd");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let acl = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mosquitto/heldar.acl");
    let listener = format!(
        "listener {acl_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {acl}\n",
        passwd.display()
    );
    let broker = Broker::start_with(&broker_dir, support::free_port(), &listener);
    std::fs::write(dir.join("mqtt.pass"), "node-pw\n").expect("node password");
    write_secret(&dir.join("ops.key"), OPS_SECRET);
    let extra = "username = \"nvr-01\"\npassword_file = \"mqtt.pass\"\n\
                 [[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\nallow = [\"status\"]\n";
    let mut node = Node::configure(&dir.0, "nvr-01", &format!("mqtt://127.0.0.1:{acl_port}"), extra);
    node.start(&[]);
    let (ops, mut ops_rx) = client_as(acl_port, "ops", "ops-pw", "heldar/nvr-01/replies/+").await;
    let (viewer, mut viewer_rx) = client_as(acl_port, "viewer", "viewer-pw", "heldar/nvr-01/replies/+").await;
    let _ = &broker;
    // The operator's signed request is answered (after the node is online).
    let answered = async {
        for attempt in 0..40 {
            let id = format!("acl-ops-{attempt}");
            let payload = signed(
                ROOT_ACL,
                "status",
                &id,
                &json!({}),
                "ops",
                OPS_SECRET,
                UnixMs::now(),
                &format!("nonce-acl-{attempt:03}"),
            );
            ops.publish("heldar/nvr-01/cmd/status", QoS::AtLeastOnce, false, payload).await.expect("publish");
            if let Ok(Some(reply)) = tokio::time::timeout(SECOND, ops_rx.recv()).await {
                return reply.json();
            }
        }
        panic!("the operator got no reply; log:\n{}", node.log());
    }
    .await;
    assert_eq!(answered["ok"], true, "{answered}");
    // The viewer's copy of a valid signed request never reaches the node.
    let stolen =
        signed(ROOT_ACL, "status", "acl-viewer", &json!({}), "ops", OPS_SECRET, UnixMs::now(), "nonce-acl-viewer");
    viewer.publish("heldar/nvr-01/cmd/status", QoS::AtLeastOnce, false, stolen).await.expect("publish");
    let deadline = tokio::time::Instant::now() + 3 * SECOND;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, viewer_rx.recv()).await {
        assert!(!reply.topic.ends_with("/acl-viewer"), "the broker let the viewer's command through: {}", reply.text());
    }
    while let Ok(extra) = ops_rx.try_recv() {
        assert!(!extra.topic.ends_with("/acl-viewer"), "no reply to the viewer's command");
    }
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_camera_forced_on_keeps_what_it_records_meanwhile() {
    let dir = TempDir::new("commands-events-on");
    let broker = Broker::start(&dir.join("broker"));
    let camera =
        "record = \"events\"\n[events]\npre_roll_s = 0\n[storage]\nsweep_interval_s = 1\nmin_free_percent = 0\n";
    let mut node = node(&dir, &broker, "evn", camera);
    let mut op = Operator::connect(&broker, "evn").await;
    node.start(&[]);
    wait_online(&broker, "evn").await;
    // Unlocked footage of an events camera goes at the next sweep (pre_roll_s = 0).
    support::wait_for(20 * SECOND, "a segment recorded and swept", || {
        node.log().contains("segment indexed") && node.log().contains("retention swept")
    });
    assert!(node.count("SELECT count(*) FROM segments") <= 1, "swept as they close");
    // A lock keeps its footage through sweeps that delete the neighbours.
    let (from, to) = (UnixMs::now(), UnixMs(UnixMs::now().0 + 3_000));
    let locked = op.ops("lock", json!({"from": from.to_rfc3339(), "to": to.to_rfc3339()})).await;
    assert_eq!(locked["ok"], true, "{locked}");
    tokio::time::sleep(7 * SECOND).await;
    assert_eq!(op.ops("sweep", json!({})).await["ok"], true);
    let (rows, swept_at) = (node.segments("cam"), UnixMs::now().0);
    assert!(rows.iter().any(|r| r.start_ms < to.0 && r.end_ms > from.0), "the locked footage is kept: {rows:?}");
    // Anything else is a segment that closed after the sweep.
    let neighbours: Vec<_> = rows.iter().filter(|r| r.start_ms >= to.0 || r.end_ms <= from.0).collect();
    assert!(neighbours.iter().all(|r| r.end_ms > swept_at - 2_500), "unlocked neighbours left: {neighbours:?}");
    assert_eq!(op.ops("unlock", json!({"id": locked["result"]["id"]})).await["ok"], true);
    let on = op.ops("record", json!({"camera": "cam", "mode": "on", "duration_s": 8})).await;
    assert_eq!(on["result"]["mode"], "continuous", "{on}");
    tokio::time::sleep(9 * SECOND).await;
    let kept = node.count("SELECT count(*) FROM segments");
    assert!(kept >= 3, "what was recorded while forced on is kept for retain_days: {kept}");
    assert!(
        node.count(&format!("SELECT count(*) FROM segments WHERE end_ms <= {}", to.0)) == 0,
        "the unlocked footage went"
    );
    assert_eq!(node.count("SELECT count(*) FROM record_windows WHERE to_ms - from_ms BETWEEN 7000 AND 9000"), 1);
    tokio::time::sleep(4 * SECOND).await;
    assert!(node.count("SELECT count(*) FROM segments") >= kept, "still kept after the override ended");
    assert!(node.terminate(20 * SECOND).success());
}
