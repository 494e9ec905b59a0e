//! Test harness: a real mosquitto on a free loopback port, the real
//! `heldar-edge` binary, and an MQTT client to watch them.

#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `name`.
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "heldar-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("HELDAR_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An argon2id hash of `password` for `[[http.user]] password_hash`, from `heldar-edge passwd`.
pub fn password_hash(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("passwd");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("write");
    let out = child.wait_with_output().expect("passwd");
    assert!(out.status.success(), "heldar-edge passwd failed");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Finds a system binary on PATH or in the sbin directories, or fails with how to install it.
pub fn system_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not installed: run scripts/setup, or `sudo apt-get install -y {package}`");
}

/// The broker's `max_packet_size`, as docs/mqtt.md tells installers to set it for the
/// `generic` board: the node's largest packet.
pub const MAX_PACKET_SIZE: usize = 1_052_672;

/// A mosquitto broker on loopback; persistence keeps sessions across restarts.
pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    extra_conf: String,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port, state kept in `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port())
    }

    /// Starts a broker on `port`, state kept in `dir`.
    pub fn start_on(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, "")
    }

    /// Starts a broker on `port` with more mosquitto.conf lines (further listeners, say).
    pub fn start_with(dir: &Path, port: u16, extra_conf: &str) -> Self {
        let mut broker = Self { port, dir: dir.to_path_buf(), extra_conf: extra_conf.to_string(), child: None };
        broker.restart();
        broker
    }

    /// Starts it again after `stop`, on the same port with the same saved sessions.
    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("broker dir");
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings true\nuser {user}\nset_tcp_nodelay true\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
                 max_queued_messages 100000\nmax_inflight_messages 100\nmax_packet_size {max_packet}\nlog_dest file {dir}/mosquitto.log\nlog_type all\n{extra}",
                max_packet = MAX_PACKET_SIZE,
                user = current_user(),
                port = self.port,
                dir = self.dir.display(),
                extra = self.extra_conf,
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(system_binary("mosquitto", "mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        wait_for(Duration::from_secs(10), "mosquitto to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Stops it the way systemd does (SIGTERM), so it saves its sessions.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    /// The broker URL for a config.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The user running the tests: mosquitto started as root would otherwise switch to
/// user `mosquitto`, which cannot write its state into our temp directory.
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sends a signal by name (`TERM`, `KILL`, `HUP`) through kill(1).
pub fn signal(child: &Child, name: &str) {
    signal_pid(child.id(), name);
}

/// Sends a signal by name to process `pid`.
pub fn signal_pid(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Polls `condition` until true, or panics naming `what`.
pub fn wait_for(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `heldar-edge run` process with its own config and data directory.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Writes a config for node `id` talking to `broker_url` (plus `extra` TOML) into `dir`.
    pub fn configure(dir: &Path, id: &str, broker_url: &str, extra: &str) -> Self {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nid = \"{id}\"\ndata_dir = \"data\"\n\n[mqtt]\nurl = \"{broker_url}\"\nstats_interval_s = 1\n{extra}"
            ),
        )
        .expect("write config");
        Self { dir: dir.to_path_buf(), config, child: None }
    }

    /// Starts `heldar-edge run` with `args`; logs go to `node.log` in its directory.
    pub fn start(&mut self, args: &[&str]) {
        self.start_with_env(args, &[]);
    }

    /// Like `start`, with more environment variables.
    pub fn start_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).expect("node.log");
        let child = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("HELDAR_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn heldar-edge");
        self.child = Some(child);
    }

    /// Process id of the running service.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node running").id()
    }

    /// The index database.
    pub fn index(&self) -> PathBuf {
        self.dir.join("data/index.db")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node running");
        signal(&child, "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("heldar-edge did not stop within {timeout:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts rows of `sql` (a `SELECT count(*)`) in its index, read-only.
    pub fn count(&self, sql: &str) -> i64 {
        let Ok(conn) = rusqlite::Connection::open_with_flags(self.index(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return -1;
        };
        conn.busy_timeout(Duration::from_secs(2)).expect("busy timeout");
        conn.query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- heldar-edge log ---\n{}", self.log());
        }
    }
}

/// A received message.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.topic, self.text()))
    }
}

/// An MQTT client that records what arrives on its subscriptions.
pub struct Watcher {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Connects as `client_id` (`clean` session or persistent) and subscribes to `filters` with QoS 1.
    pub async fn connect(port: u16, client_id: &str, clean: bool, filters: &[&str]) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_clean_session(clean).set_keep_alive(Duration::from_secs(5)).set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        heldar_edge::mqtt::settings::no_delay(&mut eventloop);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            let mut acked = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ =
                            tx.send(Message { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain });
                    }
                    // (Re)subscribe on every connection: a test that blocks its thread may
                    // miss keep-alives and be reconnected with a clean session.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = subscriber.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acked += 1;
                        if acked == filters.len() {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await.expect("SUBACK in time");
        Self { client, rx, task }
    }

    /// The next message on `topic` within `timeout`, skipping others.
    pub async fn next_on(&mut self, topic: &str, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if m.topic == topic => return Some(m),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next message on any topic.
    pub async fn next_any(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// Messages until `done` says stop or `timeout` passes.
    pub async fn collect(&mut self, timeout: Duration, mut done: impl FnMut(&[Message]) -> bool) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut messages = Vec::new();
        while !done(&messages) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => messages.push(m),
                Ok(None) | Err(_) => break,
            }
        }
        messages
    }

    /// Disconnects cleanly (a persistent session stays on the broker).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.task.abort();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Password of user `viewer` on the test RTSP camera's `/secure` stream.
pub const RTSP_PASSWORD: &str = "Cam-Pa55word";

/// The test RTSP camera (GStreamer's RTSP server): `/cam` on `port`, `/secure` with
/// basic auth `viewer`/`RTSP_PASSWORD` on `port + 1`.
pub struct RtspCamera {
    pub port: u16,
    size: String,
    unshared: bool,
    /// More options of `tests/tools/rtsp_server.py` (`--fps`, `--gop`, `--bitrate`).
    options: Vec<String>,
    child: Option<Child>,
}

impl RtspCamera {
    /// Starts serving 320x240 on a free pair of ports.
    pub fn start() -> Self {
        Self::start_sized("320x240")
    }

    /// Starts serving pictures of `size` (`WxH`) on a free pair of ports.
    pub fn start_sized(size: &str) -> Self {
        Self::start_with(size, false)
    }

    /// Like `start_sized`; `unshared` gives every client its own encoder (for many clients).
    pub fn start_with(size: &str, unshared: bool) -> Self {
        Self::start_options(size, unshared, &[])
    }

    /// Like `start_with`, with more options of the server (`--fps 30`, `--gop 60`, ...).
    pub fn start_options(size: &str, unshared: bool, options: &[&str]) -> Self {
        let port = loop {
            let port = free_port();
            if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let options = options.iter().map(|o| o.to_string()).collect();
        let mut camera = Self { port, size: size.to_string(), unshared, options, child: None };
        camera.restart();
        camera
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        let python = Path::new("/usr/bin/python3");
        assert!(
            python.is_file(),
            "/usr/bin/python3 is missing: run scripts/setup test (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/rtsp_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(self.port.to_string())
            .args(["--password", RTSP_PASSWORD, "--size", &self.size])
            .args(self.unshared.then_some("--unshared"))
            .args(&self.options)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the RTSP server");
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).expect("read");
        assert_eq!(
            ready.trim(),
            "ready",
            "the RTSP server did not start: run scripts/setup test (apt-get install python3-gi \
             gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)"
        );
        self.child = Some(child);
    }

    /// Its process id (to stop it with SIGSTOP: a camera that hangs with its connections open).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("camera running").id()
    }

    /// Kills it (the camera drops off the network).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The open stream.
    pub fn url(&self) -> String {
        self.url_of("cam")
    }

    /// Another open stream: `cam265`, `cam-audio`, `cam265-audio` or `cam-resize`.
    pub fn url_of(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Duration of a media file in seconds per ffprobe, `None` when it does not play.
pub fn ffprobe_duration(file: &Path) -> Option<f64> {
    let out = Command::new(system_binary("ffprobe", "ffmpeg"))
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// True when ffmpeg decodes every frame of `file` without error.
pub fn plays(file: &Path) -> bool {
    let out = Command::new(system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    out.status.success() && out.stderr.is_empty()
}

/// A row of the segment index.
#[derive(Clone, Debug)]
pub struct SegmentRow {
    pub camera: String,
    pub path: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub bytes: i64,
    pub codec: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

impl Node {
    /// The indexed segments of `camera`, oldest first.
    pub fn segments(&self, camera: &str) -> Vec<SegmentRow> {
        let Ok(conn) = rusqlite::Connection::open_with_flags(self.index(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return Vec::new();
        };
        conn.busy_timeout(Duration::from_secs(2)).expect("busy timeout");
        let Ok(mut stmt) = conn.prepare(
            "SELECT camera, path, start_ms, end_ms, bytes, codec, width, height FROM segments
             WHERE camera = ?1 ORDER BY start_ms",
        ) else {
            return Vec::new();
        };
        stmt.query_map([camera], |r| {
            Ok(SegmentRow {
                camera: r.get(0)?,
                path: r.get(1)?,
                start_ms: r.get(2)?,
                end_ms: r.get(3)?,
                bytes: r.get(4)?,
                codec: r.get(5)?,
                width: r.get(6)?,
                height: r.get(7)?,
            })
        })
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
    }

    /// A recorded segment's file.
    pub fn segment_file(&self, row: &SegmentRow) -> PathBuf {
        self.dir.join("data/recordings").join(&row.path)
    }
}

/// A `key: value kB` figure of a process, in KiB: `VmRSS:` from /proc/PID/status, `Pss:` from
/// /proc/PID/smaps_rollup; 0 when unreadable.
pub fn memory_kib(pid: u32, key: &str) -> f64 {
    let file = if key == "Pss:" { "smaps_rollup" } else { "status" };
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}

/// A clock the node (and its ffmpeg) runs on under libfaketime: the wall clock is offset by
/// what is written to a file, re-read at every call; the monotonic and boot clocks are real.
pub struct FakeClock {
    lib: &'static str,
    file: PathBuf,
}

impl FakeClock {
    /// A clock with no offset yet, its file in `dir`.
    pub fn new(dir: &Path) -> Self {
        let lib = [
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libfaketime (apt-get install faketime)");
        let clock = Self { lib, file: dir.join("faketime.rc") };
        clock.set_offset(0);
        clock
    }

    /// Steps the wall clock to `offset_s` seconds from the real one.
    pub fn set_offset(&self, offset_s: i64) {
        std::fs::write(&self.file, format!("{offset_s:+}s\n")).expect("faketime file");
    }

    /// Starts `node` on this clock.
    pub fn start(&self, node: &mut Node) {
        let file = self.file.display().to_string();
        let env = [
            ("LD_PRELOAD", self.lib),
            ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ];
        node.start_with_env(&[], &env);
    }
}

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "mounting a tmpfs failed: tests of a full disk need root (CI runs as root); run scripts/test as root"
        );
        Self(dir.to_path_buf())
    }

    pub fn free(&self) -> u64 {
        heldar_edge::recording::sweeper::disk_space(&self.0).expect("statvfs").0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Validates `instances` against `sdk/schema/<schema>` with Python's jsonschema (installed by scripts/setup).
pub fn assert_schema(schema: &str, instances: &[serde_json::Value]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/schema/");
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1]))\n\
                  for line in sys.stdin:\n    jsonschema.validate(json.loads(line), schema)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &format!("{path}{schema}")])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup installs it with jsonschema)");
    let lines: String = instances.iter().map(|v| format!("{v}\n")).collect();
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), lines.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "{schema} disagrees: {}", String::from_utf8_lossy(&out.stderr));
}
