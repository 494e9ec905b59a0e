//! Retention on a small real file system (a tmpfs mounted by the test; the
//! suite runs as root): recording fills it, the sweeper holds the free-space
//! floor oldest first, keeps evidence-locked footage, and reports
//! `storage_pressure` once when only locked footage is left, also across reloads.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::{Broker, Message, Node, TempDir, Tmpfs, Watcher};

const SECOND: Duration = Duration::from_secs(1);

fn lock_all_time(node: &Node, camera: &str, from_ms: i64, to_ms: i64) {
    let conn = rusqlite::Connection::open(node.index()).expect("index");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    conn.execute(
        "INSERT INTO evidence_locks (camera, from_ms, to_ms, event_id, reason, created_ms) VALUES (?1, ?2, ?3, NULL, 'test', 0)",
        rusqlite::params![camera, from_ms, to_ms],
    )
    .expect("lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_floor_holds_locked_footage_stays_and_pressure_is_reported_once() {
    let dir = TempDir::new("retention");
    let broker = Broker::start(&dir.join("broker"));
    // Room for the floor, the next 10 s of writing (about 10 MB) and the locked segment, as
    // on any real disk: a smaller one would find itself about to fill in the first seconds.
    let disk = Tmpfs::mount(&dir.join("rec"), "40m");
    let toml = format!(
        "\n[storage]\nrecordings_dir = \"{}\"\nmin_free_percent = 40\nsweep_interval_s = 2\n\n[[camera]]\nid = \"busy\"\n\
         source = \"lavfi:testsrc2=size=480x270:rate=25,noise=alls=40:allf=t\"\nsegment_s = 2\nsample_fps = 0\n",
        disk.0.display()
    );
    let mut node = Node::configure(&dir.0, "ret", &broker.url(), &toml);
    let mut watcher = Watcher::connect(broker.port, "watch-ret", true, &["heldar/ret/events/#"]).await;
    node.start(&[]);
    support::wait_for(30 * SECOND, "a first segment", || !node.segments("busy").is_empty());
    let first = node.segments("busy")[0].clone();
    lock_all_time(&node, "busy", first.start_ms, first.end_ms);

    // Record until the sweeper has had to free space for a while.
    let floor = 40 * 1024 * 1024 * 40 / 100;
    let started = Instant::now();
    let mut lowest = u64::MAX;
    let mut deleted_some = false;
    while started.elapsed() < 60 * SECOND {
        std::thread::sleep(SECOND);
        lowest = lowest.min(disk.free());
        let rows = node.segments("busy");
        deleted_some |= rows.len() > 1 && rows[1].start_ms > first.end_ms + 2_000;
        if deleted_some && started.elapsed() > 40 * SECOND {
            break;
        }
    }
    assert!(deleted_some, "retention deleted the oldest unlocked segments");
    // Between sweeps (2 s) recording may dip under the floor by what it writes meanwhile.
    assert!(lowest + 3 * 1024 * 1024 > floor, "free space fell to {lowest}, floor {floor}");
    let rows = node.segments("busy");
    assert_eq!(rows[0].path, first.path, "the locked segment is kept");
    assert!(disk.0.join(&first.path).exists());
    for row in &rows {
        assert!(disk.0.join(&row.path).exists(), "every indexed segment is on disk: {}", row.path);
    }

    // Lock everything: nothing may go, storage runs short, pressure is reported once.
    lock_all_time(&node, "busy", 0, i64::MAX / 2);
    let events = watcher.collect(40 * SECOND, |m| pressure(m) >= 1).await;
    assert_eq!(pressure(&events), 1, "storage_pressure once");
    let more = watcher.collect(8 * SECOND, |_| false).await;
    assert_eq!(pressure(&more), 0, "once per episode, not per sweep");
    // A reload starts a new sweeper; the episode goes on, and is not announced again.
    for n in 1..=2 {
        support::signal_pid(node.pid(), "HUP");
        support::wait_for(10 * SECOND, "the reload", || node.log().matches("config reloaded").count() >= n);
        let after_reload = watcher.collect(5 * SECOND, |_| false).await;
        assert_eq!(pressure(&after_reload), 0, "reload {n} announced the same episode again");
    }
    assert_eq!(node.segments("busy")[0].path, first.path);
    let status = node.terminate(20 * SECOND);
    assert!(status.success(), "the service keeps running with a full disk");
}

fn pressure(messages: &[Message]) -> usize {
    messages.iter().filter(|m| m.topic.ends_with("/storage_pressure")).count()
}

#[test]
fn sweep_from_the_cli_ages_footage_out() {
    let dir = TempDir::new("sweep-cli");
    let rec = dir.join("data/recordings/old/2020-01-01");
    std::fs::create_dir_all(&rec).expect("dir");
    let config = dir.join("config.toml");
    std::fs::write(&config, "[node]\nid = \"s\"\ndata_dir = \"data\"\n[[camera]]\nid = \"old\"\nsource = \"lavfi:testsrc\"\nretain_days = 1\n")
        .expect("config");
    // An old segment, indexed, and a fresh one.
    let (store_dir, index) = (dir.join("data"), dir.join("data/index.db"));
    std::fs::create_dir_all(&store_dir).expect("data");
    let mut conn = heldar_edge::store::open_connection(&index).expect("index");
    let tx = conn.transaction().expect("tx");
    for (path, start) in [
        ("old/2020-01-01/000000.mp4", 1_577_836_800_000i64),
        ("old/2020-01-01/000010.mp4", heldar_edge::wallclock::UnixMs::now().0),
    ] {
        std::fs::write(dir.join("data/recordings").join(path), b"x").expect("file");
        let segment = heldar_edge::recording::index::NewSegment {
            camera: "old".into(),
            path: path.into(),
            start: heldar_edge::wallclock::UnixMs(start),
            end: heldar_edge::wallclock::UnixMs(start + 10_000),
            bytes: 1,
            codec: None,
            width: None,
            height: None,
        };
        heldar_edge::recording::index::insert_segment(&tx, &segment).expect("insert");
    }
    tx.commit().expect("commit");
    drop(conn);
    let out =
        Command::new(env!("CARGO_BIN_EXE_heldar-edge")).args(["sweep", "-c"]).arg(&config).output().expect("sweep");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("deleted 1 aged"), "{stdout}");
    assert!(!rec.join("000000.mp4").exists());
    assert!(rec.join("000010.mp4").exists());
}

#[test]
fn sweep_from_the_cli_without_a_camera_or_a_recordings_directory() {
    // A fresh install: no camera, so nothing has made data/recordings yet.
    let dir = TempDir::new("sweep-empty");
    let config = dir.join("config.toml");
    std::fs::write(&config, "[node]\nid = \"s\"\ndata_dir = \"data\"\n").expect("config");
    let out =
        Command::new(env!("CARGO_BIN_EXE_heldar-edge")).args(["sweep", "-c"]).arg(&config).output().expect("sweep");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("deleted 0 aged and 0 segments for space"), "{stdout}");
}
