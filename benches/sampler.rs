//! The sampler's cost per frame in the service, and frames end to end.
//!
//! 1. In process: a real MJPEG stream (made by ffmpeg) cut into frames, copied into the
//!    FrameRing and framed as `P/frames` payloads, as the sampler does for every frame;
//!    CPU µs and heap allocations per frame (a counting allocator), against a bare copy
//!    of the same bytes as the baseline.
//! 2. Through the real service and mosquitto: 8 sampled cameras, a worker online;
//!    latency from a frame's capture `ts` to its arrival at the subscriber (p50/p99), and
//!    the service's RSS.
//!
//! `cargo bench --bench sampler [-- SECONDS]` (default 30 s for part 2).

#[path = "../tests/support/mod.rs"]
mod support;

use heldar_edge::sampler::camera::frame_message;
use heldar_edge::sampler::jpeg::{self, JpegSplitter};
use heldar_edge::sampler::ring::{FrameMeta, FrameRing};
use heldar_edge::wallclock::UnixMs;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    per_frame();
    end_to_end(seconds);
}

fn per_frame() {
    let dir = support::TempDir::new("bench-sampler");
    let stream_file = dir.join("frames.mjpeg");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10", "-t", "20"])
        .args(["-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg"])
        .arg(&stream_file)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let stream = std::fs::read(&stream_file).expect("read");
    let mut ring = FrameRing::new(4, 1 << 20);
    let mut splitter = JpegSplitter::new(1 << 20);
    let mut payload_bytes = 0usize;
    let (mut frames, mut seq) = (0u64, 0u64);
    // Warm up: the splitter's and ring's buffers are allocated once, before measuring.
    let mut run = |stream: &[u8], frames: &mut u64| {
        for chunk in stream.chunks(64 * 1024) {
            let spare = splitter.spare(chunk.len());
            spare[..chunk.len()].copy_from_slice(chunk);
            splitter.filled(chunk.len(), |frame| {
                let (width, height) = jpeg::dimensions(frame).expect("SOF");
                seq += 1;
                let meta = FrameMeta { seq, ts: UnixMs(seq as i64), width, height };
                ring.push(meta, frame).expect("fits");
                let payload = frame_message("front", &meta, frame);
                payload_bytes += payload.len();
                *frames += 1;
            });
        }
    };
    let mut warm = 0;
    run(&stream, &mut warm);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..10 {
        run(&stream, &mut frames);
    }
    let elapsed = started.elapsed();
    let per_frame_allocs = (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / frames as f64;
    let per_frame_us = elapsed.as_secs_f64() * 1e6 / frames as f64;

    // Baseline: the least any handling does, copying each frame's bytes once.
    let mut sink = vec![0u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..10 {
        for chunk in stream.chunks(64 * 1024) {
            sink[..chunk.len()].copy_from_slice(chunk);
            std::hint::black_box(&sink);
        }
    }
    let baseline_us = started.elapsed().as_secs_f64() * 1e6 / frames as f64;
    println!("per frame (640x360 JPEG, {} bytes avg):", stream.len() as u64 * 10 / frames.max(1));
    println!("  sampler path: {per_frame_us:.2} µs CPU, {per_frame_allocs:.2} heap allocations");
    println!("  bare copy of the same bytes (baseline): {baseline_us:.2} µs; ratio {:.1}", per_frame_us / baseline_us);
    std::hint::black_box(payload_bytes);
}

fn end_to_end(seconds: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    runtime.block_on(async {
        let dir = support::TempDir::new("bench-sampler-e2e");
        let broker = support::Broker::start(&dir.join("broker"));
        let cameras: String = (0..8)
            .map(|i| {
                format!(
                    "[[camera]]\nid = \"c{i}\"\nsource = \"lavfi:testsrc2=size=640x360:rate=10\"\nsegment_s = 10\n\
                     sample_fps = 2\nsample_width = 320\n"
                )
            })
            .collect();
        let mut node = support::Node::configure(&dir.0, "bench", &broker.url(), &cameras);
        let mut watcher = support::Watcher::connect(broker.port, "bench-watch", true, &["heldar/bench/frames/+"]).await;
        node.start(&[]);
        watcher
            .client
            .publish("heldar/bench/workers/w1/status", rumqttc::QoS::AtLeastOnce, true, r#"{"v":1,"state":"online"}"#)
            .await
            .expect("status");
        let _ = watcher.next_on("heldar/bench/frames/c0", Duration::from_secs(30)).await.expect("frames");
        let rss_start = support::memory_kib(node.pid(), "VmRSS:");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut latencies = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, watcher.next_any()).await {
            let received = UnixMs::now();
            let newline = m.payload.iter().position(|b| *b == b'\n').expect("header");
            let header: serde_json::Value = serde_json::from_slice(&m.payload[..newline]).expect("json");
            let ts = UnixMs::parse_rfc3339(header["ts"].as_str().expect("ts")).expect("ts");
            latencies.push(received.0 - ts.0);
        }
        let rss_end = support::memory_kib(node.pid(), "VmRSS:");
        latencies.sort_unstable();
        let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
        println!(
            "end to end, 8 cameras x 2 fps, {} frames in {seconds} s: capture ts -> subscriber p50 {} ms, p99 {} ms",
            latencies.len(),
            pick(0.5),
            pick(0.99)
        );
        println!(
            "service RSS with 8 sampled cameras: {:.1} MiB at start, {:.1} MiB at end",
            rss_start / 1024.0,
            rss_end / 1024.0
        );
        node.terminate(Duration::from_secs(20));
    });
}
