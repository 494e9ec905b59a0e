//! What viewers cost the service: 4 RTSP cameras recording, then 0, 1 and 4 viewers
//! of live view and of recorded playback (ffmpeg reading the playlist at its native
//! rate, `-c copy`). Reports the service's CPU (its ffmpeg recorders not counted) and
//! RSS against 0 viewers in the same run, the time to a first frame for live view and
//! for a recorded seek, and the recording holes seen meanwhile (there must be none).
//!
//! `cargo bench --bench viewing [-- SECONDS]` (per window, default 20 s).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CAMERAS: usize = 4;

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let dir = support::TempDir::new("bench-viewing");
    let broker = support::Broker::start(&dir.join("broker"));
    let camera = support::RtspCamera::start_with("960x540", true);
    let port = support::free_port();
    let cameras: String = (0..CAMERAS)
        .map(|i| format!("[[camera]]\nid = \"c{i}\"\nsource = \"{}\"\nsegment_s = 10\nsample_fps = 0\n", camera.url()))
        .collect();
    let http = format!(
        "\n[http]\nlisten = \"127.0.0.1:{port}\"\n[[http.user]]\nname = \"bench\"\npassword_hash = \"{}\"\n",
        support::password_hash("bench-password")
    );
    let mut node = support::Node::configure(&dir.0, "bench", &broker.url(), &format!("{cameras}{http}"));
    node.start(&[]);
    support::wait_for(Duration::from_secs(60), "two segments of every camera", || {
        (0..CAMERAS).all(|i| node.segments(&format!("c{i}")).len() >= 2)
    });
    let base = format!("http://127.0.0.1:{port}");
    let cookie = login(&base);
    let pid = node.pid();
    let started = heldar_edge::wallclock::UnixMs::now();

    println!(
        "{CAMERAS} RTSP cameras recording; {seconds} s per window; service CPU in % of one core (recorders not counted)\n"
    );
    println!("| viewers | service CPU % | ratio to 0 viewers | RSS MiB |");
    println!("| --- | --- | --- | --- |");
    let idle = window(pid, seconds, Vec::new());
    println!("| 0 | {:.2} | 1.00 | {:.1} |", idle.0, idle.1);
    for (what, n) in [("live", 1), ("live", 4), ("recorded", 1), ("recorded", 4)] {
        let viewers = (0..n).map(|i| viewer(&base, &cookie, what, i)).collect();
        let (cpu, rss) = window(pid, seconds, viewers);
        println!("| {n} {what} | {cpu:.2} | {:.2} | {rss:.1} |", cpu / idle.0.max(0.01));
    }
    println!("\n| first frame | seconds (median of 3) |\n| --- | --- |");
    println!("| live | {:.2} |", first_frame(&base, &cookie, "c0/live.m3u8"));
    let row = node.segments("c1")[0].clone();
    let seek = format!("c1/recorded.m3u8?from={}&to={}", row.start_ms + 3_000, row.end_ms + 20_000);
    println!("| recorded seek | {:.2} |", first_frame(&base, &cookie, &seek));
    let holes = node.count(&format!("SELECT count(*) FROM recording_gaps WHERE end_ms > {}", started.0));
    println!("\nrecording holes while viewers watched: {holes}");
    node.terminate(Duration::from_secs(20));
}

/// Service CPU (%) and RSS (MiB) over `seconds` while `viewers` watch; stops them after.
fn window(pid: u32, seconds: u64, mut viewers: Vec<Child>) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(2));
    let (before, at) = (cpu_ns(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = 100.0 * (cpu_ns(pid) - before) / 1e9 / at.elapsed().as_secs_f64();
    let rss = support::memory_kib(pid, "VmRSS:") / 1024.0;
    for viewer in &mut viewers {
        assert!(viewer.try_wait().expect("wait").is_none(), "a viewer stopped early");
        let _ = viewer.kill();
        let _ = viewer.wait();
    }
    (cpu, rss)
}

/// An ffmpeg reading camera `i % CAMERAS`'s playlist at its native rate.
fn viewer(base: &str, cookie: &str, what: &str, i: usize) -> Child {
    let url = match what {
        "live" => format!("{base}/cameras/c{}/live.m3u8", i % CAMERAS),
        _ => format!("{base}/cameras/c{}/recorded.m3u8", i % CAMERAS),
    };
    Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-re",
            "-headers",
            &format!("Cookie: {cookie}\r\n"),
            "-i",
            &url,
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

/// Seconds until ffmpeg has read a first frame of `path` (under `/cameras/`); median of 3.
fn first_frame(base: &str, cookie: &str, path: &str) -> f64 {
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let at = Instant::now();
            let out = Command::new("ffmpeg")
                .args(["-v", "error", "-headers", &format!("Cookie: {cookie}\r\n"), "-i"])
                .arg(format!("{base}/cameras/{path}"))
                .args(["-frames:v", "1", "-f", "null", "-"])
                .output()
                .expect("ffmpeg");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            at.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[1]
}

fn login(base: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-d", "name=bench", "-d", "password=bench-password"])
        .arg(format!("{base}/login"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let cookie = head.lines().find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")));
    cookie.and_then(|c| c.split(';').next()).expect("a session cookie").to_string()
}

/// Time a process has spent on a CPU, in nanoseconds (/proc/PID/schedstat).
fn cpu_ns(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
