//! Property tests of the hand-written parsers, through their public APIs: the JPEG
//! splitter, RFC 3339 times, mountinfo, the tar writer (read back by a small reader
//! here), the command request envelope, detections, worker statuses, the MP4 fragment
//! scanner and segment paths. Each never panics on arbitrary input or on mutations of
//! valid input, round trips where its format has one, and keeps its invariants.
//!
//! Case counts keep the whole file to a few seconds; `PROPTEST_CASES=N` runs N cases
//! of every property instead (and `PROPTEST_RNG_SEED` fixes the seed).

use heldar_edge::backup::{mounts, tar};
use heldar_edge::commands::request::{self, Auth, Refusal, Request};
use heldar_edge::recording::{fragments, layout};
use heldar_edge::sampler::jpeg::{self, JpegSplitter, Scan};
use heldar_edge::wallclock::UnixMs;
use heldar_edge::workers::detections::{self, Context};
use heldar_edge::workers::status::{STATUS_MAX_LABELS, parse_status};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::io::Cursor;
use std::path::PathBuf;

/// `cases` cases (or `PROPTEST_CASES`), failures not written to disk.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(b"NaN".to_vec()),
                Just(b"1e999".to_vec()),
                Just(b"\"\\u0000\"".to_vec()),
                Just("\u{e9}\u{1F600}".as_bytes().to_vec()),
                Just(b"[[[[[[[[[[".to_vec()),
                Just(b",\"id\":\"dup-1\"".to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 1usize..32).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Applies `edits` to `bytes` (positions taken modulo the length).
fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match e {
            Edit::Flip(at, b) if len > 0 => bytes[at % len] = *b,
            Edit::Insert(at, new) => {
                let at = at % (len + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Delete(at, n) if len > 0 => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            Edit::Duplicate(at, n) if len > 0 => {
                let at = at % len;
                let copy = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, copy);
            }
            Edit::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..6)
}

// ---------------------------------------------------------------------------------------
// JPEG splitter

/// A small JPEG the way ffmpeg's MJPEG encoder lays one out: SOI, APP0, SOF0, SOS, entropy-coded
/// data (every 0xFF in it stuffed or a restart marker), EOI.
fn jpeg_frame(width: u16, height: u16, data: &[u8]) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    j.extend([0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
    j.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
    j.extend(height.to_be_bytes());
    j.extend(width.to_be_bytes());
    j.extend([0x01, 0x01, 0x11, 0x00]);
    j.extend([0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    for (i, b) in data.iter().enumerate() {
        j.push(*b);
        if *b == 0xFF {
            j.push(if i % 3 == 0 { 0xD0 + (i % 8) as u8 } else { 0x00 });
        }
    }
    j.extend([0xFF, 0xD9]);
    j
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    // Sizes below 0xFF00, so no SOI hides in the header's numbers.
    (1u16..0x4000, 1u16..0x4000, proptest::collection::vec(any::<u8>(), 0..600))
        .prop_map(|(w, h, data)| jpeg_frame(w, h, &data))
}

/// Feeds `stream` to a splitter of `max_bytes` in reads of the given sizes (cycled), the way
/// the sampler reads ffmpeg's pipe; returns the frames and the oversize count.
fn split(stream: &[u8], max_bytes: usize, reads: &[usize]) -> (Vec<Vec<u8>>, u64) {
    let mut splitter = JpegSplitter::new(max_bytes);
    let mut frames = Vec::new();
    let mut at = 0;
    let mut turn = 0;
    while at < stream.len() {
        let want = reads[turn % reads.len()];
        turn += 1;
        let spare = splitter.spare(want);
        assert!(!spare.is_empty() && spare.len() <= want.max(1), "spare {} for {want}", spare.len());
        let n = spare.len().min(stream.len() - at);
        spare[..n].copy_from_slice(&stream[at..at + n]);
        at += n;
        splitter.filled(n, |f| frames.push(f.to_vec()));
    }
    (frames, splitter.oversize)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn jpeg_scan_never_panics_and_stays_in_bounds(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        match jpeg::scan(&buf) {
            Scan::Complete(n) => {
                prop_assert!((4..=buf.len()).contains(&n));
                prop_assert_eq!(&buf[..2], &[0xFF, 0xD8]);
                prop_assert_eq!(&buf[n - 2..n], &[0xFF, 0xD9]);
                prop_assert_eq!(jpeg::scan(&buf[..n]), Scan::Complete(n), "decided by its own bytes");
            }
            Scan::Garbage(n) => prop_assert!((1..=buf.len()).contains(&n), "skip {} of {}", n, buf.len()),
            Scan::Incomplete => {}
        }
        let _ = jpeg::dimensions(&buf);
    }

    #[test]
    fn jpeg_scan_finds_whole_frames_and_waits_for_cut_ones(
        frame in frame(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        cut in any::<usize>(),
    ) {
        prop_assert_eq!(jpeg::scan(&frame), Scan::Complete(frame.len()));
        let followed = [frame.as_slice(), &tail].concat();
        prop_assert_eq!(jpeg::scan(&followed), Scan::Complete(frame.len()), "what follows does not matter");
        let cut = cut % frame.len();
        prop_assert_eq!(jpeg::scan(&frame[..cut]), Scan::Incomplete, "cut at {}", cut);
        let h = u32::from(u16::from_be_bytes([frame[25], frame[26]]));
        let w = u32::from(u16::from_be_bytes([frame[27], frame[28]]));
        prop_assert_eq!(jpeg::dimensions(&frame), Some((w, h)));
    }

    #[test]
    fn jpeg_scan_of_mutated_frames_stays_in_bounds(frame in frame(), edits in edits()) {
        let buf = mutate(frame, &edits);
        match jpeg::scan(&buf) {
            Scan::Complete(n) => prop_assert!(n <= buf.len()),
            Scan::Garbage(n) => prop_assert!((1..=buf.len()).contains(&n)),
            Scan::Incomplete => {}
        }
        let _ = jpeg::dimensions(&buf);
    }

    #[test]
    fn the_splitter_hands_out_the_frames_in_order_whatever_the_reads(
        junk in proptest::collection::vec(0u8..0xFF, 0..40),
        frames in proptest::collection::vec((frame(), proptest::collection::vec(0u8..0xFF, 0..8)), 1..8),
        max_bytes in 64usize..2048,
        reads in proptest::collection::vec(1usize..3000, 1..8),
    ) {
        // Junk between frames holds no 0xFF, so it can never start a frame.
        let mut stream = junk.clone();
        for (frame, gap) in &frames {
            stream.extend(frame);
            stream.extend(gap);
        }
        let (out, oversize) = split(&stream, max_bytes, &reads);
        let total: usize = out.iter().map(Vec::len).sum();
        prop_assert!(total <= stream.len(), "{} bytes out of {}", total, stream.len());
        // Every frame out is one of the frames in, in order, and every one that fits comes out.
        let mut expected = frames.iter().map(|(f, _)| f);
        for got in &out {
            prop_assert_eq!(jpeg::scan(got), Scan::Complete(got.len()));
            prop_assert!(expected.any(|f| f == got), "a frame that was not sent, or out of order");
        }
        let fitting = frames.iter().filter(|(f, _)| f.len() <= max_bytes).count();
        let fitting_out = out.iter().filter(|f| f.len() <= max_bytes).count();
        prop_assert_eq!(fitting_out, fitting);
        prop_assert_eq!(out.len() as u64 + oversize, frames.len() as u64, "each frame out or counted oversize");
    }

}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn the_splitter_never_hands_out_more_than_it_was_given(
        stream in proptest::collection::vec(prop_oneof![Just(0xFFu8), Just(0xD8), Just(0xD9), Just(0xDA), Just(0), any::<u8>()], 0..2000),
        max_bytes in 16usize..1024,
        reads in proptest::collection::vec(1usize..700, 1..8),
    ) {
        let (out, _) = split(&stream, max_bytes, &reads);
        let total: usize = out.iter().map(Vec::len).sum();
        prop_assert!(total <= stream.len());
        for f in &out {
            prop_assert!(f.len() <= 2 * max_bytes, "a frame of {} from a splitter of {}", f.len(), max_bytes);
            prop_assert!(stream.windows(f.len()).any(|w| w == f.as_slice()), "a frame not in the stream");
        }
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3339

/// Milliseconds within years 0000..=9999, the range four-digit years can write.
fn four_digit_year_ms() -> impl Strategy<Value = i64> {
    -62_167_219_200_000i64..253_402_300_800_000
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn rfc3339_never_panics(text in "\\PC{0,40}", near in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}|\\PC{0,3})") {
        for t in [&text, &near] {
            if let Some(ms) = UnixMs::parse_rfc3339(t) {
                // Whatever parses formats to a time that parses to itself.
                prop_assert_eq!(UnixMs::parse_rfc3339(&ms.to_rfc3339()), Some(ms), "{}", t);
            }
        }
    }

    #[test]
    fn rfc3339_never_panics_on_cut_multibyte_text(ms in four_digit_year_ms(), at in 0usize..30, insert in "\\PC{1,3}") {
        let mut text = UnixMs(ms).to_rfc3339();
        text.insert_str(at.min(text.len()), &insert);
        for (i, _) in text.char_indices() {
            let _ = UnixMs::parse_rfc3339(&text[..i]);
            let _ = UnixMs::parse_rfc3339(&text[i..]);
        }
    }

    #[test]
    fn rfc3339_round_trips(ms in four_digit_year_ms()) {
        let text = UnixMs(ms).to_rfc3339();
        prop_assert_eq!(text.len(), 24, "{}", text);
        prop_assert_eq!(UnixMs::parse_rfc3339(&text), Some(UnixMs(ms)));
        prop_assert_eq!(UnixMs::parse_rfc3339(&text.replace('T', "t").replace('Z', "z")), Some(UnixMs(ms)));
        prop_assert_eq!(UnixMs::parse_rfc3339(&text.replace('T', " ")), Some(UnixMs(ms)));
        // Without the fraction: the second; with more digits: the same millisecond.
        let whole = format!("{}Z", &text[..19]);
        prop_assert_eq!(UnixMs::parse_rfc3339(&whole), Some(UnixMs(ms - ms.rem_euclid(1000))));
        let longer = format!("{}987654Z", &text[..23]);
        prop_assert_eq!(UnixMs::parse_rfc3339(&longer), Some(UnixMs(ms)));
    }

    #[test]
    fn rfc3339_offsets_shift_the_instant(ms in 86_400_000i64..253_402_214_400_000, east in any::<bool>(), hours in 0i64..24, minutes in 0i64..60) {
        let offset_ms = (hours * 60 + minutes) * 60_000 * if east { 1 } else { -1 };
        // The same instant written in local time at that offset.
        let local = UnixMs(ms + offset_ms).to_rfc3339();
        let sign = if east { '+' } else { '-' };
        let text = format!("{}{sign}{hours:02}:{minutes:02}", &local[..23]);
        prop_assert_eq!(UnixMs::parse_rfc3339(&text), Some(UnixMs(ms)), "{}", text);
    }

    #[test]
    fn rfc3339_refuses_impossible_fields(
        year in 0i64..10000, month in 0i64..100, day in 0i64..100, hour in 0i64..100, minute in 0i64..100, second in 0i64..100,
    ) {
        let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z");
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 0,
        };
        let valid = (1..=days).contains(&day) && hour < 24 && minute < 60 && second <= 60;
        let parsed = UnixMs::parse_rfc3339(&text);
        prop_assert_eq!(parsed.is_some(), valid, "{}", text);
        if let Some(ms) = parsed {
            let (y, mo, d, h, mi, s, milli) = ms.civil();
            prop_assert_eq!((y, mo, d, h, mi, s.min(59), milli), (year, month, day, hour, minute, second.min(59), 0));
        }
    }
}

// ---------------------------------------------------------------------------------------
// mountinfo

/// A path component as the kernel may hold it: spaces, tabs, newlines and backslashes
/// (which mountinfo escapes as octal), and other bytes.
fn path_component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \t\n\\\\._\u{e9}\u{4e2d}-]{1,12}"
}

/// How the kernel writes a path in mountinfo (`show_path`/`mangle`: space, tab, newline and
/// backslash as `\ooo`).
fn mangle(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Debug)]
struct MountLine {
    device: (u32, u32),
    mount_point: String,
    fstype: String,
    source: String,
    optional: Vec<String>,
}

fn mount_line() -> impl Strategy<Value = MountLine> {
    (
        (0u32..4096, 0u32..1_000_000),
        proptest::collection::vec(path_component(), 0..4),
        "[a-z0-9.]{1,10}",
        "[a-zA-Z0-9/:._ \\\\-]{0,20}",
        proptest::collection::vec("(shared|master|propagate_from):[0-9]{1,3}|unbindable", 0..3),
    )
        .prop_map(|(device, parts, fstype, source, optional)| MountLine {
            device,
            mount_point: format!("/{}", parts.join("/")),
            fstype,
            source,
            optional,
        })
}

impl MountLine {
    fn text(&self, id: usize) -> String {
        let mut fields = vec![
            format!("{}", id + 20),
            "1".to_string(),
            format!("{}:{}", self.device.0, self.device.1),
            "/".to_string(),
            mangle(&self.mount_point),
            "rw,relatime".to_string(),
        ];
        fields.extend(self.optional.iter().cloned());
        format!("{} - {} {} rw", fields.join(" "), self.fstype, mangle(&self.source))
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mountinfo_never_panics(text in "(\\PC|[ \n\\\\0-7-])*") {
        let parsed = mounts::parse_mountinfo(&text);
        prop_assert!(parsed.len() <= text.lines().count());
        let _ = mounts::check_separate_mount(&parsed, std::path::Path::new("/media/usb/heldar"));
    }

    #[test]
    fn mountinfo_round_trips_what_the_kernel_writes(lines in proptest::collection::vec(mount_line(), 1..8)) {
        let text: String = lines.iter().enumerate().map(|(i, l)| l.text(i) + "\n").collect();
        let parsed = mounts::parse_mountinfo(&text);
        prop_assert_eq!(parsed.len(), lines.len(), "{}", text);
        for (got, want) in parsed.iter().zip(&lines) {
            prop_assert_eq!(&got.device, &format!("{}:{}", want.device.0, want.device.1));
            prop_assert_eq!(&got.mount_point, &PathBuf::from(&want.mount_point));
            prop_assert_eq!(&got.fstype, &want.fstype);
            prop_assert_eq!(&got.source, &want.source);
        }
        // The mount of a path under a mount point is that mount or a deeper one.
        for m in &parsed {
            let inside = m.mount_point.join("heldar");
            let found = mounts::mount_of(&parsed, &inside).expect("a mount");
            prop_assert!(inside.starts_with(&found.mount_point));
            prop_assert!(found.mount_point.components().count() >= m.mount_point.components().count());
        }
    }

    #[test]
    fn mountinfo_of_mutated_lines_never_panics(lines in proptest::collection::vec(mount_line(), 1..4), edits in edits()) {
        let text: String = lines.iter().enumerate().map(|(i, l)| l.text(i) + "\n").collect();
        let mutated = String::from_utf8_lossy(&mutate(text.into_bytes(), &edits)).into_owned();
        let _ = mounts::parse_mountinfo(&mutated);
    }
}

/// `\400`..`\777` are no byte: kept as written, never an overflow (a panic in debug builds,
/// a wrong byte in release, before). The kernel never writes such an escape.
#[test]
fn mountinfo_escapes_above_0o377_do_not_panic() {
    let parsed = mounts::parse_mountinfo("41 22 8:1 / /media/usb\\400 rw - vfat /dev/sda1 rw\n");
    assert_eq!(parsed.len(), 1);
}

// ---------------------------------------------------------------------------------------
// tar (written by the node; read back here the way ustar readers do)

struct TarEntry {
    name: String,
    size: u64,
    mtime: u64,
}

fn octal_field(field: &[u8]) -> u64 {
    let text = std::str::from_utf8(field).expect("ascii").trim_end_matches(['\0', ' ']);
    u64::from_str_radix(text, 8).expect("octal")
}

fn read_tar_header(h: &[u8]) -> TarEntry {
    assert_eq!(h.len(), 512);
    let stored = octal_field(&h[148..155]);
    let sum: u64 = h.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
    assert_eq!(stored, sum, "header checksum");
    assert_eq!(&h[257..265], b"ustar\x0000");
    assert_eq!(h[156], b'0', "a regular file");
    let text = |field: &[u8]| {
        let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
        String::from_utf8(field[..end].to_vec()).expect("utf-8 name")
    };
    let (name, prefix) = (text(&h[..100]), text(&h[345..500]));
    let name = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
    TarEntry { name, size: octal_field(&h[124..136]), mtime: octal_field(&h[136..148]) }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn tar_headers_read_back(
        parts in proptest::collection::vec("[a-zA-Z0-9._\u{e9}-]{1,40}", 1..8),
        size in 0u64..(1 << 33),
        mtime in 0u64..(1 << 33),
    ) {
        let name = parts.join("/");
        let mut out = Vec::new();
        match tar::header(&mut out, &name, size, mtime) {
            Ok(()) => {
                let entry = read_tar_header(&out);
                prop_assert_eq!(entry.name, name);
                prop_assert_eq!(entry.size, size);
                prop_assert_eq!(entry.mtime, mtime);
            }
            Err(e) => {
                // Only a name that fits no ustar split is refused.
                prop_assert!(name.len() > 100, "{} refused: {}", name, e);
                let splits = name.char_indices().filter(|(_, c)| *c == '/').any(|(i, _)| i <= 155 && name.len() - i - 1 <= 100);
                prop_assert!(!splits, "{} could be split", name);
                prop_assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn tar_padding_ends_on_a_block(size in 0u64..100_000) {
        let mut out = Vec::new();
        tar::pad(&mut out, size).expect("pad");
        prop_assert!(out.len() < 512 && out.iter().all(|b| *b == 0));
        prop_assert_eq!((size + out.len() as u64) % 512, 0);
        let mut end = Vec::new();
        tar::finish(&mut end).expect("finish");
        prop_assert!(end.len() == 1024 && end.iter().all(|b| *b == 0));
    }
}

// ---------------------------------------------------------------------------------------
// The command request envelope

/// JSON whitespace, sometimes none.
fn ws() -> impl Strategy<Value = String> {
    "[ \t\n\r]{0,3}"
}

/// A JSON string literal of arbitrary text (escaped by serde_json).
fn json_string() -> impl Strategy<Value = String> {
    "\\PC{0,12}".prop_map(|s| serde_json::Value::String(s).to_string())
}

/// A JSON value written with arbitrary whitespace between its tokens, up to `depth` deep.
fn json_text(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        json_string(),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f).to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        2 => leaf,
        1 => json_object(depth - 1),
        1 => (proptest::collection::vec((ws(), json_text(depth - 1), ws()), 0..4), ws()).prop_map(|(items, w)| {
            let items: Vec<String> = items.into_iter().map(|(a, v, b)| format!("{a}{v}{b}")).collect();
            if items.is_empty() { format!("[{w}]") } else { format!("[{}]", items.join(",")) }
        }),
    ]
    .boxed()
}

/// A JSON object with distinct keys (none of them `id`), written with arbitrary whitespace.
fn json_object(depth: u32) -> BoxedStrategy<String> {
    (proptest::collection::btree_map("[a-z_]{1,8}|\\PC{1,4}", (ws(), ws(), json_text(depth), ws()), 0..5), ws())
        .prop_map(|(fields, w)| {
            let fields: Vec<String> = fields
                .into_iter()
                .filter(|(k, _)| k != "id")
                .map(|(k, (a, b, v, c))| format!("{a}{}{b}:{v}{c}", serde_json::Value::String(k)))
                .collect();
            if fields.is_empty() { format!("{{{w}}}") } else { format!("{{{}}}", fields.join(",")) }
        })
        .boxed()
}

fn token(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9_-]{{{min},{max}}}")).expect("regex")
}

fn auth() -> impl Strategy<Value = Auth> {
    (token(1, 64), "[0-9T:.Z-]{0,30}", token(8, 64), "[0-9a-f]{64}").prop_map(|(key, ts, nonce, sig)| Auth {
        key,
        ts,
        nonce,
        sig,
    })
}

fn auth_text(auth: &Auth) -> String {
    let fields = [("key", &auth.key), ("ts", &auth.ts), ("nonce", &auth.nonce), ("sig", &auth.sig)];
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": \"{v}\"")).collect();
    format!("{{{}}}", fields.join(", "))
}

/// A valid v2 envelope: its fields in any order, with whitespace around them.
#[derive(Clone, Debug)]
struct Envelope {
    id: String,
    args: Option<String>,
    auth: Option<Auth>,
    text: String,
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        token(1, 64),
        proptest::option::of(json_object(2)),
        proptest::option::of(auth()),
        any::<u64>(),
        proptest::collection::vec(ws(), 10),
    )
        .prop_map(|(id, args, auth, order, w)| {
            let mut fields = vec![format!("\"v\"{}:{}2", w[0], w[1]), format!("\"id\":{}\"{id}\"", w[2])];
            if let Some(args) = &args {
                fields.push(format!("\"args\"{}:{}{args}", w[3], w[4]));
            }
            if let Some(auth) = &auth {
                fields.push(format!("\"auth\":{}{}", w[5], auth_text(auth)));
            }
            // A permutation of the fields from `order`.
            let mut rest = fields;
            let mut ordered = Vec::new();
            let mut n = order;
            while !rest.is_empty() {
                ordered.push(rest.remove((n % rest.len() as u64) as usize));
                n /= 7;
            }
            let text = format!("{}{{{}{}{}}}{}", w[6], w[7], ordered.join(&format!("{},", w[8])), w[9], w[6]);
            Envelope { id, args, auth, text }
        })
}

/// The id a reply to `payload` goes to, by the rule of docs/commands.md: for JSON, its
/// `id` when that is a string of `[A-Za-z0-9_-]{1,64}`; for anything else, the readable id.
fn answerable_id(payload: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => value
            .get("id")
            .and_then(serde_json::Value::as_str)
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= 64
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(str::to_string),
        Err(_) => request::readable_id(payload),
    }
}

fn replied_id(result: &Result<Request, Refusal>) -> Option<String> {
    match result {
        Ok(request) => Some(request.id.clone()),
        Err(Refusal::Reply(id, _)) => Some(id.clone()),
        Err(Refusal::Unanswerable(_)) => None,
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn requests_never_panic_and_answer_where_the_docs_say(
        name in "\\PC{0,10}",
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        text in "\\PC{0,80}",
        near in "\\{(\"(v|id|args|auth)\":(2|\"[a-z0-9-]{0,6}\"|\\{\\}|\\[\\]|null|NaN)[,}]?){0,5}",
    ) {
        for payload in [payload.as_slice(), text.as_bytes(), near.as_bytes()] {
            let result = request::parse(&name, payload);
            prop_assert_eq!(replied_id(&result), answerable_id(payload), "{:?}", String::from_utf8_lossy(payload));
            if let Some(id) = request::readable_id(payload) {
                prop_assert!(!id.is_empty() && id.len() <= 64);
            }
        }
    }

    #[test]
    fn a_valid_envelope_keeps_args_byte_exact(name in "[a-z]{1,10}", e in envelope()) {
        let request = request::parse(&name, e.text.as_bytes()).map_err(|r| TestCaseError::fail(format!("{r:?}: {}", e.text)))?;
        prop_assert_eq!(&request.name, &name);
        prop_assert_eq!(&request.id, &e.id);
        prop_assert_eq!(&request.auth, &e.auth);
        match &e.args {
            Some(args) => {
                prop_assert_eq!(&request.args, args);
                prop_assert!(request.args_sent);
                prop_assert_eq!(request.signed_args(), args.as_bytes());
                let _: serde_json::Value = request::args(&request).expect("args are JSON");
            }
            None => {
                prop_assert_eq!(request.args.as_str(), "{}");
                prop_assert!(!request.args_sent && request.signed_args().is_empty());
            }
        }
    }

    #[test]
    fn a_cut_envelope_is_answered_once_its_id_is_whole(e in envelope(), cut in any::<usize>()) {
        let bytes = e.text.as_bytes();
        let cut = cut % bytes.len();
        let result = request::parse("status", &bytes[..cut]);
        prop_assert_eq!(replied_id(&result), answerable_id(&bytes[..cut]));
        // Where the envelope's id ends: its key, whitespace, the quoted id.
        let key = e.text.find("\"id\":").expect("id key");
        let value = key + 5 + e.text[key + 5..].len() - e.text[key + 5..].trim_start().len();
        let id_end = value + e.id.len() + 2;
        // readable_id reads the envelope's own `"id"` (not one inside args): a request cut
        // anywhere after its id is answered with that id.
        if cut >= id_end {
            prop_assert_eq!(replied_id(&result), Some(e.id.clone()), "cut at {} of {}", cut, e.text);
        }
    }

    #[test]
    fn mutated_envelopes_never_panic(name in "\\PC{0,10}", e in envelope(), edits in edits()) {
        let payload = mutate(e.text.into_bytes(), &edits);
        let result = request::parse(&name, &payload);
        prop_assert_eq!(replied_id(&result), answerable_id(&payload));
        if let Ok(request) = result {
            let _: Result<serde_json::Value, _> = request::args(&request);
            prop_assert!(request.args.trim_start().starts_with('{'), "args {}", request.args);
        }
    }
}

/// A cut `unlock` request written with sorted keys (as serde_json's `json!` and HA's switch
/// payloads are: `args` before `id`) is answered on its own id, not args' `"id"`, and a
/// string `"id"` inside args never takes the reply.
#[test]
fn a_cut_request_with_an_id_in_its_args_is_still_answered() {
    let cut = br#"{"args":{"id":17},"auth":{"key":"ops","ts":"2026-11-24T14:05:00.000Z","nonce":"0123456789","sig":"00"},"id":"op-1","v":2"#;
    assert_eq!(request::readable_id(cut).as_deref(), Some("op-1"));
    let decoy = br#"{"args":{"id":"victim"},"id":"op-2","v":2"#;
    assert_eq!(request::readable_id(decoy).as_deref(), Some("op-2"));
}

// ---------------------------------------------------------------------------------------
// Detections

const CAMERA: &str = "front";
const MAX_DETECTIONS: usize = 8;
const MAX_BYTES: usize = 4096;
const REASONS: &[&str] = &[
    "bad_json",
    "not_finite",
    "too_large",
    "bad_version",
    "bad_worker",
    "unknown_camera",
    "camera_mismatch",
    "bad_seq",
    "unknown_seq",
    "ts_mismatch",
    "bad_detections",
    "too_many_detections",
    "bad_label",
    "bad_confidence",
    "bad_bbox",
    "bad_track_id",
    "bad_attributes",
];

/// Frame `seq` of `front` was offered at `seq` seconds past a fixed time, for seq 1..=1000.
fn offered(camera: &str, seq: u64) -> Option<UnixMs> {
    (camera == CAMERA && (1..=1000).contains(&seq)).then(|| UnixMs(1_795_000_000_000 + seq as i64 * 1000))
}

fn validate(topic_camera: &str, payload: &[u8]) -> Result<detections::DetectionBatch, heldar_edge::workers::Rejection> {
    let known = |c: &str| c == CAMERA;
    let ctx =
        Context { known_camera: &known, offered_ts: &offered, max_detections: MAX_DETECTIONS, max_bytes: MAX_BYTES };
    detections::validate(topic_camera, payload, &ctx)
}

fn detection() -> impl Strategy<Value = serde_json::Value> {
    (
        "[a-z0-9_ -]{1,64}",
        0.0f64..=1.0,
        (0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0),
        prop_oneof![
            Just(serde_json::Value::Null),
            token(1, 64).prop_map(serde_json::Value::from),
            any::<u32>().prop_map(serde_json::Value::from)
        ],
        any::<bool>(),
    )
        .prop_map(|(label, confidence, (x, y, w, h), track_id, attributes)| {
            // Boxes inside the picture: w and h scaled to what is left right and below.
            let bbox = [x, y, w * (1.0 - x), h * (1.0 - y)];
            let mut d =
                serde_json::json!({"label": label, "confidence": confidence, "bbox": bbox, "track_id": track_id});
            if attributes {
                d["attributes"] = serde_json::json!({"colour": "red"});
            }
            d
        })
}

fn detection_message() -> impl Strategy<Value = (u64, serde_json::Value)> {
    (1u64..=1000, token(1, 64), proptest::collection::vec(detection(), 0..=MAX_DETECTIONS)).prop_map(|(seq, worker, detections)| {
        let ts = offered(CAMERA, seq).expect("offered");
        (seq, serde_json::json!({"v": 1, "worker": worker, "camera": CAMERA, "seq": seq, "ts": ts.to_rfc3339(), "detections": detections}))
    })
}

fn check_batch(batch: &detections::DetectionBatch) -> Result<(), TestCaseError> {
    prop_assert!(batch.detections.len() <= MAX_DETECTIONS);
    prop_assert_eq!(Some(batch.ts), offered(&batch.camera, batch.seq));
    for d in &batch.detections {
        prop_assert!(!d.label.is_empty() && d.label.len() <= 64);
        prop_assert!((0.0..=1.0).contains(&d.confidence));
        let [x, y, w, h] = d.bbox;
        prop_assert!(d.bbox.iter().all(|v| v.is_finite() && *v >= 0.0));
        prop_assert!(x + w <= 1.0 + 1e-9 && y + h <= 1.0 + 1e-9);
        prop_assert!(d.track_id.as_ref().is_none_or(|t| !t.is_empty() && t.len() <= 64));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn detections_never_panic(camera in "\\PC{0,8}", payload in proptest::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,200}") {
        for payload in [payload.as_slice(), text.as_bytes()] {
            match validate(&camera, payload) {
                Ok(batch) => check_batch(&batch)?,
                Err(r) => prop_assert!(REASONS.contains(&r.reason), "{}", r.reason),
            }
        }
    }

    #[test]
    fn valid_detections_are_accepted_as_sent((seq, message) in detection_message()) {
        let payload = message.to_string();
        prop_assume!(payload.len() <= MAX_BYTES);
        // Compared with what serde_json reads back: without its float_roundtrip feature it may
        // read a float one ulp off what it wrote.
        let message: serde_json::Value = serde_json::from_str(&payload).expect("json");
        let batch = validate(CAMERA, payload.as_bytes()).map_err(|r| TestCaseError::fail(format!("{r:?}: {payload}")))?;
        check_batch(&batch)?;
        prop_assert_eq!(batch.seq, seq);
        prop_assert_eq!(batch.worker.as_str(), message["worker"].as_str().unwrap_or_default());
        let sent = message["detections"].as_array().expect("list");
        prop_assert_eq!(batch.detections.len(), sent.len());
        for (got, want) in batch.detections.iter().zip(sent) {
            prop_assert_eq!(got.label.as_str(), want["label"].as_str().unwrap_or_default());
            prop_assert_eq!(got.confidence, want["confidence"].as_f64().unwrap_or(-1.0));
            let bbox: Vec<f64> = want["bbox"].as_array().expect("bbox").iter().filter_map(serde_json::Value::as_f64).collect();
            prop_assert_eq!(got.bbox.to_vec(), bbox);
            let track = match &want["track_id"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            prop_assert_eq!(&got.track_id, &track);
        }
        // On another camera's topic, or over the size limit, it is refused.
        prop_assert_eq!(validate("back", payload.as_bytes()).map(|_| ()).unwrap_err().reason, "unknown_camera");
        let padded = format!("{}{}", payload, " ".repeat(MAX_BYTES + 1 - payload.len()));
        prop_assert_eq!(validate(CAMERA, padded.as_bytes()).map(|_| ()).unwrap_err().reason, "too_large");
    }

    #[test]
    fn mutated_detections_are_refused_with_a_reason_or_still_valid((_, message) in detection_message(), edits in edits()) {
        let payload = mutate(message.to_string().into_bytes(), &edits);
        match validate(CAMERA, &payload) {
            Ok(batch) => check_batch(&batch)?,
            Err(r) => prop_assert!(REASONS.contains(&r.reason), "{}", r.reason),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Worker status

const STATUS_REASONS: &[&str] = &["bad_json", "not_finite", "bad_version", "bad_state", "bad_max_fps", "bad_label"];

fn status_message() -> impl Strategy<Value = serde_json::Value> {
    (
        any::<bool>(),
        proptest::option::of(0.001f64..1000.0),
        proptest::option::of(proptest::collection::vec("[a-z0-9_ -]{1,64}", 0..=STATUS_MAX_LABELS)),
        proptest::option::of("\\PC{0,200}"),
    )
        .prop_map(|(online, max_fps, labels, model)| {
            let mut m = serde_json::json!({"v": 1, "state": if online { "online" } else { "offline" }});
            if let Some(fps) = max_fps {
                m["max_fps"] = fps.into();
            }
            if let Some(labels) = labels {
                m["labels"] = labels.into();
            }
            if let Some(model) = model {
                m["model"] = model.into();
            }
            m
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn worker_status_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,200}") {
        for payload in [payload.as_slice(), text.as_bytes()] {
            match parse_status(payload) {
                Ok(status) => {
                    prop_assert!(status.labels.len() <= STATUS_MAX_LABELS);
                    prop_assert!(status.max_fps.is_none_or(|f| f.is_finite() && f > 0.0));
                    prop_assert!(status.model.as_ref().is_none_or(|m| m.chars().count() <= 128));
                }
                Err(r) => prop_assert!(STATUS_REASONS.contains(&r.reason), "{}", r.reason),
            }
        }
    }

    #[test]
    fn worker_status_reads_what_was_sent(message in status_message()) {
        // Compared with what serde_json reads back (floats may come back one ulp off).
        let message: serde_json::Value = serde_json::from_str(&message.to_string()).expect("json");
        let status = parse_status(message.to_string().as_bytes()).map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
        prop_assert_eq!(status.online, message["state"] == "online");
        prop_assert_eq!(status.max_fps, message["max_fps"].as_f64());
        let labels: Vec<String> =
            message["labels"].as_array().map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
        prop_assert_eq!(status.labels, labels);
        let model: Option<String> = message["model"].as_str().map(|m| m.chars().take(128).collect());
        prop_assert_eq!(status.model, model);
        prop_assert!(!parse_status(b"").expect("cleared").online, "an empty payload is offline");
    }

    #[test]
    fn mutated_worker_statuses_never_panic(message in status_message(), edits in edits()) {
        let payload = mutate(message.to_string().into_bytes(), &edits);
        match parse_status(&payload) {
            Ok(status) => {
                prop_assert!(status.labels.len() <= STATUS_MAX_LABELS);
                prop_assert!(status.max_fps.is_none_or(|f| f.is_finite() && f > 0.0));
            }
            Err(r) => prop_assert!(STATUS_REASONS.contains(&r.reason), "{}", r.reason),
        }
    }
}

// ---------------------------------------------------------------------------------------
// MP4 fragment scanner

fn mp4_box(kind: &[u8; 4], body: usize, large: bool) -> Vec<u8> {
    let mut b = if large {
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend(((body + 16) as u64).to_be_bytes());
        b
    } else {
        let mut b = ((body + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b
    };
    b.extend((0..body).map(|i| (i * 7) as u8));
    b
}

/// A fragmented MP4 segment, where its whole parts end (each box outside a fragment, each
/// fragment) with the fragments counted there, and where each of its boxes ends.
struct Segment {
    file: Vec<u8>,
    ends: Vec<(u64, u64)>,
    boxes: Vec<u64>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment {{ len: {}, ends: {:?} }}", self.file.len(), self.ends)
    }
}

fn segment() -> impl Strategy<Value = Segment> {
    (
        0usize..64,
        0usize..600,
        proptest::collection::vec((0usize..200, 0usize..2000, any::<bool>(), any::<bool>()), 0..6),
    )
        .prop_map(|(ftyp, moov, frags)| {
            let mut s = Segment { file: Vec::new(), ends: vec![(0, 0)], boxes: vec![0] };
            let push = |s: &mut Segment, b: Vec<u8>, whole: Option<u64>| {
                s.file.extend(b);
                s.boxes.push(s.file.len() as u64);
                if let Some(count) = whole {
                    s.ends.push((s.file.len() as u64, count));
                }
            };
            push(&mut s, mp4_box(b"ftyp", ftyp, false), Some(0));
            push(&mut s, mp4_box(b"moov", moov, false), Some(0));
            for (i, (moof, mdat, large, free)) in frags.into_iter().enumerate() {
                let i = i as u64;
                if free {
                    // A box between fragments (`free`, `sidx`): whole on its own.
                    push(&mut s, mp4_box(b"free", 4, false), Some(i));
                }
                push(&mut s, mp4_box(b"moof", moof, false), None);
                push(&mut s, mp4_box(b"mdat", mdat, large), Some(i + 1));
            }
            s
        })
}

fn scan(bytes: &[u8], len: u64) -> std::io::Result<fragments::Fragments> {
    fragments::scan(&mut Cursor::new(bytes), len)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_fragment_scanner_never_panics(bytes in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(8), Just(b'm'), any::<u8>()], 0..400)) {
        let found = scan(&bytes, bytes.len() as u64).expect("reads within the file");
        prop_assert!(found.complete_len <= bytes.len() as u64);
        prop_assert!(found.fragments * 16 <= found.complete_len, "a fragment is two boxes of 8 bytes at least");
        prop_assert_eq!(scan(&bytes[..found.complete_len as usize], found.complete_len).expect("scan"), found, "the complete part is stable");
    }

    #[test]
    fn a_whole_segment_is_complete_and_a_cut_one_ends_at_its_last_whole_fragment(s in segment(), cut in any::<usize>()) {
        let (file, ends) = (&s.file, &s.ends);
        let len = file.len() as u64;
        let (end, count) = *ends.last().expect("header");
        // Everything before the first fragment: ftyp, moov and any box after them.
        let header_end = ends.iter().rev().find(|(_, count)| *count == 0).map_or(0, |(end, _)| *end);
        prop_assert_eq!(scan(file, len).expect("scan"), fragments::Fragments { complete_len: end, fragments: count, init_len: header_end });
        let cut = (cut % (file.len() + 1)) as u64;
        let (end, count) = ends.iter().rev().find(|(end, _)| *end <= cut).copied().unwrap_or((0, 0));
        let found = scan(file, cut).expect("scan");
        prop_assert_eq!((found.complete_len, found.fragments), (end, count), "cut at {}", cut);
        // Zeros where the next box would start (a tail a power cut left unwritten) are no box.
        if s.boxes.contains(&cut) {
            let mut torn = file[..cut as usize].to_vec();
            torn.extend(std::iter::repeat_n(0u8, 100));
            prop_assert_eq!(scan(&torn, torn.len() as u64).expect("scan"), found);
        }
    }

    #[test]
    fn mutated_segments_stay_in_bounds(s in segment(), edits in edits()) {
        let bytes = mutate(s.file, &edits);
        let found = scan(&bytes, bytes.len() as u64).expect("reads within the file");
        prop_assert!(found.complete_len <= bytes.len() as u64);
        prop_assert!(found.fragments * 16 <= found.complete_len);
    }
}

// ---------------------------------------------------------------------------------------
// Segment paths

/// Times in years 1970..=9999 (what a recorder's clock can say).
fn recording_ms() -> impl Strategy<Value = i64> {
    0i64..253_402_300_800_000
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn segment_paths_never_panic(path in "\\PC{0,40}", near in "[a-z\u{e9}]{0,3}/[0-9\u{e9}-]{8,12}/[0-9\u{e9}]{5,7}(-[a-z0-9\u{e9}]{0,14})?\\.mp4") {
        for p in [&path, &near] {
            if let Some(name) = layout::parse_segment_path(p) {
                prop_assert!(!name.camera.is_empty() && !name.camera.contains('/'));
                prop_assert_eq!(name.opened.0.rem_euclid(1000), 0, "a whole second");
            }
        }
    }

    #[test]
    fn segment_paths_round_trip(camera in token(1, 32), opened in recording_ms(), started in any::<i64>()) {
        let run = layout::run_token(UnixMs(started));
        prop_assert!(!run.is_empty() && run.len() <= 13, "{}", run);
        prop_assert!(run.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        prop_assert_eq!(u64::from_str_radix(&run, 36).ok(), Some(started.max(0) as u64), "base 36 of the millisecond");
        // What ffmpeg's strftime makes of the pattern, at `opened` in UTC.
        let (y, mo, d, h, mi, s, _) = UnixMs(opened).civil();
        let path = layout::segment_pattern(&camera, &run)
            .replace("%Y", &format!("{y:04}"))
            .replace("%m", &format!("{mo:02}"))
            .replace("%d", &format!("{d:02}"))
            .replace("%H", &format!("{h:02}"))
            .replace("%M", &format!("{mi:02}"))
            .replace("%S", &format!("{s:02}"));
        prop_assert!(path.starts_with(&layout::day_dir(&camera, UnixMs(opened))));
        let name = layout::parse_segment_path(&path).expect("parses");
        prop_assert_eq!(&name.camera, &camera);
        prop_assert_eq!(name.opened, UnixMs(opened - opened.rem_euclid(1000)));
        // The older name without the run parses the same.
        let old = format!("{}/{h:02}{mi:02}{s:02}.mp4", layout::day_dir(&camera, UnixMs(opened)));
        prop_assert_eq!(layout::parse_segment_path(&old), Some(name));
    }

    #[test]
    fn mutated_segment_paths_never_panic(camera in token(1, 32), opened in recording_ms(), edits in edits()) {
        let (_, _, _, h, mi, s, _) = UnixMs(opened).civil();
        let path = format!("{}/{h:02}{mi:02}{s:02}-{}.mp4", layout::day_dir(&camera, UnixMs(opened)), layout::run_token(UnixMs(opened)));
        let mutated = String::from_utf8_lossy(&mutate(path.into_bytes(), &edits)).into_owned();
        if let Some(name) = layout::parse_segment_path(&mutated) {
            prop_assert_eq!(name.opened.0.rem_euclid(1000), 0);
        }
    }
}
