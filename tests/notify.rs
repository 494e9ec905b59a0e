//! systemd's notify protocol over a real datagram socket the test owns, as
//! systemd would set it up for `Type=notify` with `WatchdogSec=2`.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{Node, TempDir};

const SECOND: Duration = Duration::from_secs(1);

/// Datagrams received within `timeout`, with when they arrived, until `done`.
fn receive(
    socket: &UnixDatagram,
    timeout: Duration,
    mut done: impl FnMut(&[(Instant, String)]) -> bool,
) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) && Instant::now() < deadline {
        socket.set_read_timeout(Some((deadline - Instant::now()).max(Duration::from_millis(1)))).expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            got.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }
    got
}

fn node_with_socket(dir: &TempDir, name: &str) -> (Node, UnixDatagram, String) {
    let path = dir.join(name);
    let socket = UnixDatagram::bind(&path).expect("bind");
    // No broker listens here: READY=1 must not wait for one.
    let broker = format!("mqtt://127.0.0.1:{}", support::free_port());
    let node = Node::configure(&dir.0, "ntf", &broker, "");
    (node, socket, path.display().to_string())
}

#[test]
fn ready_then_watchdog_pings_then_stopping_without_a_broker() {
    let dir = TempDir::new("notify");
    let (mut node, socket, path) = node_with_socket(&dir, "notify.sock");
    let started = Instant::now();
    node.start_with_env(&[], &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "2000000")]);
    let ready = receive(&socket, 10 * SECOND, |got| got.iter().any(|(_, m)| m.contains("READY=1")));
    let (at, _) = ready.iter().find(|(_, m)| m.contains("READY=1")).expect("READY=1");
    assert!(*at - started < 5 * SECOND, "READY=1 after {:?}, with no broker", *at - started);
    let pings = receive(&socket, 5 * SECOND, |_| false);
    let times: Vec<Instant> = pings.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).map(|(t, _)| *t).collect();
    assert!(times.len() >= 4, "pings: {:?}", pings.iter().map(|(_, m)| m).collect::<Vec<_>>());
    let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(longest <= Duration::from_millis(1300), "a gap of {longest:?} between pings (at most every second)");
    assert!(pings.iter().any(|(_, m)| m.contains("STATUS=0 cameras, mqtt disconnected")), "{pings:?}");
    let (tx, rx) = std::sync::mpsc::channel();
    let stopping = std::thread::scope(|scope| {
        scope.spawn(|| {
            let got = receive(&socket, 15 * SECOND, |got| got.iter().any(|(_, m)| m.contains("STOPPING=1")));
            let _ = tx.send(got);
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(node.terminate(20 * SECOND).success(), "a clean exit after SIGTERM");
        rx.recv().expect("received")
    });
    assert!(stopping.iter().any(|(_, m)| m.contains("STOPPING=1")), "{stopping:?}");
}

#[test]
fn a_stalled_index_stops_the_pings() {
    let dir = TempDir::new("notify-stall");
    let (mut node, socket, path) = node_with_socket(&dir, "stall.sock");
    node.start_with_env(&["--test-stall-store-after", "2"], &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "2000000")]);
    let before = receive(&socket, 10 * SECOND, |got| got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count() >= 1);
    assert!(before.iter().any(|(_, m)| m.contains("WATCHDOG=1")), "pings while the index answers");
    let _ = receive(&socket, 3 * SECOND, |_| false);
    let after = receive(&socket, 4 * SECOND, |_| false);
    assert!(!after.iter().any(|(_, m)| m.contains("WATCHDOG=1")), "no ping once the index hangs: {after:?}");
    assert!(after.iter().any(|(_, m)| m.contains("STATUS=not answering: the index did not answer")), "{after:?}");
    node.kill9();
}
