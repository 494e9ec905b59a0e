//! A V4L2 camera on a real Linux kernel: board/qemu/boot starts Debian's
//! kernel under qemu with the vivid virtual camera, and the service records
//! /dev/video0 in the guest through the same code path as on a board. The
//! host checks the segments, the index and what the node published.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{Broker, TempDir, Watcher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_v4l2_camera_in_a_qemu_guest() {
    let dir = TempDir::new("v4l2-board");
    let broker = Broker::start(&dir.join("broker"));
    let share = dir.join("share");
    std::fs::create_dir_all(&share).expect("share");
    std::fs::write(
        share.join("config.toml"),
        format!(
            "[node]\nid = \"vbox\"\ndata_dir = \"data\"\n[mqtt]\nurl = \"mqtt://10.0.2.2:{}\"\nstats_interval_s = 5\n\
             [[camera]]\nid = \"usb\"\nsource = \"v4l2:///dev/video0\"\nsegment_s = 4\n\
             [camera.v4l2]\nwidth = 640\nheight = 480\nfps = 15\nformat = \"YUYV\"\n",
            broker.port
        ),
    )
    .expect("config");
    // The guest sees the host's root, but with a tmpfs of its own on /tmp: the binary goes
    // into the shared directory, wherever the checkout is.
    let bin = share.join("heldar-edge");
    std::fs::copy(env!("CARGO_BIN_EXE_heldar-edge"), &bin).expect("binary into the share");
    std::fs::write(
        share.join("run.sh"),
        format!(
            "HELDAR_LOG=debug {bin} run -c {share}/config.toml 2> {share}/node.log &\npid=$!\nsleep 25\nkill -TERM $pid\nwait $pid\n",
            bin = bin.display(),
            share = share.display()
        ),
    )
    .expect("run.sh");
    let mut watcher =
        Watcher::connect(broker.port, "watch-vbox", true, &["heldar/vbox/status", "heldar/vbox/cameras/usb/state"])
            .await;

    let boot = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/board/qemu/boot"))
        .args(["--arch", "x86_64", "--timeout", "240", "--share"])
        .arg(&share)
        .arg("--log")
        .arg(share.join("console.log"))
        .status()
        .expect("board/qemu/boot");
    let node_log = std::fs::read_to_string(share.join("node.log")).unwrap_or_default();
    let console = std::fs::read_to_string(share.join("console.log")).unwrap_or_default();
    assert!(boot.success(), "guest run failed ({boot}):\n{console}\n--- node.log ---\n{node_log}");
    assert!(node_log.contains("v4l2 format negotiated"), "{node_log}");
    assert!(node_log.contains("stopped"), "the service stopped cleanly in the guest:\n{node_log}");

    let messages = watcher.collect(Duration::from_secs(2), |_| false).await;
    assert!(messages.iter().any(|m| m.topic.ends_with("/status") && m.text() == "online"), "online from the guest");
    let recording = messages
        .iter()
        .filter(|m| m.topic.ends_with("/cameras/usb/state"))
        .map(|m| m.json())
        .find(|s| s["state"] == "recording")
        .expect("the camera reported recording");
    assert_eq!(recording["v4l2"]["format"], "YUYV", "{recording}");
    assert_eq!(recording["v4l2"]["width"], 640, "{recording}");

    let index = rusqlite::Connection::open(share.join("data/index.db")).expect("index");
    let rows: Vec<(String, i64, i64, i64, i64)> = index
        .prepare("SELECT path, start_ms, end_ms, width, height FROM segments WHERE camera = 'usb' ORDER BY start_ms")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(rows.len() >= 3, "segments recorded in the guest: {rows:?}\n{node_log}");
    for (path, start, end, width, height) in &rows {
        let file = share.join("data/recordings").join(path);
        assert!(support::plays(&file), "{path} plays");
        let played = support::ffprobe_duration(&file).expect("duration");
        let indexed = (end - start) as f64 / 1000.0;
        assert!((played - indexed).abs() <= indexed * 0.1 + 0.1, "{path}: ffprobe {played} s, index {indexed} s");
        assert_eq!((*width, *height), (640, 480));
        assert!(frames(&file) > 0, "{path} has frames");
    }
}

fn frames(file: &std::path::Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}
