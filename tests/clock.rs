//! Clock steps while recording a camera through ffmpeg and one through the
//! native RTSP recorder (the service and its ffmpeg under libfaketime, as on a
//! board whose clock NTP or an operator steps): back 40 s (a multiple
//! of the segment length, so names would repeat), back an hour, and forward two
//! days past a one-day retention, with the sweeper running every 2 s. Each step
//! gives one `clock_step`; no file is overwritten, no row re-timed, nothing
//! deleted (retention judges age by the boot clock), and recording goes on.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::{Broker, FakeClock, Message, Node, RtspCamera, SegmentRow, TempDir, Watcher};

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
    let rtsp = RtspCamera::start();
    let cameras = format!(
        "\n[storage]\nsweep_interval_s = 2\n\n\
         [[camera]]\nid = \"cam\"\nsource = \"lavfi:testsrc2=size=160x120:rate=10\"\nsegment_s = 2\n\
         sample_fps = 0\nretain_days = 1\n\n\
         [[camera]]\nid = \"nat\"\nsource = \"{}\"\nsegment_s = 2\nsample_fps = 0\nretain_days = 1\n",
        rtsp.url()
    );
    let mut node = Node::configure(&dir.0, "clk", &broker.url(), &cameras);
    let clock = FakeClock::new(&dir.0);
    let mut events = Watcher::connect(broker.port, "clock-events", true, &["heldar/clk/events/#"]).await;
    clock.start(&mut node);
    let all = |node: &Node| [node.segments("cam"), node.segments("nat")].concat();
    support::wait_for(30 * SECOND, "4 segments of each camera", || {
        node.segments("cam").len() >= 4 && node.segments("nat").len() >= 4
    });
    let before = check_disk(&node, &all(&node));

    for (offset_s, expected_s) in [(-40i64, -40.0f64), (-3640, -3600.0), (-3640 + 172_800, 172_800.0)] {
        clock.set_offset(offset_s);
        let seen = events.collect(15 * SECOND, |m| !steps(m).is_empty()).await;
        let step = steps(&seen);
        assert_eq!(step.len(), 1, "one clock_step: {step:?}");
        let delta = step[0]["delta_s"].as_f64().expect("delta_s");
        assert!((delta - expected_s).abs() < 2.5, "delta {delta} s, stepped {expected_s} s");
        let counts = (node.segments("cam").len(), node.segments("nat").len());
        support::wait_for(20 * SECOND, "3 segments of each camera after the step", || {
            node.segments("cam").len() >= counts.0 + 3 && node.segments("nat").len() >= counts.1 + 3
        });
        let more = events.collect(3 * SECOND, |_| false).await;
        assert!(steps(&more).is_empty(), "a step is reported once");
    }
    let after = check_disk(&node, &all(&node));
    for (path, times) in &before {
        assert_eq!(after.get(path), Some(times), "{path} kept its file and its times through the steps");
    }
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_a_camera_that_does_not_record_follow_a_clock_step() {
    let dir = TempDir::new("clock-frames");
    let broker = Broker::start(&dir.join("broker"));
    let camera = "\n[[camera]]\nid = \"cam\"\nsource = \"lavfi:testsrc2=size=160x120:rate=10\"\nrecord = \"off\"\n\
                  sample_fps = 2\nsample_width = 160\n";
    let mut node = Node::configure(&dir.0, "clkf", &broker.url(), camera);
    let clock = FakeClock::new(&dir.0);
    let filters = ["heldar/clkf/events/#", "heldar/clkf/frames/+"];
    let mut watcher = Watcher::connect(broker.port, "clock-frames", true, &filters).await;
    clock.start(&mut node);
    let online = serde_json::json!({"v": 1, "state": "online", "max_fps": 10}).to_string();
    watcher
        .client
        .publish("heldar/clkf/workers/w/status", rumqttc::QoS::AtLeastOnce, true, online)
        .await
        .expect("status");
    watcher.next_on("heldar/clkf/frames/cam", 20 * SECOND).await.expect("frames");
    clock.set_offset(-3600);
    let seen = watcher.collect(15 * SECOND, |m| !steps(m).is_empty()).await;
    assert_eq!(steps(&seen).len(), 1, "one clock_step");
    // Frames decoded after the step carry the stepped clock's time.
    let _ = watcher.collect(2 * SECOND, |_| false).await;
    let frames = watcher.collect(4 * SECOND, |_| false).await;
    let stepped_now = heldar_edge::wallclock::UnixMs::now().0 - 3_600_000;
    let times: Vec<i64> = frames
        .iter()
        .filter(|m| m.topic.ends_with("/frames/cam"))
        .map(|m| {
            let newline = m.payload.iter().position(|b| *b == b'\n').expect("header");
            let header: serde_json::Value = serde_json::from_slice(&m.payload[..newline]).expect("json");
            heldar_edge::wallclock::UnixMs::parse_rfc3339(header["ts"].as_str().expect("ts")).expect("ts").0
        })
        .collect();
    assert!(times.len() >= 4, "frames after the step: {times:?}");
    for ts in &times {
        assert!((stepped_now - 8000..=stepped_now + 2000).contains(ts), "frame at {ts}, the clock says {stepped_now}");
    }
    assert!(node.terminate(20 * SECOND).success());
}
