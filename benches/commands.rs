//! Commands through a local mosquitto and the real service, each against a
//! baseline measured in the same run:
//! 1. round trip of a signed `status`: as `heldar-edge call` does it (connect,
//!    subscribe, publish, reply), and on a kept connection; against a bare MQTT
//!    echo (publish to itself through the broker) on a kept connection;
//! 2. replies per second under a burst of 2,000 signed requests;
//! 3. reload time, and the longest hole in the timeline of a camera the reload
//!    does not touch, over three reloads.
//!
//! `cargo bench --bench commands [-- ROUNDS]` (default 200 round trips).

#[path = "../tests/support/mod.rs"]
mod support;

use heldar_edge::commands::auth::{Signed, sign};
use heldar_edge::commands::client::{Call, call};
use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use support::{Broker, Node, TempDir, Watcher};

const SECRET: &str = "bench-secret-0123456789";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!("p50 {:.2} ms, p99 {:.2} ms", percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// The bench node's topic root.
const ROOT: &str = "heldar/bch";

fn signed(name: &str, id: &str, args: &Value, nonce: &str) -> String {
    let (args, ts) = (args.to_string(), UnixMs::now().to_rfc3339());
    let sig = sign(SECRET.as_bytes(), Signed { root: ROOT, name, id, ts: &ts, nonce }, args.as_bytes());
    format!(r#"{{"v":2,"id":"{id}","args":{args},"auth":{{"key":"ops","ts":"{ts}","nonce":"{nonce}","sig":"{sig}"}}}}"#)
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    runtime.block_on(run(rounds));
}

async fn run(rounds: usize) {
    let dir = TempDir::new("bench-commands");
    let broker = Broker::start(&dir.join("broker"));
    std::fs::write(dir.join("ops.key"), SECRET).expect("key");
    std::fs::set_permissions(dir.join("ops.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let camera = |id: &str, retain: u32| {
        format!(
            "[[camera]]\nid = \"{id}\"\nsource = \"lavfi:testsrc2=size=320x240:rate=10\"\nsegment_s = 2\nsample_fps = 0\nretain_days = {retain}\n"
        )
    };
    let keys = "[[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\nallow = [\"status\", \"reload\"]\n";
    let mut node =
        Node::configure(&dir.0, "bch", &broker.url(), &format!("{keys}{}{}", camera("a", 7), camera("b", 7)));
    node.start(&[]);
    let mut op = Watcher::connect(broker.port, "bench-op", true, &["heldar/bch/replies/+", "bench/echo"]).await;
    support::wait_for(Duration::from_secs(20), "segments", || node.count("SELECT count(*) FROM segments") >= 2);

    // 1. Round trips.
    let mut echo = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = Instant::now();
        op.client.publish("bench/echo", QoS::AtLeastOnce, false, format!("{i}")).await.expect("echo");
        op.next_on("bench/echo", Duration::from_secs(10)).await.expect("echo back");
        echo.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut kept = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let id = format!("rt{i}");
        let started = Instant::now();
        let payload = signed("status", &id, &json!({}), &format!("nonce-rt-{i:05}"));
        op.client.publish("heldar/bch/cmd/status", QoS::AtLeastOnce, false, payload).await.expect("publish");
        op.next_on(&format!("heldar/bch/replies/{id}"), Duration::from_secs(10)).await.expect("reply");
        kept.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let config = heldar_edge::config::load(&node.config).expect("config");
    let mut cli = Vec::with_capacity(rounds / 4);
    for _ in 0..(rounds / 4).max(10) {
        let request = Call {
            name: "status".into(),
            args: json!({}),
            key: Some(("ops".into(), SECRET.into())),
            timeout: Duration::from_secs(10),
        };
        let started = Instant::now();
        let reply = call(&config, &request).await.expect("call");
        assert_eq!(reply["ok"], true, "{reply}");
        cli.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!("round trip, bare MQTT echo through the broker: {}", summary(echo.clone()));
    println!("round trip, signed status on a kept connection: {}", summary(kept.clone()));
    println!("round trip, as heldar-edge call (connect, subscribe, publish, reply): {}", summary(cli));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    println!("  ratio kept/echo at p50: {:.2}", median(kept) / median(echo));

    // 2. A burst of 2,000.
    let n = 2000;
    let started = Instant::now();
    for i in 0..n {
        let payload = signed("status", &format!("b{i}"), &json!({}), &format!("nonce-burst-{i:05}"));
        op.client.publish("heldar/bch/cmd/status", QoS::AtLeastOnce, false, payload).await.expect("publish");
    }
    let replies = op
        .collect(Duration::from_secs(120), |m| m.iter().filter(|m| m.topic.contains("/replies/b")).count() >= n)
        .await;
    let took = started.elapsed().as_secs_f64();
    let replies: Vec<Value> = replies.iter().filter(|m| m.topic.contains("/replies/b")).map(|m| m.json()).collect();
    let busy = replies.iter().filter(|r| r["error"]["code"] == "busy").count();
    println!(
        "burst of {n}: {} replies in {took:.2} s = {:.0} replies/s ({} ok, {busy} busy)",
        replies.len(),
        replies.len() as f64 / took,
        replies.len() - busy
    );

    // 3. Reloads: camera b changes, a must record through them without a hole.
    let mut reloads = Vec::new();
    for (i, retain) in [3, 5, 7].into_iter().enumerate() {
        let text = format!(
            "[node]\nid = \"bch\"\ndata_dir = \"data\"\n\n[mqtt]\nurl = \"{}\"\nstats_interval_s = 1\n{keys}{}{}",
            broker.url(),
            camera("a", 7),
            camera("b", retain)
        );
        std::fs::write(&node.config, text).expect("config");
        let id = format!("rl{i}");
        let started = Instant::now();
        op.client
            .publish(
                "heldar/bch/cmd/reload",
                QoS::AtLeastOnce,
                false,
                signed("reload", &id, &json!({}), &format!("nonce-reload-{i}")),
            )
            .await
            .expect("reload");
        let reply =
            op.next_on(&format!("heldar/bch/replies/{id}"), Duration::from_secs(30)).await.expect("reply").json();
        reloads.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(reply["ok"], true, "{reply}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let segments = node.segments("a");
    let longest_hole = segments.windows(2).map(|w| w[1].start_ms - w[0].end_ms).max().unwrap_or(0);
    println!(
        "reload (three, camera b changed): {} each; camera a's longest hole across them {longest_hole} ms over {} segments",
        reloads.iter().map(|ms| format!("{ms:.1} ms")).collect::<Vec<_>>().join(", "),
        segments.len()
    );
    assert!(node.terminate(Duration::from_secs(20)).success());
}
