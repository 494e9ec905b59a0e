//! Clock steps while recording (the service and its ffmpeg under libfaketime,
//! as on a board whose clock NTP or an operator steps): back 40 s (a multiple
//! of the segment length, so names would repeat), back an hour, and forward two
//! days past a one-day retention, with the sweeper running every 2 s. Each step
//! gives one `clock_step`; no file is overwritten, no row re-timed, nothing
//! deleted (retention judges age by the boot clock), and recording goes on.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::{Broker, FakeClock, Message, Node, SegmentRow, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

fn steps(messages: &[Message]) -> Vec<serde_json::Value> {
    messages.iter().filter(|m| m.topic.ends_with("/events/_node/clock_step")).map(Message::json).collect()
}

/// Every indexed row by path; each file on disk indexed once, each row's file the size it says.
fn check_disk(node: &Node, rows: &[SegmentRow]) -> BTreeMap<String, (i64, i64)> {
    let by_path: BTreeMap<String, (i64, i64)> = rows.iter().map(|r| (r.path.clone(), (r.start_ms, r.end_ms))).collect();
    assert_eq!(by_path.len(), rows.len(), "no two rows share a path");
    for row in rows {
        let file = node.segment_file(row);
        let size = std::fs::metadata(&file).map(|m| m.len() as i64).unwrap_or(-1);
        assert_eq!(size, row.bytes, "{}: on disk {size} bytes, indexed {}", row.path, row.bytes);
        assert!(row.end_ms >= row.start_ms, "no negative duration: {row:?}");
    }
    by_path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_overwrite_nothing_re_time_nothing_and_delete_nothing() {
    let dir = TempDir::new("clock-steps");
    let broker = Broker::start(&dir.join("broker"));
    let camera = "\n[storage]\nsweep_interval_s = 2\n\n\
                  [[camera]]\nid = \"cam\"\nsource = \"lavfi:testsrc2=size=160x120:rate=10\"\nsegment_s = 2\n\
                  sample_fps = 0\nretain_days = 1\n";
    let mut node = Node::configure(&dir.0, "clk", &broker.url(), camera);
    let clock = FakeClock::new(&dir.0);
    let mut events = Watcher::connect(broker.port, "clock-events", true, &["heldar/clk/events/#"]).await;
    clock.start(&mut node);
    support::wait_for(30 * SECOND, "4 segments", || node.segments("cam").len() >= 4);
    let before = check_disk(&node, &node.segments("cam"));

    for (offset_s, expected_s) in [(-40i64, -40.0f64), (-3640, -3600.0), (-3640 + 172_800, 172_800.0)] {
        clock.set_offset(offset_s);
        let seen = events.collect(15 * SECOND, |m| !steps(m).is_empty()).await;
        let step = steps(&seen);
        assert_eq!(step.len(), 1, "one clock_step: {step:?}");
        let delta = step[0]["delta_s"].as_f64().expect("delta_s");
        assert!((delta - expected_s).abs() < 2.5, "delta {delta} s, stepped {expected_s} s");
        let count = node.segments("cam").len();
        support::wait_for(20 * SECOND, "3 segments after the step", || node.segments("cam").len() >= count + 3);
        let more = events.collect(3 * SECOND, |_| false).await;
        assert!(steps(&more).is_empty(), "a step is reported once");
    }
    let after = check_disk(&node, &node.segments("cam"));
    for (path, times) in &before {
        assert_eq!(after.get(path), Some(times), "{path} kept its file and its times through the steps");
    }
    assert!(node.terminate(20 * SECOND).success());
}
