//! The in-process RTSP recorder against GStreamer's RTSP server: H.264 and
//! H.265, with and without AAC audio (recorded as a second track), a camera that changes its picture size, and
//! `capture = "ffmpeg"` keeping the ffmpeg path, reads batched at 3 Mb/s and a camera
//! gone quiet read at once. Every segment starts with a
//! key frame, plays, lasts `segment_s` within a GOP, and its timestamps rise
//! from the first frame.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Broker, Node, RtspCamera, SegmentRow, TempDir};

const SECOND: Duration = Duration::from_secs(1);
/// The test camera's key-frame interval (15 fps, a key frame every 15 frames).
const GOP_S: f64 = 1.0;
const SEGMENT_S: f64 = 4.0;

fn camera_toml(id: &str, source: &str, extra: &str) -> String {
    format!("\n[[camera]]\nid = \"{id}\"\nsource = \"{source}\"\nsegment_s = {SEGMENT_S}\nsample_fps = 0\n{extra}")
}

/// `ffprobe -show_entries <entries>` of `file` as CSV lines.
fn probe(file: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(support::system_binary("ffprobe", "ffmpeg"))
        .args(["-v", "error"])
        .args(args)
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The streams of `file` as `codec_type,codec_name`.
fn streams(file: &Path) -> Vec<String> {
    probe(file, &["-show_entries", "stream=codec_type,codec_name"])
}

/// Checks one segment: plays, starts with a key frame at 0, video timestamps rising.
fn check_segment(node: &Node, row: &SegmentRow) {
    let file = node.segment_file(row);
    assert!(support::plays(&file), "{} does not play", row.path);
    let packets = probe(&file, &["-select_streams", "v:0", "-show_entries", "packet=dts_time,flags"]);
    assert!(!packets.is_empty(), "{}: no video", row.path);
    let first: Vec<&str> = packets[0].split(',').collect();
    assert!(first[1].starts_with('K'), "{} starts with a frame that is not a key frame: {first:?}", row.path);
    assert!(first[0].parse::<f64>().expect("dts") < 0.01, "{} starts at {first:?}", row.path);
    let dts: Vec<f64> = packets.iter().filter_map(|p| p.split(',').next()?.parse().ok()).collect();
    for pair in dts.windows(2) {
        assert!(pair[1] > pair[0], "{}: timestamps do not rise: {pair:?}", row.path);
        assert!(pair[1] - pair[0] < 0.5, "{}: a hole between frames: {pair:?}", row.path);
    }
}

/// The closed segments of `camera` but the first and the last (a run's first segment starts
/// when the camera's first key frame comes; the last closes at stop).
fn middle(rows: &[SegmentRow]) -> &[SegmentRow] {
    if rows.len() > 2 { &rows[1..rows.len() - 1] } else { &[] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_h265_with_and_without_audio_record_natively_and_play() {
    let dir = TempDir::new("native-codecs");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let cameras = [("avc", "cam", "h264"), ("avca", "cam-audio", "h264"), ("hev", "cam265", "hevc")];
    let cameras = [cameras.as_slice(), &[("heva", "cam265-audio", "hevc")]].concat();
    let toml: String = cameras.iter().map(|(id, path, _)| camera_toml(id, &camera.url_of(path), "")).collect();
    let mut node = Node::configure(&dir.0, "nat", &broker.url(), &toml);
    node.start(&[]);
    for (id, _, _) in &cameras {
        support::wait_for(40 * SECOND, "4 segments of each camera", || node.segments(id).len() >= 4);
    }
    assert!(node.terminate(15 * SECOND).success());
    for (id, _, codec) in &cameras {
        let rows = node.segments(id);
        for row in &rows {
            assert_eq!(row.codec.as_deref(), Some(*codec), "{id}: {row:?}");
            assert_eq!((row.width, row.height), (Some(320), Some(240)), "{id}: {row:?}");
            check_segment(&node, row);
            let with_audio = id.ends_with('a');
            let expected = [Some(format!("{codec},video")), with_audio.then(|| "aac,audio".to_string())];
            let expected: Vec<String> = expected.into_iter().flatten().collect();
            assert_eq!(streams(&node.segment_file(row)), expected, "{id}: {}", row.path);
        }
        for row in middle(&rows) {
            let seconds = (row.end_ms - row.start_ms) as f64 / 1000.0;
            assert!((seconds - SEGMENT_S).abs() <= GOP_S + 0.1, "{id}: a segment of {seconds} s: {row:?}");
            if id.ends_with('a') {
                // The sound covers the segment: no frame lost at the cuts.
                let audio =
                    probe(&node.segment_file(row), &["-select_streams", "a:0", "-show_entries", "stream=duration"]);
                let audio: f64 = audio[0].trim_end_matches(',').parse().expect("audio duration");
                assert!((audio - seconds).abs() < 0.15, "{id}: {audio} s of sound in {seconds} s: {}", row.path);
            }
        }
        for pair in rows.windows(2) {
            assert!((pair[1].start_ms - pair[0].end_ms).abs() <= 50, "{id}: not contiguous: {pair:?}");
        }
        let native =
            node.count(&format!("SELECT count(*) FROM segments WHERE camera = '{id}' AND recorder = 'native'"));
        assert_eq!(native as usize, rows.len(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_changes_its_picture_size_starts_a_new_segment() {
    let dir = TempDir::new("native-resize");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let toml = camera_toml("flip", &camera.url_of("cam-resize"), "");
    let mut node = Node::configure(&dir.0, "rsz", &broker.url(), &toml);
    node.start(&[]);
    let sizes = |node: &Node| {
        let mut sizes: Vec<(Option<i64>, Option<i64>)> =
            node.segments("flip").iter().map(|r| (r.width, r.height)).collect();
        sizes.dedup();
        sizes
    };
    // The server flips between 320x240 and 640x480 every 6 s.
    support::wait_for(60 * SECOND, "segments of both sizes, twice", || sizes(&node).len() >= 3);
    assert!(node.terminate(15 * SECOND).success());
    let rows = node.segments("flip");
    for row in &rows {
        check_segment(&node, row);
        let probed = probe(&node.segment_file(row), &["-select_streams", "v:0", "-show_entries", "frame=width,height"]);
        let probed: Vec<&str> = probed.iter().map(|p| p.trim_end_matches(',')).filter(|p| !p.is_empty()).collect();
        let expected = format!("{},{}", row.width.expect("width"), row.height.expect("height"));
        assert!(probed.iter().all(|p| *p == expected), "{}: frames {probed:?}, row {expected}", row.path);
    }
    assert!(sizes(&node).contains(&(Some(640), Some(480))), "{:?}", sizes(&node));
    for pair in rows.windows(2) {
        assert!((pair[1].start_ms - pair[0].end_ms).abs() <= 50, "not contiguous: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_ffmpeg_keeps_the_ffmpeg_recorder() {
    let dir = TempDir::new("native-optout");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let toml = camera_toml("old", &camera.url(), "capture = \"ffmpeg\"\n");
    let mut node = Node::configure(&dir.0, "opt", &broker.url(), &toml);
    node.start(&[]);
    support::wait_for(30 * SECOND, "2 segments", || node.segments("old").len() >= 2);
    let recorders = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let parent =
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let argv = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            parent == Some(node.pid()) && String::from_utf8_lossy(&argv).contains(&camera.url())
        })
        .count();
    assert_eq!(recorders, 1, "one ffmpeg child records the camera");
    assert!(node.terminate(15 * SECOND).success());
    let rows = node.segments("old");
    let by_ffmpeg = node.count("SELECT count(*) FROM segments WHERE camera = 'old' AND recorder = 'ffmpeg'");
    assert_eq!(by_ffmpeg as usize, rows.len());
    for row in &rows {
        assert!(support::plays(&node.segment_file(row)), "{}", row.path);
    }
}

/// Bytes waiting unread on the established connections to local `port` (/proc/net/tcp's
/// rx_queue), when there is one.
fn unread_from(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let remote_port = u16::from_str_radix(fields.get(2)?.rsplit(':').next()?, 16).ok()?;
        if remote_port != port || fields.get(3) != Some(&"01") {
            return None;
        }
        u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()
    })
}

/// At 3 Mb/s the service reads the camera's connection in batches: bytes wait in the kernel
/// between reads instead of waking the service at every frame. A camera that stops sending
/// without closing its connection has what it sent read within about two seconds, before
/// the 10 s stall ends the run; the segments play through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_batched_and_a_camera_gone_quiet_is_read_at_once() {
    let dir = TempDir::new("native-batching");
    let broker = Broker::start(&dir.join("broker"));
    let clip = dir.join("clip.mp4");
    let encoded = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "40"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-b:v", "3M", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(encoded.success());
    let camera = RtspCamera::start_options("1280x720", false, &["--file", clip.to_str().expect("path")]);
    let mut node = Node::configure(&dir.0, "bat", &broker.url(), &camera_toml("fast", &camera.url_of("file"), ""));
    node.start(&[]);
    support::wait_for(30 * SECOND, "a batched read", || {
        node.log().lines().any(|l| l.contains("read batching") && !l.contains("bytes=1 "))
    });
    let mut most = 0;
    for _ in 0..40 {
        most = most.max(unread_from(camera.port).expect("the camera's connection"));
        std::thread::sleep(SECOND / 20);
    }
    assert!(most > 4096, "at most {most} bytes ever waited: reads are not batched");
    // Stopped at a moment bytes wait (at most 10 tries), the camera keeps its connection open.
    let mut waiting = 0;
    for _ in 0..10 {
        support::signal_pid(camera.pid(), "STOP");
        std::thread::sleep(SECOND / 10);
        waiting = unread_from(camera.port).expect("the camera's connection");
        if waiting > 0 {
            break;
        }
        support::signal_pid(camera.pid(), "CONT");
        std::thread::sleep(SECOND / 2);
    }
    assert!(waiting > 0, "never caught bytes waiting");
    // Read before the run would end for want of frames (10 s), which would drop them.
    support::wait_for(8 * SECOND, "the waiting bytes read", || unread_from(camera.port) == Some(0));
    support::signal_pid(camera.pid(), "CONT");
    support::wait_for(30 * SECOND, "3 segments", || node.segments("fast").len() >= 3);
    assert!(node.terminate(15 * SECOND).success());
    for row in &node.segments("fast") {
        check_segment(&node, row);
    }
}
