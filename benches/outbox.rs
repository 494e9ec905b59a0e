//! Outbox throughput: events persisted to SQLite, published with QoS 1 and
//! acknowledged through a local mosquitto, against the floor of the same
//! broker path without persistence (bare rumqttc QoS 1 publishes), measured in
//! the same run. `cargo bench --bench outbox [-- EVENTS]`.

#[path = "../tests/support/mod.rs"]
mod support;

use heldar_edge::mqtt::{self, SessionSettings};
use heldar_edge::outbox::{self, EventSink, EventType, NewEvent};
use heldar_edge::protocol::{BrokerUrl, Topics};
use heldar_edge::store::Store;
use heldar_edge::wallclock::UnixMs;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

fn main() {
    let events: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = support::TempDir::new("bench-outbox");
    let broker = support::Broker::start(&dir.join("broker"));
    let bare = runtime.block_on(bare_qos1(broker.port, events));
    let (emit, acked) = runtime.block_on(through_outbox(broker.port, &dir, events));
    println!("events: {events}");
    println!("bare rumqttc QoS 1 publish+PUBACK:      {:>9.0} msg/s", events as f64 / bare.as_secs_f64());
    println!("outbox emit (persisted, committed):     {:>9.0} events/s", events as f64 / emit.as_secs_f64());
    println!("outbox emit -> all acked and marked:    {:>9.0} events/s", events as f64 / acked.as_secs_f64());
    println!("ratio outbox/bare:                      {:>9.2}", bare.as_secs_f64() / acked.as_secs_f64());
}

async fn bare_qos1(port: u16, count: usize) -> Duration {
    let mut options = MqttOptions::new("bench-bare", "127.0.0.1", port);
    options.set_inflight(64);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        let payload = vec![b'x'; 200];
        for _ in 0..count {
            client.publish("bench/bare", QoS::AtLeastOnce, false, payload.clone()).await.expect("publish");
        }
        client
    });
    let mut acks = 0;
    while acks < count {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("poll") {
            acks += 1;
        }
    }
    let elapsed = start.elapsed();
    drop(publisher.await);
    elapsed
}

async fn through_outbox(port: u16, dir: &support::TempDir, count: usize) -> (Duration, Duration) {
    let (store, thread) = Store::open(&dir.join("index.db")).expect("store");
    let wake = Arc::new(Notify::new());
    let settings = SessionSettings {
        url: BrokerUrl::parse(&format!("mqtt://127.0.0.1:{port}")).expect("url"),
        client_id: "bench-node".into(),
        credentials: None,
        ca_pem: None,
        keepalive: Duration::from_secs(15),
        max_packet_bytes: 1 << 20,
        max_incoming_bytes: 1 << 20,
        backoff: (Duration::from_millis(100), Duration::from_secs(1)),
    };
    let (session, handle) =
        mqtt::session::session(&settings, Topics::new("bench/node"), store.clone(), wake.clone(), Vec::new())
            .expect("session");
    let session_task = tokio::spawn(session.run());
    let sink = EventSink::new(store.clone(), wake, 10_000_000);
    while !handle.stats().connected.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    // Producers emit concurrently, as cameras and zones do.
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let sink = sink.clone();
            tokio::spawn(async move {
                for i in (p..count).step_by(8) {
                    let event = NewEvent::new(EventType::Test, Some("bench"), UnixMs::now()).with("n", i);
                    sink.emit(event).await.expect("emit");
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("producer");
    }
    let emitted = start.elapsed();
    loop {
        let counts = store.call(outbox::counts).await.expect("counts");
        if counts.unsent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked = start.elapsed();
    handle.shutdown().await;
    let _ = session_task.await;
    drop((sink, store, handle));
    thread.join();
    (emitted, acked)
}
