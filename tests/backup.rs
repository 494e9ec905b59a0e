//! Backups with real files, a real SQLite index and real mounts: a USB stick
//! (a loop-mounted ext4 image) that is missing, unplugged mid-job and plugged
//! back; a job killed with -9 and resumed; an sftp server (`rclone serve
//! sftp`) through rclone; rclone missing.

mod support;

use heldar_edge::recording::index::{NewSegment, insert_segment};
use heldar_edge::wallclock::UnixMs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::TempDir;

/// Writes `count` segments of `bytes` each (random content) and indexes them; returns their paths.
fn fixture(dir: &Path, count: usize, bytes: usize) -> Vec<String> {
    let data = dir.join("data");
    let mut conn = heldar_edge::store::open_connection(&data.join("index.db")).expect("index");
    let tx = conn.transaction().expect("tx");
    let now = UnixMs::now().0 - 3_600_000;
    let mut paths = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..count {
        let start = now + i as i64 * 10_000;
        let path = format!("cam/{}/{:06}.mp4", &UnixMs(start).to_rfc3339()[..10], i);
        let file = data.join("recordings").join(&path);
        std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
        let content: Vec<u8> = (0..bytes)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        std::fs::write(&file, content).expect("segment");
        let segment = NewSegment {
            camera: "cam".into(),
            path: path.clone(),
            start: UnixMs(start),
            end: UnixMs(start + 10_000),
            bytes: bytes as u64,
            codec: Some("h264".into()),
            width: Some(640),
            height: Some(360),
        };
        insert_segment(&tx, &segment).expect("insert");
        paths.push(path);
    }
    tx.commit().expect("commit");
    paths
}

fn config(dir: &Path, destination: &str, policy_extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nid = \"bk\"\ndata_dir = \"data\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\n{destination}\n\
             [[backup.policy]]\nid = \"p\"\ndestination = \"d\"\nlookback_s = 0\nverify = \"sha256\"\n{policy_extra}"
        ),
    )
    .expect("config");
    path
}

fn backup(config: &Path, path_env: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_heldar-edge"));
    command.args(["backup", "p", "-c"]).arg(config);
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    command.output().expect("heldar-edge backup")
}

/// `heldar-edge export` of the window into `out`, with more `flags`.
fn export(config: &Path, flags: &[&str], (from, to): (UnixMs, UnixMs), out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .arg("export")
        .args(flags)
        .args(["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339(), "--out"])
        .arg(out)
        .arg("-c")
        .arg(config)
        .output()
        .expect("export")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Files under `root`, relative, sorted.
fn files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn same_content(a: &Path, b: &Path) -> bool {
    std::fs::read(a).ok() == std::fs::read(b).ok()
}

/// A loop-mounted ext4 image, the test's USB stick; unmounted when dropped.
struct Stick {
    image: PathBuf,
    mount_point: PathBuf,
}

impl Stick {
    fn new(dir: &Path) -> Self {
        let image = dir.join("stick.img");
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("command");
            assert!(out.status.success(), "{cmd:?}: {}", text(&out));
        };
        run(Command::new("truncate").args(["-s", "64M"]).arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        let mount_point = dir.join("stick");
        std::fs::create_dir_all(&mount_point).expect("mount point");
        Self { image, mount_point }
    }

    fn plug(&self) {
        let out =
            Command::new("mount").args(["-o", "loop"]).arg(&self.image).arg(&self.mount_point).output().expect("mount");
        assert!(out.status.success(), "mounting the stick image needs root (CI runs as root): {}", text(&out));
    }

    fn unplug(&self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount_point).status();
    }
}

impl Drop for Stick {
    fn drop(&mut self) {
        self.unplug();
    }
}

#[test]
fn usb_refused_unplugged_and_completed_without_copying_twice() {
    let dir = TempDir::new("backup-usb");
    let sources = fixture(&dir.0, 12, 400_000);
    let stick = Stick::new(&dir.0);
    let target = stick.mount_point.join("heldar");
    let destination = format!("[[backup.destination]]\nid = \"d\"\nkind = \"usb\"\npath = \"{}\"\n", target.display());
    let config = config(&dir.0, &destination, "bandwidth = \"800KiB\"\n");

    let refused = backup(&config, None);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("not on a mounted stick"), "{}", text(&refused));
    assert!(!target.exists(), "nothing written to the root file system");

    stick.plug();
    let job = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["backup", "p", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("backup");
    std::thread::sleep(Duration::from_secs(3));
    stick.unplug();
    let out = job.wait_with_output().expect("wait");
    assert!(!out.status.success(), "the job fails when the stick goes: {}", text(&out));
    assert!(text(&out).contains("not on a mounted stick"), "{}", text(&out));

    stick.plug();
    let copied_before = files(&target).into_iter().filter(|f| !f.ends_with(".partial")).count();
    assert!(copied_before > 0 && copied_before < sources.len(), "{copied_before} copied before the unplug");
    let done = backup(&config, None);
    assert!(done.status.success(), "{}", text(&done));
    let copied_now: usize = text(&done)
        .rsplit("backup p: ")
        .next()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .expect("files copied");
    assert_eq!(copied_now, sources.len() - copied_before, "the second run copies only what was missing");
    let held: Vec<String> = files(&target).into_iter().filter(|f| !f.ends_with(".partial")).collect();
    assert_eq!(held, sources);
    for path in &sources {
        assert!(same_content(&dir.join(&format!("data/recordings/{path}")), &target.join(path)), "{path} differs");
    }
    let again = backup(&config, None);
    assert!(text(&again).contains("backup p: 0 files"), "nothing copied twice: {}", text(&again));
}

/// Starts `heldar-edge backup p` over 10 files at 600 KiB/s with `policy_extra` and kills it
/// (`-9`) once the first file is copied; returns the files, the destination and the config.
fn killed_mid_job(dir: &TempDir, policy_extra: &str) -> (Vec<String>, PathBuf, PathBuf) {
    let sources = fixture(&dir.0, 10, 300_000);
    let target = dir.join("nas");
    let destination =
        format!("[[backup.destination]]\nid = \"d\"\nkind = \"local\"\npath = \"{}\"\n", target.display());
    let config = config(&dir.0, &destination, &format!("{policy_extra}bandwidth = \"600KiB\"\nconcurrency = 1\n"));
    let mut job = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["backup", "p", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backup");
    support::wait_for(Duration::from_secs(20), "a first file copied", || {
        files(&target).iter().any(|f| !f.ends_with(".partial"))
    });
    let _ = Command::new("kill").args(["-9", &job.id().to_string()]).status();
    let _ = job.wait();
    let partway = files(&target);
    assert!(partway.iter().filter(|f| !f.ends_with(".partial")).count() < sources.len(), "killed mid-job: {partway:?}");
    (sources, target, config)
}

/// Every source file is at the destination with the same content.
fn assert_backed_up(dir: &TempDir, sources: &[String], target: &Path) {
    for path in sources {
        assert!(same_content(&dir.join(&format!("data/recordings/{path}")), &target.join(path)), "{path} differs");
    }
}

#[test]
fn a_job_killed_mid_way_resumes_and_ends_verified() {
    let dir = TempDir::new("backup-kill");
    let (sources, target, config) = killed_mid_job(&dir, "");
    let done = backup(&config, None);
    assert!(done.status.success(), "{}", text(&done));
    assert_eq!(files(&target), sources, "exactly the expected files, no temporary ones");
    assert_backed_up(&dir, &sources, &target);
}

#[test]
fn an_on_request_job_cut_short_resumes_when_the_service_starts() {
    let dir = TempDir::new("backup-resume");
    // `every_s = 0`: the policy runs only when asked (here by the CLI, cut by a kill -9).
    let (sources, target, config) = killed_mid_job(&dir, "every_s = 0\n");
    let log = std::fs::File::create(dir.join("service.log")).expect("log");
    let mut service = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run");
    support::wait_for(Duration::from_secs(60), "the job resumed and done", || files(&target) == sources);
    support::signal(&service, "TERM");
    assert!(service.wait().expect("wait").success());
    assert_backed_up(&dir, &sources, &target);
}

#[test]
fn sftp_through_rclone_and_a_clear_error_without_rclone() {
    let dir = TempDir::new("backup-sftp");
    let sources = fixture(&dir.0, 6, 200_000);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).expect("served");
    let port = support::free_port();
    let rclone = support::system_binary("rclone", "rclone");
    let mut server = Command::new(&rclone)
        .args(["serve", "sftp", "--addr", &format!("127.0.0.1:{port}"), "--user", "bk", "--pass", "sftp-pw-42"])
        .arg(&served)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclone serve sftp");
    support::wait_for(Duration::from_secs(10), "the sftp server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::fs::write(dir.join("sftp.pass"), "sftp-pw-42\n").expect("password");
    let destination = format!(
        "[[backup.destination]]\nid = \"d\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"bk\"\n\
         password_file = \"sftp.pass\"\npath = \"footage\"\n"
    );
    let config = config(&dir.0, &destination, "");

    let without = backup(&config, Some("/nonexistent"));
    assert!(!without.status.success());
    assert!(text(&without).contains("rclone is not installed"), "{}", text(&without));

    let done = backup(&config, None);
    let _ = server.kill();
    let _ = server.wait();
    assert!(done.status.success(), "{}", text(&done));
    assert!(!text(&done).contains("sftp-pw-42"), "the password leaked: {}", text(&done));
    let remote = served.join("footage");
    assert_eq!(files(&remote), sources);
    for path in &sources {
        assert!(same_content(&dir.join(&format!("data/recordings/{path}")), &remote.join(path)), "{path} differs");
    }
}

#[test]
fn export_writes_the_window_and_a_manifest_whose_hashes_match() {
    let dir = TempDir::new("export");
    let sources = fixture(&dir.0, 8, 100_000);
    let config = config(&dir.0, "[[backup.destination]]\nid = \"d\"\nkind = \"local\"\npath = \"/tmp/unused\"\n", "");
    let index = rusqlite::Connection::open(dir.join("data/index.db")).expect("index");
    let starts: Vec<i64> = index
        .prepare("SELECT start_ms FROM segments ORDER BY start_ms")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // A window over segments 2..=4 (each lasts 10 s).
    let (from, to) = (UnixMs(starts[2] + 1), UnixMs(starts[4] + 5_000));
    let out = dir.join("window.tar");
    let run = export(&config, &["--camera", "cam"], (from, to), &out);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("3 segments"), "{}", text(&run));

    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("dir");
    let untar = Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&unpacked).output().expect("tar");
    assert!(untar.status.success(), "{}", text(&untar));
    let mut expected: Vec<String> = sources[2..=4].to_vec();
    expected.push("manifest.json".into());
    expected.sort();
    assert_eq!(files(&unpacked), expected);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).expect("manifest")).expect("json");
    for entry in manifest["files"].as_array().expect("files") {
        let path = entry["path"].as_str().expect("path");
        let bytes = std::fs::read(unpacked.join(path)).expect("file");
        let digest = sha256_hex(&bytes);
        assert_eq!(entry["sha256"], digest, "{path}");
        assert_eq!(entry["camera"], "cam");
        assert!(same_content(&unpacked.join(path), &dir.join(&format!("data/recordings/{path}"))));
    }

    let too_big = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["export", "--from", &from.to_rfc3339(), "--to", &to.to_rfc3339(), "--max-bytes", "100KB", "-c"])
        .arg(&config)
        .output()
        .expect("export");
    assert!(!too_big.status.success());
    assert!(text(&too_big).contains("over the export limit"), "{}", text(&too_big));
}

#[test]
fn export_cut_trims_the_edge_segments_to_the_window_by_stream_copy() {
    let dir = TempDir::new("export-cut");
    // One real 10 s fragmented MP4 with a key frame every second, indexed as three segments in a row.
    let clip = dir.join("clip.mp4");
    let made = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "10"])
        .args(["-c:v", "libx264", "-g", "10", "-movflags", "+frag_keyframe+empty_moov+default_base_moof"])
        .arg(&clip)
        .output()
        .expect("ffmpeg");
    assert!(made.status.success(), "{}", text(&made));
    let data = dir.join("data");
    let mut conn = heldar_edge::store::open_connection(&data.join("index.db")).expect("index");
    let tx = conn.transaction().expect("tx");
    let base = UnixMs::now().0 - 3_600_000;
    for i in 0..3 {
        let path = format!("cam/day/{i:06}.mp4");
        std::fs::create_dir_all(data.join("recordings/cam/day")).expect("dir");
        std::fs::copy(&clip, data.join("recordings").join(&path)).expect("copy");
        let start = UnixMs(base + i * 10_000);
        let bytes = std::fs::metadata(&clip).expect("clip").len();
        let segment = NewSegment {
            camera: "cam".into(),
            path,
            start,
            end: UnixMs(start.0 + 10_000),
            bytes,
            codec: Some("h264".into()),
            width: Some(320),
            height: Some(240),
        };
        insert_segment(&tx, &segment).expect("insert");
    }
    tx.commit().expect("commit");
    drop(conn);
    let config = config(&dir.0, "[[backup.destination]]\nid = \"d\"\nkind = \"local\"\npath = \"/tmp/unused\"\n", "");
    let (from, to) = (UnixMs(base + 6_000), UnixMs(base + 24_000));
    let out = dir.join("cut.tar");
    let run = export(&config, &["--cut"], (from, to), &out);
    assert!(run.status.success(), "{}", text(&run));
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("dir");
    let untar = Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&unpacked).output().expect("tar");
    assert!(untar.status.success(), "{}", text(&untar));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).expect("manifest")).expect("json");
    let entries = manifest["files"].as_array().expect("files");
    assert_eq!(entries.len(), 3);
    // Last 4 s of the first segment, all of the second, first 4 s of the third.
    for (entry, (seconds, cut)) in entries.iter().zip([(4.0, true), (10.0, false), (4.0, true)]) {
        let file = unpacked.join(entry["path"].as_str().expect("path"));
        assert_eq!(entry["cut"], cut, "{entry}");
        assert_eq!(entry["sha256"], sha256_hex(&std::fs::read(&file).expect("file")), "{entry}");
        assert!(support::plays(&file), "{} does not play", file.display());
        let duration = support::ffprobe_duration(&file).expect("duration");
        assert!((duration - seconds).abs() <= 1.05, "{}: {duration} s, expected about {seconds} s", entry["path"]);
    }
    assert_eq!(entries[0]["start"], from.to_rfc3339());
    assert_eq!(entries[2]["end"], to.to_rfc3339());
    assert!(!dir.join("cut.tar.cut.mp4").exists(), "the temporary cut is removed");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn s3_through_rclone_against_a_local_s3_server() {
    let dir = TempDir::new("backup-s3");
    let sources = fixture(&dir.0, 5, 150_000);
    let port = support::free_port();
    let moto = support::system_binary("moto_server", "python3-pip (then: python3 -m pip install 'moto[server]')");
    let mut server = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server");
    support::wait_for(Duration::from_secs(20), "the S3 server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::fs::write(dir.join("s3.secret"), "moto-secret-77\n").expect("secret");
    let destination = format!(
        "[[backup.destination]]\nid = \"d\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"testing\"\nsecret_access_key_file = \"s3.secret\"\npath = \"footage/heldar\"\n"
    );
    let config = config(&dir.0, &destination, "");
    let done = backup(&config, None);
    assert!(done.status.success(), "{}", text(&done));
    assert!(!text(&done).contains("moto-secret-77"), "the secret leaked: {}", text(&done));

    let remote = [
        ("RCLONE_CONFIG_CHECK_TYPE", "s3".to_string()),
        ("RCLONE_CONFIG_CHECK_PROVIDER", "Other".to_string()),
        ("RCLONE_CONFIG_CHECK_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("RCLONE_CONFIG_CHECK_ACCESS_KEY_ID", "testing".to_string()),
        ("RCLONE_CONFIG_CHECK_SECRET_ACCESS_KEY", "moto-secret-77".to_string()),
    ];
    let rclone = support::system_binary("rclone", "rclone");
    let listed = Command::new(&rclone)
        .args(["lsf", "-R", "--files-only", "check:footage/heldar"])
        .envs(remote.clone())
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("lsf");
    let mut held: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_string).collect();
    held.sort();
    assert_eq!(held, sources, "{}", text(&listed));
    let cat = Command::new(&rclone)
        .args(["cat", &format!("check:footage/heldar/{}", sources[0])])
        .envs(remote)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("cat");
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(cat.stdout, std::fs::read(dir.join(&format!("data/recordings/{}", sources[0]))).expect("source"));
}
