//! CPU and memory of recording N RTSP cameras (1280×720, 30 fps, 3 Mb/s, a key
//! frame a second, served from a file by GStreamer's RTSP server): the service with its native recorder (the default for
//! `rtsp://`), the service with `capture = "ffmpeg"` (one ffmpeg per camera),
//! and bare `ffmpeg -c copy -f segment` of the same streams (the floor), in
//! alternating rounds of the same run. CPU and PSS are of the whole process
//! tree (the service and its children).
//! `cargo bench --bench recording [-- SECONDS [N ...] [bare|native|ffmpeg|moonfire ...]]` (default
//! 60 s, N = 4 8, the first three recorders, and `moonfire` when `HELDAR_BENCH_MOONFIRE` is set;
//! ratios are against bare ffmpeg when it runs). `moonfire` is Moonfire NVR, run in the
//! foreground by the launcher that variable names (`LAUNCHER WORKDIR URL N`;
//! `scripts/moonfire/` and docs/development.md tell how to build it).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Rounds of the three recorders, in alternating order.
const ROUNDS: usize = 2;

#[derive(Clone, Copy, PartialEq)]
enum Recorder {
    Bare,
    Native,
    Ffmpeg,
    Moonfire,
}

impl Recorder {
    /// The recorder a command-line word names.
    fn named(word: &str) -> Option<Self> {
        match word {
            "bare" => Some(Self::Bare),
            "native" => Some(Self::Native),
            "ffmpeg" => Some(Self::Ffmpeg),
            "moonfire" => Some(Self::Moonfire),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare ffmpeg",
            Self::Native => "heldar native",
            Self::Ffmpeg => "heldar capture=ffmpeg",
            Self::Moonfire => "Moonfire NVR",
        }
    }
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let mut numbers = words.iter().filter_map(|a| a.parse::<u64>().ok());
    let seconds = numbers.next().unwrap_or(60);
    let mut counts: Vec<usize> = numbers.map(|n| n as usize).collect();
    if counts.is_empty() {
        counts = vec![4, 8];
    }
    let mut kinds: Vec<Recorder> = words.iter().filter_map(|w| Recorder::named(w)).collect();
    if kinds.is_empty() {
        kinds = vec![Recorder::Bare, Recorder::Native, Recorder::Ffmpeg];
        if std::env::var_os("HELDAR_BENCH_MOONFIRE").is_some() {
            kinds.push(Recorder::Moonfire);
        }
    }
    let dir = support::TempDir::new("bench-recording");
    let broker = support::Broker::start(&dir.join("broker"));
    let clip = dir.join("clip.mp4");
    encode_clip(&clip, seconds + 60);
    let mut camera = support::RtspCamera::start_options("1280x720", false, &["--file", clip.to_str().expect("path")]);
    let url = camera.url_of("file");
    println!("{seconds} s per window, {ROUNDS} rounds; CPU in % of one core and PSS in MiB of the process tree");
    println!(
        "{:>3} | {:<22} | {:>6} | {:>6} | {:>11} | {:>9}",
        "N", "recorder", "cpu", "pss", "service rss", "cpu ratio"
    );
    for n in counts {
        let mut sums: Vec<Usage> = kinds.iter().map(|_| Usage::default()).collect();
        for round in 0..ROUNDS {
            let mut order: Vec<usize> = (0..kinds.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                // A fresh server per window: every client plays the clip from its start.
                camera.stop();
                camera.restart();
                let usage = match kinds[i] {
                    Recorder::Bare => bare_ffmpeg(&dir, &url, n, seconds),
                    Recorder::Moonfire => moonfire(&dir, &url, n, seconds),
                    kind => service(&dir, &broker, &url, n, seconds, kind),
                };
                sums[i].add(&usage, 1.0 / ROUNDS as f64);
            }
        }
        let baseline = kinds.iter().position(|k| *k == Recorder::Bare).map_or(f64::NAN, |i| sums[i].cpu);
        for (kind, usage) in kinds.iter().zip(&sums) {
            println!(
                "{n:>3} | {:<22} | {:>6.1} | {:>6.1} | {:>11.1} | {:>9.2}",
                kind.name(),
                usage.cpu,
                usage.pss,
                usage.service_rss,
                usage.cpu / baseline
            );
        }
    }
}

/// Encodes `seconds` of moving 1280×720 30 fps H.264 at 3 Mb/s, a key frame a second: served
/// from a file, the test server spends nothing per client on encoding.
fn encode_clip(clip: &std::path::Path, seconds: u64) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-b:v", "3M", "-maxrate", "3M"])
        .args(["-bufsize", "6M", "-pix_fmt", "yuv420p"])
        .arg(clip)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "cannot encode the clip");
}

/// What a recorder used over a window.
#[derive(Default)]
struct Usage {
    /// CPU of the tree, in % of one core.
    cpu: f64,
    /// PSS of the tree, MiB.
    pss: f64,
    /// RSS of the service alone, MiB.
    service_rss: f64,
}

impl Usage {
    fn add(&mut self, other: &Usage, weight: f64) {
        self.cpu += other.cpu * weight;
        self.pss += other.pss * weight;
        self.service_rss += other.service_rss * weight;
    }
}

fn bare_ffmpeg(dir: &support::TempDir, url: &str, n: usize, seconds: u64) -> Usage {
    let out = dir.join(&format!("bare-{n}"));
    let mut children: Vec<Child> = (0..n)
        .map(|i| {
            let cam = out.join(format!("c{i}"));
            std::fs::create_dir_all(&cam).expect("dir");
            Command::new("ffmpeg")
                .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url])
                .args(["-map", "0:v:0", "-c", "copy", "-f", "segment", "-segment_time", "10", "-segment_format", "mp4"])
                .args(["-reset_timestamps", "1"])
                .arg(cam.join("%05d.mp4"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ffmpeg")
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    std::thread::sleep(Duration::from_secs(5));
    let usage = processes(&pids, seconds);
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    usage
}

/// Moonfire NVR recording `n` cameras of `url` into a fresh directory, through its launcher.
fn moonfire(dir: &support::TempDir, url: &str, n: usize, seconds: u64) -> Usage {
    let launcher = std::env::var("HELDAR_BENCH_MOONFIRE").expect("HELDAR_BENCH_MOONFIRE names Moonfire's launcher");
    let work = dir.join(&format!("moonfire-{n}"));
    let mut child = Command::new(launcher).arg(&work).arg(url).arg(n.to_string()).spawn().expect("launcher");
    // One sample file per camera once each records (beside the directory's `meta`).
    let samples = work.join("samples");
    support::wait_for(Duration::from_secs(30), "Moonfire's first recordings", || {
        std::fs::read_dir(&samples)
            .map_or(0, |d| d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "meta")).count())
            >= n
    });
    // Moonfire is a service of its own: its RSS at the end goes beside the native recorder's.
    let measured = processes(&[child.id()], seconds);
    let usage = Usage { service_rss: support::memory_kib(child.id(), "VmRSS:") / 1024.0, ..measured };
    let _ = child.kill();
    let _ = child.wait();
    usage
}

/// CPU over `seconds` and PSS at the end of the processes `pids`, without children.
fn processes(pids: &[u32], seconds: u64) -> Usage {
    let before: f64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after: f64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    Usage {
        cpu: percent(after - before, started.elapsed()),
        pss: pids.iter().map(|p| support::memory_kib(*p, "Pss:")).sum::<f64>() / 1024.0,
        service_rss: 0.0,
    }
}

fn service(
    dir: &support::TempDir,
    broker: &support::Broker,
    url: &str,
    n: usize,
    seconds: u64,
    kind: Recorder,
) -> Usage {
    let node_dir = dir.join(&format!("node-{n}-{}", kind.name().replace([' ', '='], "-")));
    let _ = std::fs::remove_dir_all(&node_dir);
    std::fs::create_dir_all(&node_dir).expect("dir");
    let capture = if kind == Recorder::Ffmpeg { "ffmpeg" } else { "native" };
    let cameras: String = (0..n)
        .map(|i| format!("[[camera]]\nid = \"c{i}\"\nsource = \"{url}\"\nsegment_s = 10\ncapture = \"{capture}\"\n"))
        .collect();
    let mut node = support::Node::configure(&node_dir, "bench", &broker.url(), &cameras);
    node.start(&[]);
    support::wait_for(Duration::from_secs(30), "the first segments", || {
        (0..n).all(|i| !node.segments(&format!("c{i}")).is_empty())
    });
    let pid = node.pid();
    let kids = children_of(pid);
    let expected = if kind == Recorder::Ffmpeg { n } else { 0 };
    assert_eq!(kids.len(), expected, "{}: child processes", kind.name());
    let tree = || cpu_ticks(pid) + kids.iter().map(|p| cpu_ticks(*p)).sum::<f64>();
    let before = tree();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = tree();
    let usage = Usage {
        cpu: percent(after - before, started.elapsed()),
        pss: (support::memory_kib(pid, "Pss:") + kids.iter().map(|p| support::memory_kib(*p, "Pss:")).sum::<f64>())
            / 1024.0,
        service_rss: support::memory_kib(pid, "VmRSS:") / 1024.0,
    };
    node.terminate(Duration::from_secs(20));
    usage
}

fn percent(cpu_ns: f64, over: Duration) -> f64 {
    100.0 * cpu_ns / 1e9 / over.as_secs_f64()
}

/// Time all threads of a process, ended ones included, have spent on a CPU, in nanoseconds:
/// utime + stime of /proc/PID/stat, which the kernel scales to the exact runtime (schedstat
/// would count the main thread alone, missing the service's writer and index threads).
fn cpu_ticks(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields 14 and 15 (utime, stime); 12 and 13 after the name and state.
    let ticks: f64 = after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<f64>().ok()).sum();
    ticks * 1e9 / clock_ticks_per_second()
}

/// USER_HZ, the unit of /proc/PID/stat's times.
fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK")
    })
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}
