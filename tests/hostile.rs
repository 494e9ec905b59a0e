//! Hostile input against the real binary and a real mosquitto (set up as
//! docs/mqtt.md says, `max_packet_size` included): a request signed for one
//! node is worthless on another sharing the key; a signed command never runs
//! twice, also across clock steps (libfaketime); worker statuses and huge
//! publishes cannot buy memory or cost the connection; a flood of unsigned
//! requests does not hold up signed ones.

mod support;

use heldar_edge::commands::auth::{Signed, sign};
use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Broker, FakeClock, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

/// One test at a time: the flood's latencies are measured, and the size test pushes 240 MB
/// through the broker.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const SECRET: &str = "fleet-secret-0123456789";

/// A node with one fleet key `ops` allowed everything, and no camera.
fn fleet_node(dir: &Path, broker: &Broker, id: &str) -> Node {
    let dir = dir.join(id);
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("ops.key");
    std::fs::write(&key, SECRET).expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let extra = "\n[commands]\nauth = \"hmac\"\n[[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\n\
                 allow = [\"status\", \"sweep\", \"lock\"]\n";
    Node::configure(&dir, id, &broker.url(), extra)
}

/// A request signed with the fleet key for the node of topic root `root`, at `ts`.
fn request(root: &str, name: &str, id: &str, args: &Value, ts: UnixMs, nonce: &str) -> String {
    let (args, ts) = (args.to_string(), ts.to_rfc3339());
    let sig = sign(SECRET.as_bytes(), Signed { root, name, id, ts: &ts, nonce }, args.as_bytes());
    format!(r#"{{"v":2,"id":"{id}","args":{args},"auth":{{"key":"ops","ts":"{ts}","nonce":"{nonce}","sig":"{sig}"}}}}"#)
}

async fn ask(watcher: &mut Watcher, root: &str, name: &str, id: &str, payload: &str) -> Value {
    let topic = format!("{root}/cmd/{name}");
    watcher.client.publish(topic, QoS::AtLeastOnce, false, payload.to_string()).await.expect("publish");
    let reply = watcher.next_on(&format!("{root}/replies/{id}"), 15 * SECOND).await;
    reply.unwrap_or_else(|| panic!("no reply to {id} from {root}")).json()
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or(if reply["ok"] == true { "ok" } else { "?" })
}

/// Waits until every node of `roots` says `online`.
async fn wait_online(watcher: &mut Watcher, roots: &[&str]) {
    let online = |m: &[support::Message], root: &str| {
        m.iter().any(|m| m.topic == format!("{root}/status") && m.text() == "online")
    };
    let seen = watcher.collect(20 * SECOND, |m| roots.iter().all(|root| online(m, root))).await;
    for root in roots {
        assert!(online(&seen, root), "{root} did not come online");
    }
}

/// A client that only publishes.
async fn publisher(broker: &Broker, id: &str) -> Watcher {
    Watcher::connect(broker.port, id, true, &[&format!("nothing/{id}")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_for_one_node_is_refused_by_another_that_shares_the_key() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("fleet");
    let broker = Broker::start(&dir.join("broker"));
    let (mut a, mut b) = (fleet_node(&dir.0, &broker, "nvr-a"), fleet_node(&dir.0, &broker, "nvr-b"));
    let mut op = Watcher::connect(broker.port, "fleet-op", true, &["heldar/+/replies/+", "heldar/+/status"]).await;
    a.start(&[]);
    b.start(&[]);
    wait_online(&mut op, &["heldar/nvr-a", "heldar/nvr-b"]).await;
    let captured = request("heldar/nvr-a", "sweep", "cap-1", &json!({}), UnixMs::now(), "nonce-captured-1");
    // Replayed to node B: the signature names A, so B refuses it.
    assert_eq!(code(&ask(&mut op, "heldar/nvr-b", "sweep", "cap-1", &captured).await), "unauthorized");
    // On A it runs once; A's own replay is refused.
    assert_eq!(code(&ask(&mut op, "heldar/nvr-a", "sweep", "cap-1", &captured).await), "ok");
    assert_eq!(code(&ask(&mut op, "heldar/nvr-a", "sweep", "cap-1", &captured).await), "replayed");
    assert_eq!(b.count("SELECT count(*) FROM command_audit"), 0, "nothing ran on B");
    assert_eq!(a.count("SELECT count(*) FROM command_audit"), 1, "it ran once on A");
    assert!(a.terminate(15 * SECOND).success() && b.terminate(15 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_command_never_runs_twice_also_across_clock_steps() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("clock-replay");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = fleet_node(&dir.0, &broker, "nvr-t");
    let clock = FakeClock::new(&dir.0);
    let mut op =
        Watcher::connect(broker.port, "clock-op", true, &["heldar/nvr-t/replies/+", "heldar/nvr-t/status"]).await;
    clock.start(&mut node);
    wait_online(&mut op, &["heldar/nvr-t"]).await;
    let root = "heldar/nvr-t";
    let first = request(root, "sweep", "once", &json!({}), UnixMs::now(), "nonce-stepped-1");
    assert_eq!(code(&ask(&mut op, root, "sweep", "once", &first).await), "ok");
    // The clock steps 11 minutes ahead; a command signed for that time runs (and would once
    // have pruned the first nonce as old); then the clock steps back.
    clock.set_offset(660);
    let ahead = request(root, "status", "ahead", &json!({}), UnixMs(UnixMs::now().0 + 660_000), "nonce-ahead-01");
    assert_eq!(code(&ask(&mut op, root, "status", "ahead", &ahead).await), "ok");
    clock.set_offset(0);
    // The byte-identical first request, within its ±30 s window: refused.
    let again = ask(&mut op, root, "sweep", "once", &first).await;
    assert_eq!(code(&again), "replayed", "{again}");
    assert_eq!(node.count("SELECT count(*) FROM command_audit WHERE request_id = 'once'"), 1, "it ran once");
    assert!(node.terminate(15 * SECOND).success());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_statuses_and_huge_publishes_cannot_buy_memory_or_the_connection() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("hostile-sizes");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = fleet_node(&dir.0, &broker, "nvr-s");
    let root = "heldar/nvr-s";
    let mut watch = Watcher::connect(
        broker.port,
        "sizes-watch",
        true,
        &["heldar/nvr-s/errors", "heldar/nvr-s/stats", "heldar/nvr-s/status"],
    )
    .await;
    node.start(&[]);
    wait_online(&mut watch, &[root]).await;
    let before = rss_kib(node.pid());
    // 16 workers each over the status limit but under the broker's: refused unread.
    for w in 0..16 {
        let status = format!(r#"{{"v":1,"state":"online","model":"{}"}}"#, "m".repeat(100 << 10));
        watch
            .client
            .publish(format!("{root}/workers/w{w}/status"), QoS::AtLeastOnce, true, status)
            .await
            .expect("publish");
    }
    let errors = watch.collect(20 * SECOND, |m| m.iter().filter(|m| m.topic.ends_with("/errors")).count() >= 16).await;
    let too_large = errors.iter().filter(|m| m.topic.ends_with("/errors") && m.text().contains("too_large")).count();
    assert_eq!(too_large, 16, "every oversized status refused on P/errors");
    // Home Assistant's status has its limit too.
    watch.client.publish("homeassistant/status", QoS::AtLeastOnce, false, vec![b'o'; 5000]).await.expect("publish");
    let errors = watch.collect(10 * SECOND, |m| m.iter().any(|m| m.text().contains("homeassistant/status"))).await;
    let ha = errors.iter().find(|m| m.topic.ends_with("/errors") && m.text().contains("homeassistant/status"));
    assert!(ha.is_some_and(|m| m.text().contains("too_large")), "an oversized HA status is refused: {errors:?}");
    // 16 workers × 14 MB and one 17 MiB detection: the broker refuses them (its
    // max_packet_size); the node neither grows nor loses its connection.
    for w in 0..16 {
        let hostile = publisher(&broker, &format!("hostile-{w}")).await;
        let status = format!(r#"{{"v":1,"state":"online","model":"{}"}}"#, "m".repeat(14 << 20));
        let _ = hostile.client.publish(format!("{root}/workers/big{w}/status"), QoS::AtLeastOnce, true, status).await;
    }
    let hostile = publisher(&broker, "hostile-det").await;
    let _ = hostile.client.publish(format!("{root}/detections/x"), QoS::AtLeastOnce, false, vec![b'x'; 17 << 20]).await;
    let stats = watch.collect(8 * SECOND, |_| false).await;
    let last = stats.iter().rev().find(|m| m.topic.ends_with("/stats")).expect("stats").json();
    assert_eq!(last["mqtt"]["connects"], 1, "the node kept its one connection: {}", last["mqtt"]);
    assert_eq!(last["mqtt"]["connected"], true);
    assert_eq!(last["workers"]["online"], 0, "no oversized status counted: {}", last["workers"]);
    let after = rss_kib(node.pid());
    eprintln!("service RSS before {before} KiB, after the status and size floods {after} KiB");
    assert!(after < before + 8 * 1024, "RSS grew from {before} to {after} KiB");
    assert!(node.terminate(15 * SECOND).success());
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Signed `status` every 250 ms for `rounds`; the latencies in ms, sorted, and the codes.
async fn signed_rounds(op: &mut Watcher, root: &str, tag: &str, rounds: usize) -> (Vec<f64>, Vec<String>) {
    let (mut latencies, mut codes) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("{tag}-{i}");
        let payload = request(root, "status", &id, &json!({}), UnixMs::now(), &format!("nonce-{tag}-{i:04}"));
        let sent = Instant::now();
        let reply = ask(op, root, "status", &id, &payload).await;
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        codes.push(code(&reply).to_string());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, codes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_flood_does_not_hold_up_signed_commands() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("hostile-flood");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = fleet_node(&dir.0, &broker, "nvr-f");
    let root = "heldar/nvr-f";
    let mut op =
        Watcher::connect(broker.port, "flood-op", true, &["heldar/nvr-f/replies/+", "heldar/nvr-f/status"]).await;
    node.start(&[]);
    wait_online(&mut op, &[root]).await;
    let (quiet, _) = signed_rounds(&mut op, root, "quiet", 20).await;

    let flooder = publisher(&broker, "flooder").await;
    let flood = tokio::spawn(async move {
        // 10,000 in about 4 s: 2,500 a second, faster than the node may answer refusals.
        let started = Instant::now();
        for i in 0..10_000u32 {
            let payload = format!(r#"{{"v":2,"id":"junk-{i}","args":{{}}}}"#);
            flooder.client.publish("heldar/nvr-f/cmd/status", QoS::AtMostOnce, false, payload).await.expect("flood");
            if i % 25 == 24 {
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    started + Duration::from_millis(u64::from(i + 1) / 5 * 2),
                ))
                .await;
            }
        }
        eprintln!("10,000 unsigned requests published in {:?}", started.elapsed());
        flooder
    });
    let (flooded, codes) = signed_rounds(&mut op, root, "flooded", 20).await;
    eprintln!("flooded latencies (ms): {flooded:?}");
    let _flooder = flood.await.expect("flood task");
    let mut stats = Watcher::connect(broker.port, "flood-stats", true, &["heldar/nvr-f/stats"]).await;
    let (q99, f99) = (percentile(&quiet, 0.99), percentile(&flooded, 0.99));
    eprintln!(
        "signed status: quiet p50 {:.2} ms p99 {q99:.2} ms; under the flood p50 {:.2} ms p99 {f99:.2} ms; ratio {:.2}",
        percentile(&quiet, 0.5),
        percentile(&flooded, 0.5),
        f99 / q99
    );
    assert!(codes.iter().all(|c| c == "ok"), "every signed request ran: {codes:?}");
    // A flood that held signed commands up would slow most of them: p90 within 2× of the quiet
    // run, and none held for a round. Of 20 samples p99 is the slowest one, and a single
    // scheduler hiccup on a shared 2-core machine (44 ms against 13 ms, seen in CI) is enough
    // to double it; below 10 ms that noise is as large as the effect, so 10 ms is the floor.
    let (q90, f90) = (percentile(&quiet, 0.9), percentile(&flooded, 0.9));
    assert!(f90 <= 2.0 * q90.max(10.0), "p90 {f90:.2} ms under the flood against {q90:.2} ms without");
    assert!(f99 < 250.0, "a signed request waited {f99:.2} ms under the flood");
    let report = stats.collect(3 * SECOND, |_| false).await;
    let last = report.last().expect("stats").json();
    let unanswered = last["rejects"]["unanswered"].as_u64().unwrap_or(0);
    assert!(unanswered > 0 && unanswered < 10_000, "refusals beyond the rate go unanswered: {}", last["rejects"]);
    assert_eq!(last["mqtt"]["publishes_dropped"], 0, "{}", last["mqtt"]);
    eprintln!("rejects under the flood: {}", last["rejects"]);
    assert!(node.terminate(15 * SECOND).success());
}
