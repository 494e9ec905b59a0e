//! The viewing surface against a real service recording real footage, spoken to
//! with curl and ffmpeg: who gets in (and who is refused, with which status),
//! recorded playback as HLS over the segment files (byte ranges on box
//! boundaries, the playlist playing through ffmpeg), the generated admin, TLS,
//! and retention leaving a segment alone while a viewer reads it.

mod support;

use heldar_edge::viewing::auth::SessionKey;
use heldar_edge::wallclock::UnixMs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Broker, Node, TempDir};

const SECOND: Duration = Duration::from_secs(1);
const CAMERAS: &str = "\n[[camera]]\nid = \"front\"\nsource = \"lavfi:testsrc2=size=320x240:rate=15\"\nsegment_s = 2\nsample_fps = 0\n\
    \n[[camera]]\nid = \"back\"\nsource = \"lavfi:testsrc=size=320x240:rate=15\"\nsegment_s = 2\nsample_fps = 0\n";

/// What curl got: status, headers (lowercase names) and body.
struct Got {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One request with curl (`-k`: the TLS test's certificate is self-signed).
fn curl(url: &str, extra: &[&str]) -> Got {
    let out = Command::new(support::system_binary("curl", "curl"))
        .args(["-sk", "-D", "-", "--max-time", "20"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = out.stdout;
    let Some(split) = text.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Got { status: 0, headers: String::new(), body: Vec::new() };
    };
    let headers = String::from_utf8_lossy(&text[..split]).to_string();
    let status = headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    Got { status, headers, body: text[split + 4..].to_vec() }
}

fn login(base: &str, name: &str, password: &str) -> Got {
    curl(
        &format!("{base}/login"),
        &["--data-urlencode", &format!("name={name}"), "--data-urlencode", &format!("password={password}")],
    )
}

/// The `name=value` of a login's session cookie.
fn session(got: &Got) -> String {
    let cookie = got.header("set-cookie").expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_string()
}

/// Top-level MP4 boxes of `bytes`: (type, size); fails unless they tile it exactly.
fn boxes(bytes: &[u8]) -> Vec<(String, usize)> {
    let (mut at, mut found) = (0, Vec::new());
    while at < bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        assert!(size >= 8 && at + size <= bytes.len(), "a box of {size} bytes at {at} of {}", bytes.len());
        found.push((String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string(), size));
        at += size;
    }
    found
}

fn http_config(port: u16, users: &str) -> String {
    // Unsigned `share` so the test can call it without a key.
    let commands = "\n[commands]\nauth = \"none\"\nallow = [\"share\"]\n";
    format!("{CAMERAS}{commands}\n[http]\nlisten = \"127.0.0.1:{port}\"\n{users}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_footage_plays_over_hls_for_a_logged_in_viewer_and_nobody_else() {
    let dir = TempDir::new("viewing");
    let broker = Broker::start(&dir.join("broker"));
    let port = support::free_port();
    let guard_hash = support::password_hash("guard-password");
    let users = format!(
        "\n[[http.user]]\nname = \"ops\"\npassword_hash = \"{}\"\nallow = [\"view\", \"export\", \"lock\"]\n\n[[http.user]]\nname = \"guard\"\npassword_hash = \"{guard_hash}\"\ncameras = [\"back\"]\n\
         \n[[http.user]]\nname = \"clerk\"\npassword_hash = \"{guard_hash}\"\nallow = [\"export\"]\n",
        support::password_hash("ops-password"),
    );
    // An RTSP camera, recorded as it streams (no re-encoding); one that never connects: its
    // camera_offline events are in the history; one whose source ends every 6 s: gaps.
    let rtsp = support::RtspCamera::start();
    let more = format!(
        "\n[[camera]]\nid = \"door\"\nsource = \"{}\"\nsegment_s = 2\nsample_fps = 0\n\
         \n[[camera]]\nid = \"gone\"\nsource = \"rtsp://127.0.0.1:1/none\"\nsample_fps = 0\n\
         \n[[camera]]\nid = \"blink\"\nsource = \"lavfi:testsrc=size=320x240:rate=15:duration=6\"\nsegment_s = 2\nsample_fps = 0\n",
        rtsp.url()
    );
    let config = http_config(port, &users).replace("\n[http]", &format!("{more}\n[http]"));
    let mut node = Node::configure(&dir.0, "view", &broker.url(), &config);
    node.start(&["--emit-test-events", "2"]);
    let base = format!("http://127.0.0.1:{port}");
    support::wait_for(30 * SECOND, "three segments of each camera", || {
        node.segments("front").len() >= 3 && node.segments("door").len() >= 3
    });

    // Nobody in without a session.
    assert_eq!(curl(&format!("{base}/"), &[]).status, 303);
    for path in [
        "/api/v1/cameras",
        "/cameras/front/recorded.m3u8",
        "/cameras/front/segments/1/media.mp4",
        "/cameras/front/live.m3u8",
    ] {
        let got = curl(&format!("{base}{path}"), &[]);
        assert_eq!(got.status, 401, "{path} without a session");
        assert!(!got.body.starts_with(b"#EXTM3U"));
    }
    assert_eq!(login(&base, "ops", "wrong").status, 401);
    assert_eq!(login(&base, "nobody", "ops-password").status, 401);
    assert!(!node.log().contains("ops-password") && !node.log().contains("\"wrong\""), "passwords are not logged");

    let ok = login(&base, "ops", "ops-password");
    assert_eq!(ok.status, 303);
    let cookie = ok.header("set-cookie").expect("cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let ops = session(&ok);
    let cameras: serde_json::Value =
        serde_json::from_slice(&curl(&format!("{base}/api/v1/cameras"), &["-b", &ops]).body).expect("json");
    let ids: Vec<&str> = cameras["cameras"].as_array().expect("list").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["front", "back", "door", "gone", "blink"]);

    check_playlist_and_ranges(&node, &base, &ops, &dir.0);
    check_live(&base, &ops, &dir.0, "front");
    check_live(&base, &ops, &dir.0, "door");
    check_clip_snapshot_and_lock(&node, &base, &ops, &dir.0);
    check_share_links(&node, &base);
    check_gap(&node, &base, &ops, &dir.0);
    check_refusals(&node, &base, &ops);
    check_unreadable_clip(&node, &base, &ops);
    let status = node.terminate(20 * SECOND);
    assert!(status.success());
}

/// The recorded playlist lists the indexed segments with their wall times; its files
/// split on box boundaries; ffmpeg plays it through.
fn check_playlist_and_ranges(node: &Node, base: &str, ops: &str, dir: &Path) {
    let rows = node.segments("front");
    let (from, to) = (rows[0].start_ms, rows[2].end_ms);
    let url = format!("{base}/cameras/front/recorded.m3u8?from={from}&to={to}");
    let got = curl(&url, &["-b", ops]);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type").as_deref(), Some("application/vnd.apple.mpegurl"));
    let text = String::from_utf8(got.body).expect("utf-8");
    assert_eq!(text.matches("#EXTINF").count(), 3, "{text}");
    assert!(text.contains(&format!("#EXT-X-PROGRAM-DATE-TIME:{}", UnixMs(rows[0].start_ms).to_rfc3339())), "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"));

    let media_uri = text.lines().find(|l| l.ends_with("media.mp4")).expect("a media URI");
    let segment = format!("{base}/cameras/front/{}", media_uri.trim_end_matches("/media.mp4"));
    let init = curl(&format!("{segment}/init.mp4"), &["-b", ops]);
    assert_eq!(init.status, 200);
    let init_boxes: Vec<String> = boxes(&init.body).into_iter().map(|(t, _)| t).collect();
    assert_eq!(init_boxes, ["ftyp", "moov"]);
    let media = curl(&format!("{segment}/media.mp4"), &["-b", ops]);
    assert_eq!(media.status, 200);
    let media_boxes = boxes(&media.body);
    assert_eq!(media_boxes[0].0, "moof");
    assert_eq!(
        init.body.len() + media.body.len(),
        std::fs::metadata(node.segment_file(&rows[0])).expect("file").len() as usize
    );
    // A range is the bytes it names, with Content-Range; one past the end is refused.
    let part = curl(&format!("{segment}/media.mp4"), &["-b", ops, "-H", "Range: bytes=8-15"]);
    assert_eq!((part.status, part.body.as_slice()), (206, &media.body[8..16]));
    assert_eq!(part.header("content-range"), Some(format!("bytes 8-15/{}", media.body.len())));
    let past =
        curl(&format!("{segment}/media.mp4"), &["-b", ops, "-H", &format!("Range: bytes={}-", media.body.len())]);
    assert_eq!(past.status, 416);

    let out = dir.join("played.mp4");
    let played = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-y", "-headers", &format!("Cookie: {ops}\r\n"), "-i", &url, "-c", "copy"])
        .arg(&out)
        .output()
        .expect("ffmpeg");
    assert!(played.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&played.stderr));
    let duration = support::ffprobe_duration(&out).expect("the copy plays");
    let recorded = (to - from) as f64 / 1000.0;
    assert!((duration - recorded).abs() < 1.0, "played {duration} s of {recorded} s");
}

/// A clip of a window plays for the window (within a key-frame interval), the snapshot is
/// a JPEG, a lock lands in the index.
fn check_clip_snapshot_and_lock(node: &Node, base: &str, ops: &str, dir: &Path) {
    let snapshot = curl(&format!("{base}/cameras/front/snapshot.jpg"), &["-b", ops]);
    assert_eq!(snapshot.status, 200);
    assert!(snapshot.body.starts_with(&[0xFF, 0xD8]), "a JPEG");
    let rows = node.segments("front");
    let (from, to) = (rows[0].start_ms + 500, rows[2].end_ms - 500);
    let clip = curl(&format!("{base}/cameras/front/clip.mp4?from={from}&to={to}"), &["-b", ops]);
    assert_eq!(clip.status, 200);
    assert!(clip.header("content-disposition").is_some_and(|d| d.starts_with("attachment")));
    let file = dir.join("clip.mp4");
    std::fs::write(&file, &clip.body).expect("clip");
    let duration = support::ffprobe_duration(&file).expect("the clip plays");
    let window = (to - from) as f64 / 1000.0;
    assert!(
        (duration - window).abs() <= 2.1,
        "a clip of {duration} s for a window of {window} s (key frames every 2 s)"
    );
    assert!(support::plays(&file), "every frame of the clip decodes");
    let me: serde_json::Value =
        serde_json::from_slice(&curl(&format!("{base}/api/v1/me"), &["-b", ops]).body).expect("json");
    assert_eq!(me["allow"], serde_json::json!(["view", "export", "lock"]));
    let form = format!("from={from}&to={to}&reason=tampering");
    let locked = curl(&format!("{base}/api/v1/cameras/front/locks"), &["-b", ops, "-d", &form]);
    assert_eq!(locked.status, 201, "{}", String::from_utf8_lossy(&locked.body));
    assert_eq!(node.count("SELECT count(*) FROM evidence_locks WHERE camera = 'front' AND reason = 'tampering'"), 1);
}

/// A clip of footage that cannot be read is an error that says why, not an empty 200.
fn check_unreadable_clip(node: &Node, base: &str, ops: &str) {
    let row = node.segments("door").into_iter().next().expect("a segment of door");
    let file = node.segment_file(&row);
    let size = std::fs::metadata(&file).expect("segment").len() as usize;
    std::fs::write(&file, vec![0u8; size]).expect("overwrite the segment");
    let url = format!("{base}/cameras/door/clip.mp4?from={}&to={}", row.start_ms, row.end_ms);
    let clip = curl(&url, &["-b", ops]);
    let said = String::from_utf8_lossy(&clip.body);
    assert_eq!(clip.status, 500, "{said}");
    assert!(said.starts_with("the clip could not be made: "), "{said}");
    assert!(!said.contains(&node.segment_file(&row).parent().expect("dir").display().to_string()), "{said}");
}

/// A recorded playlist across a recording gap plays through ffmpeg, and the timeline shows
/// the gap with its reason and the camera's events.
fn check_gap(node: &Node, base: &str, ops: &str, dir: &Path) {
    let after_gap = || {
        let gap_end = node.count("SELECT coalesce(max(end_ms), 0) FROM recording_gaps WHERE camera = 'blink'");
        gap_end > 0 && node.segments("blink").iter().any(|s| s.start_ms >= gap_end)
    };
    support::wait_for(40 * SECOND, "blink's footage on both sides of a gap", after_gap);
    let rows = node.segments("blink");
    let (from, to) = (rows[0].start_ms, rows[rows.len() - 1].end_ms);
    assert!(rows.windows(2).any(|p| p[1].start_ms - p[0].end_ms > 1_000), "a hole between segments");
    let url = format!("{base}/cameras/blink/recorded.m3u8?from={from}&to={to}");
    let out = dir.join("across-gap.mp4");
    let played = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-y", "-headers", &format!("Cookie: {ops}\r\n"), "-i", &url, "-c", "copy"])
        .arg(&out)
        .output()
        .expect("ffmpeg");
    assert!(played.status.success(), "ffmpeg across a gap: {}", String::from_utf8_lossy(&played.stderr));
    let recorded: i64 = rows.iter().map(|r| r.end_ms - r.start_ms).sum();
    let duration = support::ffprobe_duration(&out).expect("it plays");
    assert!((duration - recorded as f64 / 1000.0).abs() < 1.5, "played {duration} s of {recorded} ms recorded");
    let timeline = curl(&format!("{base}/api/v1/cameras/blink/timeline?from={from}&to={to}"), &["-b", ops]);
    let timeline: serde_json::Value = serde_json::from_slice(&timeline.body).expect("json");
    let gaps = timeline["gaps"].as_array().expect("gaps");
    assert!(gaps.iter().any(|g| g["reason"].as_str().is_some_and(|r| !r.is_empty())), "{timeline}");
    assert!(timeline["runs"].as_array().expect("runs").len() >= 2, "runs on both sides: {timeline}");
    let events = timeline["events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["type"] == "camera_offline" && e["camera"] == "blink"), "{timeline}");
}

/// A `share` link plays its window without an account; altered, expired, or used for
/// another camera or for live view, it opens nothing.
fn check_share_links(node: &Node, base: &str) {
    let call = |words: &[String]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
            .arg("call")
            .args(words)
            .arg("-c")
            .arg(&node.config)
            .output()
            .expect("heldar-edge call");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        serde_json::from_slice(&out.stdout).expect("reply JSON")
    };
    let rows = node.segments("front");
    let (from, to) = (UnixMs(rows[1].start_ms), UnixMs(rows[1].end_ms));
    let args = |ttl: u64| {
        [
            "share",
            "camera=front",
            &format!("from={}", from.to_rfc3339()),
            &format!("to={}", to.to_rfc3339()),
            &format!("ttl_s={ttl}"),
        ]
        .map(str::to_string)
    };
    let reply = call(&args(600));
    let url = reply["result"]["url"].as_str().expect("a url").to_string();
    assert!(url.starts_with(&format!("{base}/cameras/front/recorded.m3u8?share=")), "{url}");
    let playlist = curl(&url, &[]);
    assert_eq!(playlist.status, 200, "no account needed");
    let text = String::from_utf8(playlist.body).expect("utf-8");
    let media = text.lines().find(|l| l.contains("media.mp4?share=")).expect("a media URI with the token");
    assert_eq!(curl(&format!("{base}/cameras/front/{media}"), &[]).status, 200);
    let outside = media.replacen(
        &format!("segments/{}/", media.split('/').nth(1).expect("id")),
        &format!("segments/{}/", 1_000_000),
        1,
    );
    assert_eq!(curl(&format!("{base}/cameras/front/{outside}"), &[]).status, 404, "a segment outside the window");
    let token = url.split("share=").nth(1).expect("token");
    for (what, url) in [
        ("altered", url.replacen(&to.0.to_string(), &(to.0 + 3_600_000).to_string(), 1)),
        ("another camera", format!("{base}/cameras/back/recorded.m3u8?share={token}")),
        ("live view", format!("{base}/cameras/front/live.m3u8?share={token}")),
        ("the API", format!("{base}/api/v1/cameras?share={token}")),
    ] {
        let got = curl(&url, &[]);
        assert!(got.status == 403 || got.status == 401, "{what}: {}", got.status);
        assert!(!got.body.starts_with(b"#EXTM3U"), "{what}");
    }
    let short = call(&args(1))["result"]["url"].as_str().expect("a url").to_string();
    support::wait_for(5 * SECOND, "the short link to expire", || curl(&short, &[]).status == 403);
}

/// The live playlist names the complete fragments of the file being written as byte
/// ranges, moves on as recording goes on, and plays through ffmpeg.
fn check_live(base: &str, ops: &str, dir: &Path, camera: &str) {
    let url = format!("{base}/cameras/{camera}/live.m3u8");
    let sequence = |text: &str| -> u64 {
        let line = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).expect("a media sequence");
        line.parse::<u64>().expect("a number") + text.matches("#EXTINF").count() as u64
    };
    let first = String::from_utf8(curl(&url, &["-b", ops]).body).expect("utf-8");
    assert!(first.contains("#EXT-X-MAP:URI=\"live/") && first.contains("#EXT-X-BYTERANGE:"), "{first}");
    assert!(!first.contains("#EXT-X-ENDLIST"), "live: no end");
    // The newest fragment listed ends about when it was written: at most a fragment (1 s)
    // and the request behind the camera.
    let newest_start =
        first.lines().rev().find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).expect("wall times");
    let newest_len: f64 = first
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("#EXTINF:"))
        .expect("a duration")
        .trim_end_matches(',')
        .parse()
        .expect("seconds");
    let newest_end = UnixMs::parse_rfc3339(newest_start).expect("RFC 3339").0 + (newest_len * 1000.0) as i64;
    let behind = UnixMs::now().0 - newest_end;
    assert!((0..3_000).contains(&behind), "the newest live fragment ended {behind} ms ago");
    check_live_ranges(base, ops, camera, &first);
    support::wait_for(10 * SECOND, "the live playlist to move on", || {
        sequence(&String::from_utf8(curl(&url, &["-b", ops]).body).expect("utf-8")) > sequence(&first)
    });
    let out = dir.join(format!("live-{camera}.mp4"));
    let played = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-y", "-headers", &format!("Cookie: {ops}\r\n"), "-i", &url, "-t", "4", "-c", "copy"])
        .arg(&out)
        .output()
        .expect("ffmpeg");
    assert!(played.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&played.stderr));
    let duration = support::ffprobe_duration(&out).expect("the live copy plays");
    assert!(duration > 3.0, "played {duration} s of live view");
}

/// Every byte range a live playlist names lands on box boundaries: its maps are `ftyp` and
/// `moov`, its fragments a `moof` and its `mdat`.
fn check_live_ranges(base: &str, ops: &str, camera: &str, playlist: &str) {
    let lines: Vec<&str> = playlist.lines().collect();
    let mut checked = 0;
    for (at, line) in lines.iter().enumerate() {
        let (uri, range, expected) = if let Some(map) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let (uri, rest) = map.split_once('"').expect("a quoted URI");
            let range = rest.trim_start_matches(",BYTERANGE=\"").trim_end_matches('"');
            (uri, range, ["ftyp", "moov"])
        } else if let Some(range) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            (lines[at + 1], range, ["moof", "mdat"])
        } else {
            continue;
        };
        let (len, offset) = range.split_once('@').expect("len@offset");
        let (len, offset): (u64, u64) = (len.parse().expect("len"), offset.parse().expect("offset"));
        let got = curl(
            &format!("{base}/cameras/{camera}/{uri}"),
            &["-b", ops, "-H", &format!("Range: bytes={offset}-{}", offset + len - 1)],
        );
        assert_eq!(got.status, 206, "{line}");
        let kinds: Vec<String> = boxes(&got.body).into_iter().map(|(t, _)| t).collect();
        assert_eq!(kinds, expected, "{line}");
        checked += 1;
    }
    assert!(checked >= 3, "a map and fragments in {playlist}");
}

/// A scoped user, forged and expired cookies, and a client guessing passwords are refused.
fn check_refusals(node: &Node, base: &str, ops: &str) {
    let guard = session(&login(base, "guard", "guard-password"));
    let cameras: serde_json::Value =
        serde_json::from_slice(&curl(&format!("{base}/api/v1/cameras"), &["-b", &guard]).body).expect("json");
    assert_eq!(cameras["cameras"].as_array().map(Vec::len), Some(1), "{cameras}");
    for path in ["/api/v1/cameras/front/timeline", "/cameras/front/recorded.m3u8", "/cameras/front/segments/1/init.mp4"]
    {
        assert_eq!(curl(&format!("{base}{path}"), &["-b", &guard]).status, 403, "{path} for a user scoped to back");
    }
    let cameras_of = |cookie: &str, query: &str| -> Vec<String> {
        let got = curl(&format!("{base}/api/v1/events{query}"), &["-b", cookie]);
        assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
        let events: serde_json::Value = serde_json::from_slice(&got.body).expect("json");
        let events = events["events"].as_array().expect("events").clone();
        events.iter().map(|e| e["camera"].as_str().unwrap_or("_node").to_string()).collect()
    };
    support::wait_for(20 * SECOND, "node and camera events in the history", || {
        let all = cameras_of(ops, "");
        all.contains(&"_node".to_string()) && all.contains(&"gone".to_string())
    });
    assert_eq!(cameras_of(ops, "?camera=gone&type=camera_offline").first().map(String::as_str), Some("gone"));
    assert!(cameras_of(&guard, "").iter().all(|c| c == "back"), "a scoped user reads only their cameras' events");
    assert_eq!(curl(&format!("{base}/api/v1/events?camera=front"), &["-b", &guard]).status, 403);
    assert_eq!(curl(&format!("{base}/api/v1/events?limit=0"), &["-b", ops]).status, 400);
    assert_eq!(curl(&format!("{base}/cameras/back/clip.mp4"), &["-b", &guard]).status, 403, "no export right");
    let lock = curl(&format!("{base}/api/v1/cameras/back/locks"), &["-b", &guard, "-d", "from=0&to=1000"]);
    assert_eq!(lock.status, 403, "no lock right");
    let clerk = session(&login(base, "clerk", "guard-password"));
    assert_eq!(curl(&format!("{base}/api/v1/cameras"), &["-b", &clerk]).status, 403, "a user without `view`");
    let timeline = curl(&format!("{base}/api/v1/cameras/back/timeline"), &["-b", &guard]);
    let timeline: serde_json::Value = serde_json::from_slice(&timeline.body).expect("json");
    assert!(!timeline["runs"].as_array().expect("runs").is_empty(), "{timeline}");

    let secret = std::fs::read(node.dir.join("data/http.secret")).expect("the session secret");
    let expired = SessionKey::new(secret.clone()).issue("ops", UnixMs(UnixMs::now().0 - 1000));
    let forged = SessionKey::new(vec![1; 32]).issue("ops", UnixMs(UnixMs::now().0 + 60_000));
    let (_, value) = ops.split_once('=').expect("name=value");
    let altered = value.replacen("ops:", "guard:", 1);
    for (what, value) in [("expired", expired), ("forged", forged), ("altered", altered)] {
        let got = curl(&format!("{base}/api/v1/cameras"), &["-b", &format!("heldar_session={value}")]);
        assert_eq!(got.status, 401, "{what} cookie");
    }
    let logged_out = curl(&format!("{base}/logout"), &["-X", "POST", "-b", ops]);
    assert!(logged_out.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));

    for _ in 0..5 {
        assert_eq!(login(base, "ops", "guess").status, 401);
    }
    let limited = login(base, "ops", "ops-password");
    assert_eq!(limited.status, 429, "the right password too, once the client is over the limit");
    assert!(limited.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0 && s <= 60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_makes_an_admin_once_and_tls_marks_the_cookie_secure() {
    let dir = TempDir::new("viewing-admin");
    let broker = Broker::start(&dir.join("broker"));
    let made = Command::new(support::system_binary("openssl", "openssl"))
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = support::free_port();
    let tls = "cert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
    let mut node = Node::configure(&dir.0, "admin", &broker.url(), &http_config(port, tls));
    // A private key others may read is refused, by `check` as by `run`.
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let check = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .arg("check")
        .arg("-c")
        .arg(&node.config)
        .output()
        .expect("check");
    let said = String::from_utf8_lossy(&check.stderr).to_string();
    assert!(!check.status.success() && said.contains("http.key_file") && said.contains("chmod 600"), "{said}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    node.start(&[]);
    support::wait_for(20 * SECOND, "the admin's password", || node.log().contains("password="));
    let log = node.log();
    let password =
        log.split("password=").nth(1).and_then(|s| s.split_whitespace().next()).expect("password").to_string();
    let hash = std::fs::read(node.dir.join("data/http-admin.hash")).expect("the admin's hash");
    assert!(!String::from_utf8_lossy(&hash).contains(&password), "the hash file holds no password");
    for file in ["http-admin.hash", "http.secret"] {
        let mode = std::fs::metadata(node.dir.join("data").join(file)).expect("file").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file} is the owner's only");
    }
    let base = format!("https://127.0.0.1:{port}");
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/login"), &[]).status, 0, "no plain HTTP beside TLS");
    let ok = login(&base, "admin", &password);
    assert_eq!(ok.status, 303);
    assert!(ok.header("set-cookie").is_some_and(|c| c.contains("Secure")));
    assert!(node.terminate(20 * SECOND).success());

    // The second start keeps the admin and says nothing of its password.
    node.start(&[]);
    support::wait_for(20 * SECOND, "the second start", || node.log().matches("viewing surface listening").count() >= 2);
    assert_eq!(node.log().matches("password=").count(), 1, "the password is shown once");
    assert_eq!(login(&base, "admin", &password).status, 303);
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_leaves_a_segment_alone_while_a_viewer_reads_it() {
    let dir = TempDir::new("viewing-retention");
    let broker = Broker::start(&dir.join("broker"));
    let disk = support::Tmpfs::mount(&dir.join("rec"), "64m");
    let port = support::free_port();
    let toml = format!(
        "\n[storage]\nrecordings_dir = \"{}\"\nmin_free_percent = 40\nsweep_interval_s = 2\n\n[[camera]]\nid = \"busy\"\n\
         source = \"lavfi:testsrc2=size=480x270:rate=25,noise=alls=40:allf=t\"\nsegment_s = 6\nsample_fps = 0\n\
         \n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[[http.user]]\nname = \"ops\"\npassword_hash = \"{}\"\n",
        disk.0.display(),
        support::password_hash("ops-password")
    );
    let mut node = Node::configure(&dir.0, "keep", &broker.url(), &toml);
    // One media stream at a time on this board.
    let board =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("board/generic.toml")).expect("board");
    std::fs::write(dir.join("one-viewer.toml"), board.replace("max_viewers = 8", "max_viewers = 1")).expect("board");
    let config = std::fs::read_to_string(&node.config).expect("config");
    std::fs::write(
        &node.config,
        config.replacen("data_dir = \"data\"\n", "data_dir = \"data\"\nboard = \"one-viewer.toml\"\n", 1),
    )
    .expect("config");
    node.start(&[]);
    let base = format!("http://127.0.0.1:{port}");
    support::wait_for(30 * SECOND, "a segment", || !node.segments("busy").is_empty());
    let ops = session(&login(&base, "ops", "ops-password"));
    let newest = |node: &Node| -> (i64, String, i64) {
        let conn = rusqlite::Connection::open(node.index()).expect("index");
        conn.query_row("SELECT id, path, start_ms FROM segments ORDER BY start_ms DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("a segment")
    };
    // A viewer that reads the response head and then stalls, with a small receive buffer:
    // the service cannot hand the whole segment to the kernel and is still serving it.
    let (mut viewer, path, start, head) = loop {
        let (id, path, start) = newest(&node);
        let mut viewer = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        receive_buffer(&viewer, 64 << 10);
        let request = format!(
            "GET /cameras/busy/segments/{id}/media.mp4 HTTP/1.1\r\nHost: x\r\nCookie: {ops}\r\nConnection: close\r\n\r\n"
        );
        viewer.write_all(request.as_bytes()).expect("request");
        let mut head = vec![0u8; 1024];
        let n = viewer.read(&mut head).expect("response");
        head.truncate(n);
        if head.starts_with(b"HTTP/1.1 200") {
            break (viewer, path, start, head);
        }
    };
    let file = disk.0.join(&path);
    let split = head.windows(4).position(|w| w == b"\r\n\r\n").expect("the head in the first read") + 4;
    let length: usize = String::from_utf8_lossy(&head[..split])
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("length")))
        .expect("a content-length");
    // Retention deletes oldest first: once it deleted a segment newer than the one being
    // watched, it skipped that one.
    let mut newer = std::collections::BTreeSet::new();
    support::wait_for(60 * SECOND, "retention deleting newer footage", || {
        let conn = rusqlite::Connection::open(node.index()).expect("index");
        let mut stmt = conn.prepare("SELECT id FROM segments WHERE start_ms > ?1").expect("query");
        let now: std::collections::BTreeSet<i64> =
            stmt.query_map([start], |r| r.get(0)).expect("rows").map(|r| r.expect("id")).collect();
        let deleted = newer.difference(&now).count() > 0;
        newer.extend(now);
        deleted
    });
    assert!(file.exists(), "the segment being watched is still on disk");
    // The board's one viewer slot is taken: another stream waits; playlists do not count.
    let media = |path: &str| curl(&format!("{base}/cameras/busy/{path}"), &["-b", &ops, "-H", "Range: bytes=0-99"]);
    let second = media(&format!("segments/{}/init.mp4", newest(&node).0));
    assert_eq!((second.status, second.header("retry-after").as_deref()), (503, Some("2")));
    assert_eq!(curl(&format!("{base}/cameras/busy/recorded.m3u8"), &["-b", &ops]).status, 200);
    let mut rest = Vec::new();
    viewer.read_to_end(&mut rest).expect("the rest");
    let body = head.len() - split + rest.len();
    assert_eq!(body, length, "the viewer got the whole media part");
    support::wait_for(10 * SECOND, "the viewer's slot back", || {
        media(&format!("segments/{}/init.mp4", newest(&node).0)).status == 206
    });
    support::wait_for(20 * SECOND, "retention deleting it once the viewer is done", || !file.exists());
    assert!(node.terminate(20 * SECOND).success());
}

/// Sets the socket's receive buffer (`SO_RCVBUF`).
fn receive_buffer(stream: &std::net::TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt on a socket this test owns, with a c_int option value.
    let done = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            size,
        )
    };
    assert_eq!(done, 0, "setsockopt SO_RCVBUF");
}
