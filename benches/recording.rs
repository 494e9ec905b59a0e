//! CPU and memory of recording N RTSP cameras: the service process and its
//! ffmpeg children, against bare `ffmpeg -c copy -f segment` of the same
//! streams measured in the same run (the floor).
//! `cargo bench --bench recording [-- SECONDS [N ...]]` (default 60 s, N = 1 4 8).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let seconds = args.next().unwrap_or(60);
    let mut counts: Vec<usize> = args.map(|n| n as usize).collect();
    if counts.is_empty() {
        counts = vec![1, 4, 8];
    }
    let dir = support::TempDir::new("bench-recording");
    let broker = support::Broker::start(&dir.join("broker"));
    let mut camera = support::RtspCamera::start_with("960x540", true);
    println!("{seconds} s per run, CPU in % of one core, memory in MiB");
    println!(
        "{:>3} | {:>22} | {:>34} | {:>9}",
        "N", "bare ffmpeg: cpu  pss", "heldar: service cpu rss pss, ffmpeg cpu pss", "cpu ratio"
    );
    for n in counts {
        // A fresh camera per run: GStreamer's shared media does not survive many clients leaving.
        camera.stop();
        camera.restart();
        let floor = bare_ffmpeg(&dir, &camera.url(), n, seconds);
        camera.stop();
        camera.restart();
        let ours = service(&dir, &broker, &camera.url(), n, seconds);
        let ratio = (ours.service_cpu + ours.children_cpu) / floor.children_cpu;
        println!(
            "{n:>3} | {:>10.1} {:>10.1} | {:>7.1} {:>6.1} {:>6.1}  {:>6.1} {:>6.1} | {:>9.2}",
            floor.children_cpu,
            floor.children_pss,
            ours.service_cpu,
            ours.service_rss,
            ours.service_pss,
            ours.children_cpu,
            ours.children_pss,
            ratio
        );
    }
}

#[derive(Default)]
struct Usage {
    service_cpu: f64,
    service_rss: f64,
    service_pss: f64,
    children_cpu: f64,
    children_pss: f64,
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
    let before: f64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after: f64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let usage = Usage {
        children_cpu: percent(after - before, started.elapsed()),
        children_pss: pids.iter().map(|p| support::memory_kib(*p, "Pss:")).sum::<f64>() / 1024.0,
        ..Usage::default()
    };
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    usage
}

fn service(dir: &support::TempDir, broker: &support::Broker, url: &str, n: usize, seconds: u64) -> Usage {
    let node_dir = dir.join(&format!("node-{n}"));
    std::fs::create_dir_all(&node_dir).expect("dir");
    let cameras: String =
        (0..n).map(|i| format!("[[camera]]\nid = \"c{i}\"\nsource = \"{url}\"\nsegment_s = 10\n")).collect();
    let mut node = support::Node::configure(&node_dir, "bench", &broker.url(), &cameras);
    node.start(&[]);
    support::wait_for(Duration::from_secs(30), "the first segments", || !node.segments("c0").is_empty());
    let pid = node.pid();
    let kids = children_of(pid);
    assert_eq!(kids.len(), n, "one ffmpeg per camera");
    let before = (cpu_ticks(pid), kids.iter().map(|p| cpu_ticks(*p)).sum::<f64>());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = (cpu_ticks(pid), kids.iter().map(|p| cpu_ticks(*p)).sum::<f64>());
    let elapsed = started.elapsed();
    let usage = Usage {
        service_cpu: percent(after.0 - before.0, elapsed),
        service_rss: support::memory_kib(pid, "VmRSS:") / 1024.0,
        service_pss: support::memory_kib(pid, "Pss:") / 1024.0,
        children_cpu: percent(after.1 - before.1, elapsed),
        children_pss: kids.iter().map(|p| support::memory_kib(*p, "Pss:")).sum::<f64>() / 1024.0,
    };
    node.terminate(Duration::from_secs(20));
    usage
}

fn percent(cpu_ns: f64, over: Duration) -> f64 {
    100.0 * cpu_ns / 1e9 / over.as_secs_f64()
}

/// Time a process has spent on a CPU, in nanoseconds (/proc/PID/schedstat).
fn cpu_ticks(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
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
