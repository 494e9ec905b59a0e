//! The sampler's decoder: CPU of what it decodes now against a full decode at the same rate.
//!
//! One 1080p30 H.264 MPEG-TS (key frame every 2 s, made by ffmpeg) is fed to two decoder
//! ffmpeg command lines at 0.5, 1, 2 and 5 fps, alternating, two rounds:
//! - baseline: the full decode the sampler ran before (`fps=R,scale=640:-2`, every frame decoded);
//! - now: `sampler::decoder::decoder_args` with the mode the sampler picks for a 2 s key-frame
//!   interval (key frames only at 0.5 fps, a grid of frames above).
//!
//! CPU is the child's user + system time (`wait4`). Frames out are counted too.
//!
//! `cargo bench --bench decoding [-- SECONDS]` (stream length, default 20 s).

use heldar_edge::sampler::decoder::{DecodeMode, DecoderPlan, decoder_args};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY_FRAME_INTERVAL: Duration = Duration::from_secs(2);

fn main() {
    let seconds: u32 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("heldar-bench-decoding-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stream = dir.join("1080p30.ts");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1920x1080:rate=30:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-f", "mpegts"])
        .arg(&stream)
        .status()
        .expect("ffmpeg");
    assert!(made.success(), "cannot make the test stream");
    println!("decoding {seconds} s of 1080p30 H.264, key frame every 2 s; CPU-s of the decoder ffmpeg (two rounds)\n");
    println!("| fps | mode | full decode CPU-s | now CPU-s | ratio | frames full / now |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for fps in [0.5, 1.0, 2.0, 5.0] {
        let mode = DecodeMode::for_rate(fps, Some(KEY_FRAME_INTERVAL));
        let now = decoder_args(&DecoderPlan { fps, width: 640, mode, codec: None });
        let full = full_decode_args(fps);
        let (mut full_cpu, mut now_cpu, mut frames) = (0.0, 0.0, (0, 0));
        for _ in 0..2 {
            let (cpu, n) = run(&full, &stream);
            full_cpu += cpu;
            frames.0 = n;
            let (cpu, n) = run(&now, &stream);
            now_cpu += cpu;
            frames.1 = n;
        }
        println!(
            "| {fps} | {mode:?} | {:.2} | {:.2} | {:.2} | {} / {} |",
            full_cpu / 2.0,
            now_cpu / 2.0,
            now_cpu / full_cpu,
            frames.0,
            frames.1
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The decoder command line before key-frame decoding: every frame decoded, `fps` picks.
fn full_decode_args(fps: f64) -> Vec<String> {
    let mut args: Vec<String> =
        ["-hide_banner", "-nostdin", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0", "-map", "0:v:0", "-vf"]
            .map(String::from)
            .to_vec();
    args.push(format!("fps={fps},scale=640:-2"));
    args.extend(["-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg", "pipe:1"].map(String::from));
    args
}

/// Runs ffmpeg with `args` on `stream`; its CPU seconds (reaped with `wait4`) and the JPEG
/// frames it wrote.
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which also gives its CPU time")]
fn run(args: &[String], stream: &Path) -> (f64, usize) {
    use std::io::Read;
    let input = std::fs::File::open(stream).expect("stream");
    let mut child = Command::new("ffmpeg")
        .args(args)
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out).expect("read");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unreaped child; status and usage are valid pointers.
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(reaped > 0, "wait4 failed");
    assert!(std::process::ExitStatus::from_raw(status).success(), "ffmpeg failed");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime) + seconds(usage.ru_stime), out.windows(2).filter(|w| w == &[0xFF, 0xD9]).count())
}
