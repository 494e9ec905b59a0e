//! The node on a real mosquitto: birth and last will, clean stop, stats,
//! a broker that is down at start, and the durable outbox across broker
//! outages and `kill -9`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_online_within_2s_and_offline_by_last_will_after_kill_9() {
    let dir = TempDir::new("status");
    let broker = Broker::start(&dir.join("broker"));
    let mut watcher =
        Watcher::connect(broker.port, "watch-status", true, &["heldar/n1/status", "heldar/n1/stats"]).await;
    let mut node = Node::configure(&dir.0, "n1", &broker.url(), "");

    let started = Instant::now();
    node.start(&[]);
    let online = watcher.next_on("heldar/n1/status", 2 * SECOND).await.expect("online within 2 s");
    assert_eq!(online.text(), "online");
    assert!(started.elapsed() < 2 * SECOND);

    let stats = watcher.next_on("heldar/n1/stats", 3 * SECOND).await.expect("stats every second");
    let stats = stats.json();
    assert_eq!(stats["v"], 1);
    assert_eq!(stats["node"], "n1");
    assert_eq!(stats["mqtt"]["connected"], true);
    assert_eq!(stats["outbox"]["depth"], 0);

    node.kill9();
    let offline = watcher.next_on("heldar/n1/status", 5 * SECOND).await.expect("last will");
    assert_eq!(offline.text(), "offline");

    let mut late = Watcher::connect(broker.port, "watch-late", true, &["heldar/n1/status"]).await;
    let retained = late.next_on("heldar/n1/status", 2 * SECOND).await.expect("retained status");
    assert!(retained.retain);
    assert_eq!(retained.text(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_publishes_offline_and_exits_cleanly() {
    let dir = TempDir::new("sigterm");
    let broker = Broker::start(&dir.join("broker"));
    let mut watcher = Watcher::connect(broker.port, "watch-term", true, &["heldar/n2/status"]).await;
    let mut node = Node::configure(&dir.0, "n2", &broker.url(), "");
    node.start(&[]);
    assert_eq!(watcher.next_on("heldar/n2/status", 5 * SECOND).await.expect("online").text(), "online");

    let status = node.terminate(10 * SECOND);
    assert!(status.success(), "exit status {status}");
    assert_eq!(watcher.next_on("heldar/n2/status", 2 * SECOND).await.expect("offline").text(), "offline");
    let wal = dir.join("data/index.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0, "WAL left behind");
    assert!(node.log().contains("stopped"), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_is_joined_when_it_appears() {
    let dir = TempDir::new("late-broker");
    let port = support::free_port();
    let mut node = Node::configure(&dir.0, "n3", &format!("mqtt://127.0.0.1:{port}"), "");
    node.start(&[]);
    std::thread::sleep(3 * SECOND);
    assert!(node.log().contains("heldar-edge running"), "the service started without a broker:\n{}", node.log());

    let broker = Broker::start_on(&dir.join("broker"), port);
    let mut watcher = Watcher::connect(broker.port, "watch-late-broker", true, &["heldar/n3/status"]).await;
    let status = watcher.next_on("heldar/n3/status", 15 * SECOND).await.expect("online once the broker is up");
    assert_eq!(status.text(), "online");
}

/// Sequence numbers of the `test` events among `messages`, with how often each arrived.
fn seqs(messages: &[Message]) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for m in messages.iter().filter(|m| m.topic.ends_with("/test")) {
        let json = m.json();
        assert_eq!(json["type"], "test");
        *seen.entry(json["seq"].as_i64().expect("seq")).or_insert(0) += 1;
    }
    seen
}

fn assert_all_arrived(seen: &BTreeMap<i64, usize>, count: i64) {
    let missing: Vec<i64> = (1..=count).filter(|s| !seen.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {count} events missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seen.keys().next_back(), Some(&count), "no event beyond {count}");
}

/// Creates the persistent session of `client` on the broker, then stops the broker.
async fn persistent_watcher_then_broker_down(broker: &mut Broker, client: &str, filter: &str) {
    let watcher = Watcher::connect(broker.port, client, false, &[filter]).await;
    watcher.disconnect().await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_1000_events_emitted_while_the_broker_is_down() {
    let dir = TempDir::new("outbox-outage");
    let mut broker = Broker::start(&dir.join("broker"));
    persistent_watcher_then_broker_down(&mut broker, "watch-outbox", "heldar/n4/events/#").await;

    let mut node = Node::configure(&dir.0, "n4", &broker.url(), "");
    node.start(&["--emit-test-events", "1000"]);
    support::wait_for(20 * SECOND, "1000 events in the outbox", || {
        node.count("SELECT count(*) FROM outbox WHERE sent_ms IS NULL") == 1000
    });

    broker.restart();
    let mut watcher = Watcher::connect(broker.port, "watch-outbox", false, &["heldar/n4/events/#"]).await;
    let messages = watcher.collect(30 * SECOND, |m| seqs(m).len() >= 1000).await;
    let seen = seqs(&messages);
    assert_all_arrived(&seen, 1000);
    support::wait_for(10 * SECOND, "every event marked sent", || {
        node.count("SELECT count(*) FROM outbox WHERE sent_ms IS NULL") == 0
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_events_survive_kill_9_before_the_broker_returns() {
    let dir = TempDir::new("outbox-kill");
    let mut broker = Broker::start(&dir.join("broker"));
    persistent_watcher_then_broker_down(&mut broker, "watch-kill", "heldar/n5/events/#").await;

    let mut node = Node::configure(&dir.0, "n5", &broker.url(), "");
    node.start(&["--emit-test-events", "500"]);
    support::wait_for(20 * SECOND, "500 events in the outbox", || node.count("SELECT count(*) FROM outbox") == 500);
    node.kill9();

    broker.restart();
    node.start(&[]);
    let mut watcher = Watcher::connect(broker.port, "watch-kill", false, &["heldar/n5/events/#"]).await;
    let messages = watcher.collect(30 * SECOND, |m| seqs(m).len() >= 500).await;
    assert_all_arrived(&seqs(&messages), 500);

    // seq carries on after the restart: the next event is 501.
    assert_eq!(node.count("SELECT value FROM node_state WHERE key = 'event_seq'"), 500);
}
