//! Backup and retention at scale, each against a baseline in the same run:
//! 1. a local backup job of 40 × 8 MiB segments (copied, hashed, verified by size, renamed)
//!    against `cp -r` of the same files;
//! 2. a retention sweep over 1M indexed segments (nothing due, then 10 000 aged out);
//! 3. an sftp job through rclone against a bare `rclone copy` of the same files.
//!
//! `cargo bench --bench backup`

#[path = "../tests/support/mod.rs"]
mod support;

use heldar_edge::backup::job::{BackupContext, run_job};
use heldar_edge::config::{self, schema::DestinationConfig};
use heldar_edge::recording::index::{NewSegment, insert_segment};
use heldar_edge::recording::sweeper::{ReadLocks, Sweeper};
use heldar_edge::store::Store;
use heldar_edge::wallclock::UnixMs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        local_copy().await;
        sweep_at_scale().await;
        sftp().await;
    });
}

/// Writes `count` segments of `bytes` into `dir/data` with their index rows.
fn fixture(dir: &Path, count: usize, bytes: usize) {
    let data = dir.join("data");
    let mut conn = heldar_edge::store::open_connection(&data.join("index.db")).expect("index");
    let tx = conn.transaction().expect("tx");
    let block: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
    let now = UnixMs::now().0 - 3_600_000;
    for i in 0..count {
        let path = format!("cam/2026-11-24/{i:06}.mp4");
        let file = data.join("recordings").join(&path);
        std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
        std::fs::write(&file, &block).expect("write");
        let start = UnixMs(now + i as i64 * 10_000);
        let segment = NewSegment {
            camera: "cam".into(),
            path,
            start,
            end: UnixMs(start.0 + 10_000),
            bytes: bytes as u64,
            codec: None,
            width: None,
            height: None,
        };
        insert_segment(&tx, &segment).expect("insert");
    }
    tx.commit().expect("commit");
}

fn loaded(dir: &Path, extra: &str) -> config::LoadedConfig {
    let text = format!("[node]\nid = \"b\"\ndata_dir = \"data\"\n{extra}");
    config::load_str(&text, &dir.join("config.toml"), dir, || Some("b".into())).expect("config")
}

fn policy_and_destination(config: &config::LoadedConfig) -> (config::schema::PolicyConfig, DestinationConfig) {
    (config.config.backup.policies[0].clone(), config.config.backup.destinations[0].clone())
}

async fn job_seconds(config: &config::LoadedConfig) -> f64 {
    let (store, thread) = Store::open(&config.index_path()).expect("store");
    let ctx = BackupContext {
        store: store.clone(),
        recordings_dir: config.recordings_dir.clone(),
        reads: ReadLocks::default(),
        config_dir: config.path.parent().expect("dir").to_path_buf(),
        data_dir: config.data_dir.clone(),
    };
    let (policy, dest) = policy_and_destination(config);
    let started = Instant::now();
    let done = run_job(&ctx, &policy, &dest, &|_| {}).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(done.error.is_none(), "{:?}", done.error);
    drop((ctx, store));
    thread.join();
    seconds
}

async fn local_copy() {
    let dir = support::TempDir::new("bench-backup-local");
    let (count, bytes) = (40, 8 << 20);
    fixture(&dir.0, count, bytes);
    let target = dir.join("dest");
    let config = loaded(
        &dir.0,
        &format!(
            "[[backup.destination]]\nid = \"d\"\nkind = \"local\"\npath = \"{}\"\n\
             [[backup.policy]]\nid = \"p\"\ndestination = \"d\"\nlookback_s = 0\n",
            target.display()
        ),
    );
    let job = job_seconds(&config).await;
    let started = Instant::now();
    let status =
        Command::new("cp").arg("-r").arg(dir.join("data/recordings/cam")).arg(dir.join("cp")).status().expect("cp");
    assert!(status.success());
    let cp = started.elapsed().as_secs_f64();
    let mib = (count * bytes) as f64 / 1048576.0;
    println!(
        "local backup of {count} x 8 MiB: {:.0} MiB/s; cp -r {:.0} MiB/s; time ratio job/cp {:.2}",
        mib / job,
        mib / cp,
        job / cp
    );
}

async fn sweep_at_scale() {
    let dir = support::TempDir::new("bench-backup-sweep");
    let config = loaded(
        &dir.0,
        "[[camera]]\nid = \"cam\"\nsource = \"lavfi:testsrc\"\nretain_days = 30\n[storage]\nmin_free_percent = 0\n",
    );
    std::fs::create_dir_all(&config.recordings_dir).expect("dir");
    let mut conn = heldar_edge::store::open_connection(&config.index_path()).expect("index");
    let tx = conn.transaction().expect("tx");
    let now = UnixMs::now().0;
    let rows = 1_000_000i64;
    for i in 0..rows {
        // Newest first: the last 10 000 inserted are 31 days old, past retain_days.
        let start = now - 10_000 * (rows - i) / 4 - if i < 10_000 { 31 * 86_400_000 } else { 0 };
        let segment = NewSegment {
            camera: "cam".into(),
            path: format!("cam/d/{i:08}.mp4"),
            start: UnixMs(start),
            end: UnixMs(start + 2_500),
            bytes: 1,
            codec: None,
            width: None,
            height: None,
        };
        insert_segment(&tx, &segment).expect("insert");
    }
    tx.commit().expect("commit");
    drop(conn);
    let (store, thread) = Store::open(&config.index_path()).expect("store");
    let sweeper = Sweeper::new(&config, store.clone(), ReadLocks::default());
    let started = Instant::now();
    let first = sweeper.sweep(UnixMs(now)).await.expect("sweep");
    let aging = started.elapsed();
    let started = Instant::now();
    let second = sweeper.sweep(UnixMs(now)).await.expect("sweep");
    let idle = started.elapsed();
    println!(
        "retention at 1M segments: sweep deleting {} aged: {:.2} s; sweep with nothing due: {:.1} ms (deleted {})",
        first.aged,
        aging.as_secs_f64(),
        idle.as_secs_f64() * 1000.0,
        second.aged + second.for_space
    );
    drop((sweeper, store));
    thread.join();
}

async fn sftp() {
    let dir = support::TempDir::new("bench-backup-sftp");
    let (count, bytes) = (20, 4 << 20);
    fixture(&dir.0, count, bytes);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).expect("served");
    let port = support::free_port();
    let rclone = support::system_binary("rclone", "rclone");
    let mut server = Command::new(&rclone)
        .args(["serve", "sftp", "--addr", &format!("127.0.0.1:{port}"), "--user", "u", "--pass", "p"])
        .arg(&served)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclone serve");
    support::wait_for(Duration::from_secs(10), "sftp", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    std::fs::write(dir.join("pass"), "p\n").expect("pass");
    let config = loaded(
        &dir.0,
        &format!(
            "[[backup.destination]]\nid = \"d\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"u\"\n\
             password_file = \"pass\"\npath = \"job\"\n[[backup.policy]]\nid = \"p\"\ndestination = \"d\"\nlookback_s = 0\n"
        ),
    );
    let job = job_seconds(&config).await;
    let obscured = Command::new(&rclone).args(["obscure", "p"]).output().expect("obscure");
    let obscured = String::from_utf8_lossy(&obscured.stdout).trim().to_string();
    let started = Instant::now();
    let bare = Command::new(&rclone)
        .args(["copy", "--transfers", "2"])
        .arg(dir.join("data/recordings"))
        .arg("bare:bare")
        .envs([
            ("RCLONE_CONFIG_BARE_TYPE", "sftp".to_string()),
            ("RCLONE_CONFIG_BARE_HOST", "127.0.0.1".to_string()),
            ("RCLONE_CONFIG_BARE_PORT", port.to_string()),
            ("RCLONE_CONFIG_BARE_USER", "u".to_string()),
            ("RCLONE_CONFIG_BARE_PASS", obscured),
        ])
        .status()
        .expect("rclone copy");
    let bare_s = started.elapsed().as_secs_f64();
    let _ = server.kill();
    let _ = server.wait();
    assert!(bare.success());
    println!("sftp job of {count} x 4 MiB: {job:.2} s; bare rclone copy {bare_s:.2} s; ratio {:.2}", job / bare_s);
}
