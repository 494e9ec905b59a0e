//! The shipped config and board profiles validate; bad configs fail with the
//! right key path, line and message.

use heldar_edge::config::{self, ConfigError, board};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn load(text: &str) -> Result<config::LoadedConfig, ConfigError> {
    config::load_str(text, Path::new("test.toml"), Path::new(ROOT), || Some("testhost".into()))
}

#[test]
fn shipped_config_validates() {
    let loaded = config::load(&Path::new(ROOT).join("config.toml")).expect("config.toml is valid");
    assert_eq!(loaded.config.cameras.len(), 1);
    assert!(loaded.data_dir.is_absolute());
    assert!(loaded.recordings_dir.starts_with(&loaded.data_dir));
}

#[test]
fn every_board_profile_validates_and_is_built_in() {
    let mut files: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("board"))
        .expect("board dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let name = file.trim_end_matches(".toml");
        assert!(board::builtin_board(name).is_some(), "board/{file} is not compiled in");
        let by_name = load(&format!("[node]\nboard = {name:?}\n")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let by_path = load(&format!("[node]\nboard = \"board/{file}\"\n")).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(by_name.board.limits.max_cameras, by_path.board.limits.max_cameras);
    }
}

#[test]
fn defaults_fill_what_is_missing() {
    let loaded = load("").expect("empty config is valid");
    assert_eq!(loaded.node_id, "testhost");
    assert_eq!(loaded.topic_root(), "heldar/testhost");
    assert_eq!(loaded.client_id(), "heldar-testhost");
    assert_eq!(loaded.config.mqtt.keepalive_s, 15);
    assert_eq!(loaded.max_total_fps(), loaded.board.limits.max_total_fps);
}

const CAMERA: &str = "[[camera]]\nid = \"front\"\nsource = \"rtsp://10.0.0.5/stream1\"\n";

/// (config text, expected key path, words the message must contain, expected line)
const BAD: &[(&str, &str, &str, Option<usize>)] = &[
    ("[node]\nbogus = 1\n", "node.bogus", "unknown field `bogus`", Some(2)),
    ("[nodes]\n", "nodes", "unknown field `nodes`", Some(1)),
    ("[node]\nboard = \"pi9\"\n", "node.board", "no known board", Some(2)),
    ("[node]\nid = \"a/b\"\n", "node.id", "topic level", Some(2)),
    ("[mqtt]\nurl = \"http://x\"\n", "mqtt.url", "mqtt://", Some(2)),
    ("[mqtt]\nkeepalive_s = 1\n", "mqtt.keepalive_s", "5..=3600", Some(2)),
    ("[mqtt]\nkeepalive_s = \"fast\"\n", "mqtt.keepalive_s", "invalid type", Some(2)),
    ("[mqtt]\nca_file = \"ca.pem\"\n", "mqtt.ca_file", "mqtts://", Some(2)),
    ("[storage]\nmax_bytes = \"12 parsecs\"\n", "storage.max_bytes", "unit", Some(2)),
    ("[sampler]\nmax_total_fps = 1000\n", "sampler.max_total_fps", "board's max_total_fps", Some(2)),
    ("[[camera]]\nid = \"Front\"\nsource = \"rtsp://h/s\"\n", "camera[0].id", "[a-z0-9_-]", Some(2)),
    ("[[camera]]\nid = \"a\"\nsource = \"ftp://h\"\n", "camera[0].source", "rtsp", Some(3)),
    ("[[camera]]\nid = \"a\"\nsource = \"rtsp://u:pw@h/s\"\n", "camera[0].source", "password_file", Some(3)),
    ("[[camera]]\nid = \"a\"\n", "camera[0]", "missing field `source`", Some(1)),
    (
        "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\nsample_source = \"rtsp://u:pw@h/sub\"\n",
        "camera[0].sample_source",
        "password_file",
        Some(4),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\nsample_source = \"v4l2:///dev/video1\"\n",
        "camera[0].sample_source",
        "rtsp",
        Some(4),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\nsample_fps = 0\nsample_source = \"rtsp://h/sub\"\n",
        "camera[0].sample_source",
        "sample_fps",
        Some(5),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\nrecord = \"always\"\n",
        "camera[0].record",
        "unknown variant",
        Some(4),
    ),
    ("[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\nsegment_s = 0\n", "camera[0].segment_s", "2..=3600", Some(4)),
    ("[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\n[camera.v4l2]\n", "camera[0].v4l2", "v4l2://", Some(4)),
    (
        "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\n[[camera]]\nid = \"a\"\nsource = \"rtsp://h/t\"\n",
        "camera[1].id",
        "used twice",
        Some(5),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/s\"\n[[camera]]\nid = \"b\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"z\"\npolygon = [[0.1, 0.1], [0.5, 0.5]]\n",
        "camera[1].zone[0].polygon",
        "3..=16 points",
        Some(9),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"z\"\npolygon = [[0.1, 0.1], [1.5, 0.5], [0.2, 0.9]]\n",
        "camera[0].zone[0].polygon[1]",
        "inside 0..1",
        Some(6),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"z\"\npolygon = [[0.1, 0.1, 0.3], [0.5, 0.5], [0.2, 0.9]]\n",
        "camera[0].zone[0].polygon[0]",
        "invalid length",
        Some(6),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"gate\"\nline = [[0.2, 0.3], [0.2, 0.3]]\n",
        "camera[0].zone[0].line",
        "same",
        Some(6),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"gate\"\nline = [[0.2, 0.3], [0.8, 0.3]]\npolygon = [[0,0],[1,0],[1,1]]\n",
        "camera[0].zone[0]",
        "one or the other",
        Some(4),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"z\"\nline = [[0.2, 0.3], [0.8, 0.3]]\ndirection = \"up\"\n",
        "camera[0].zone[0].direction",
        "unknown variant",
        Some(7),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.zone]]\nid = \"z\"\npolygon = [[0,0],[1,0],[1,1]]\nlabels = [\"Person!\"]\n",
        "camera[0].zone[0].labels[0]",
        "[a-z0-9_ -]",
        Some(7),
    ),
    (
        "[[backup.destination]]\nid = \"usb\"\nkind = \"usb\"\npath = \"/media/usb0\"\n[[backup.policy]]\nid = \"nightly\"\ndestination = \"nas\"\n",
        "backup.policy[0].destination",
        "no [[backup.destination]]",
        Some(7),
    ),
    (
        "[[backup.destination]]\nid = \"usb\"\nkind = \"floppy\"\npath = \"/media/usb0\"\n",
        "backup.destination[0].kind",
        "unknown variant",
        Some(3),
    ),
    (
        "[[backup.destination]]\nid = \"s3\"\nkind = \"s3\"\npath = \"bucket/heldar\"\n",
        "backup.destination[0].access_key_id",
        "required",
        None,
    ),
    (
        "[commands]\nauth = \"hmac\"\n[[commands.key]]\nid = \"ops\"\nsecret_file = \"/k\"\nallow = [\"reboot\"]\n",
        "commands.key[0].allow[0]",
        "no command",
        Some(6),
    ),
    ("[node]\ntimezone = \"Mars/Olympus\"\n", "node.timezone", "no time zone of the tz database", Some(2)),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.schedule]]\ndays = [\"mon\", \"mun\"]\nfrom = \"08:00\"\nto = \"18:00\"\n",
        "camera[0].schedule[0].days",
        "\"mun\" is no day",
        Some(5),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.schedule]]\ndays = \"weekdays\"\nfrom = \"8:00\"\nto = \"18:00\"\n",
        "camera[0].schedule[0].from",
        "use HH:MM",
        Some(6),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.schedule]]\nfrom = \"24:00\"\nto = \"06:00\"\n",
        "camera[0].schedule[0].from",
        "24:00 ends a day",
        Some(5),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.schedule]]\nfrom = \"18:00\"\nto = \"06:00\"\nrecord = \"sometimes\"\n",
        "camera[0].schedule[0].record",
        "unknown variant",
        Some(7),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[[camera.snapshot_schedule]]\nevery_s = 5\n",
        "camera[0].snapshot_schedule[0].every_s",
        "at least 10",
        Some(5),
    ),
    ("[http]\nlisten = \"localhost\"\n", "http.listen", "no address:port", Some(2)),
    ("[http]\ncert_file = \"cert.pem\"\n", "http.cert_file", "needs http.key_file", Some(2)),
    (
        "[http]\n[[http.user]]\nname = \"ops\"\npassword_hash = \"hunter22\"\n",
        "http.user[0].password_hash",
        "heldar-edge passwd",
        Some(4),
    ),
    (
        "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n[http]\n[[http.user]]\nname = \"ops\"\n\
         password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\ncameras = [\"b\"]\n",
        "http.user[0].cameras[0]",
        "no camera of this file",
        Some(8),
    ),
    (
        "[http]\n[[http.user]]\nname = \"ops\"\npassword_hash = \"x\"\nallow = [\"admin\"]\n",
        "http.user[0].allow[0]",
        "unknown variant",
        Some(5),
    ),
];

#[test]
fn bad_configs_name_the_key_and_line() {
    let mut failures = Vec::new();
    for (text, key, words, line) in BAD {
        if let Err(e) = std::panic::catch_unwind(|| check_bad(text, key, words, *line)) {
            let message =
                e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(message.unwrap_or_else(|| "panicked".into()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

fn check_bad(text: &str, key: &str, words: &str, line: Option<usize>) {
    {
        let err = match load(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let found = err.problems.iter().find(|p| p.key.as_deref().unwrap_or("") == key);
        let Some(problem) = found else { panic!("no problem at {key:?} for:\n{text}\ngot: {err}") };
        assert!(problem.message.contains(words), "{key}: {:?} lacks {words:?}", problem.message);
        if let Some(line) = line {
            assert_eq!(problem.line_col.map(|(l, _)| l), Some(line), "{key}: line of {err}");
        }
        let shown = err.to_string();
        assert!(shown.starts_with("test.toml"), "{shown}");
        if !key.is_empty() {
            assert!(shown.contains(key), "{shown}");
        }
    }
}

#[test]
fn too_many_cameras_names_the_board_limit() {
    let cameras: String = (0..9).map(|i| format!("[[camera]]\nid = \"c{i}\"\nsource = \"lavfi:testsrc\"\n")).collect();
    let err = load(&cameras).expect_err("9 cameras on generic (max 8)");
    assert!(err.to_string().contains("max_cameras is 8"), "{err}");
    let _ = CAMERA;
}

#[test]
fn a_board_over_its_ceiling_is_refused() {
    let dir = std::env::temp_dir().join(format!("heldar-board-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let generic = board::builtin_board("generic").expect("generic");
    let greedy = generic.replace("max_cameras = 8", "max_cameras = 9999");
    std::fs::write(dir.join("greedy.toml"), greedy).expect("write");
    let err =
        config::load_str("[node]\nboard = \"greedy.toml\"\n", &dir.join("config.toml"), &dir, || Some("h".into()))
            .expect_err("over the ceiling");
    assert!(err.file.ends_with("greedy.toml"), "{err}");
    assert_eq!(err.problems[0].key.as_deref(), Some("limits.max_cameras"));
    assert!(err.problems[0].line_col.is_some());
    assert!(err.to_string().contains("compile-time ceiling"), "{err}");
}

#[test]
fn unreadable_secret_files_are_found_at_load() {
    let dir = std::env::temp_dir().join(format!("heldar-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("mqtt.pass"), "pw\n").expect("write");
    let text = "[mqtt]\nusername = \"u\"\npassword_file = \"mqtt.pass\"\n\n[[camera]]\nid = \"a\"\nsource = \"rtsp://u@h/s\"\npassword_file = \"missing.pass\"\n";
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write");
    let err = config::load(&path).expect_err("missing camera password file");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key.as_deref(), Some("camera[0].password_file"));
    assert_eq!(err.problems[0].line_col.map(|(l, _)| l), Some(8));
    assert!(err.to_string().contains("missing.pass"), "{err}");
}

#[test]
fn a_command_secret_readable_by_others_is_refused_at_load() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("heldar-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("ops.key");
    std::fs::write(&secret, "s3cret\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = "[commands]\n[[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\nallow = [\"status\"]\n";
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write");
    let err = config::load(&path).expect_err("secret readable by others");
    assert_eq!(err.problems[0].key.as_deref(), Some("commands.key[0].secret_file"), "{err}");
    assert!(err.to_string().contains("readable by group or others (mode 644): chmod 600"), "{err}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(config::load(&path).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` reads every file a config names exactly as `run` does: a directory, a FIFO (which
/// must not hang either), a device, a non-UTF-8 or an oversized secret and a dangling
/// symlink are refused by both, with the same message naming the key and its line.
#[test]
fn check_and_run_refuse_the_same_secret_files_with_the_same_message() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("heldar-secret-table-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a-directory")).expect("dir");
    let fifo = std::ffi::CString::new(dir.join("a-fifo").to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::write(dir.join("not-utf8"), [0xff, 0xfe, 0xfd]).expect("write");
    std::fs::write(dir.join("one-megabyte"), vec![b'k'; 1 << 20]).expect("write");
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling")).expect("symlink");
    for name in ["not-utf8", "one-megabyte"] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let cases = [
        ("a-directory", "not a regular file"),
        ("a-fifo", "not a regular file"),
        ("/dev/zero", "not a regular file"),
        ("not-utf8", "not UTF-8"),
        ("one-megabyte", "more than the 65536 allowed"),
        ("dangling", "cannot read"),
    ];
    for (file, words) in cases {
        let config = dir.join("config.toml");
        let text = format!(
            "[node]\nid = \"n\"\ndata_dir = \"data\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"u\"\npassword_file = {file:?}\n"
        );
        std::fs::write(&config, text).expect("config");
        let run = |command: &str| {
            let out = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
                .args([command, "-c"])
                .arg(&config)
                .env("NO_COLOR", "1")
                .output()
                .expect("heldar-edge");
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let (check_code, check_said) = run("check");
        assert_eq!(check_code, Some(1), "check accepted {file}: {check_said}");
        let problem = check_said.lines().next().unwrap_or_default().to_string();
        assert!(
            problem.contains(":8:") && problem.contains("mqtt.password_file") && problem.contains(words),
            "{file}: {problem}"
        );
        let (run_code, run_said) = run("run");
        assert_eq!(run_code, Some(1), "run accepted {file}: {run_said}");
        let tail = problem.split_once(": mqtt.password_file").map(|(_, t)| t).unwrap_or_default();
        assert!(
            run_said.contains(tail),
            "run says otherwise than check for {file}:\ncheck: {problem}\nrun: {run_said}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` on an rk3588 board names the drop-in its hardware encoder needs (the hardened
/// unit hides the encoder's device nodes), and the packages ship that file.
#[test]
fn check_names_the_rk3588_drop_in() {
    let dir = std::env::temp_dir().join(format!("heldar-rk3588-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let summary = |board: &str| {
        let config = dir.join(format!("{board}.toml"));
        std::fs::write(&config, format!("[node]\nid = \"n\"\nboard = \"{board}\"\ndata_dir = \"data\"\n"))
            .expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
            .args(["check", "-c"])
            .arg(&config)
            .output()
            .expect("check");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = "/usr/share/doc/heldar-edge/examples/rk3588-devices.conf";
    assert!(summary("rk3588").contains(path), "{}", summary("rk3588"));
    assert!(!summary("rpi4").contains("drop-in"));
    // scripts/package installs packaging/systemd/*.conf as the examples (deb.sh checks it).
    assert!(Path::new(ROOT).join("packaging/systemd/rk3588-devices.conf").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
