//! Where segments live: `<recordings_dir>/<camera>/<YYYY-MM-DD>/<HHMMSS>-<run>.mp4`,
//! in UTC, `<run>` naming the recorder run that wrote it. Paths in the index
//! are relative to `recordings_dir`.

use crate::wallclock::UnixMs;

/// The strftime pattern ffmpeg's segment muxer expands (run with `TZ=UTC`) for the run
/// `run` (see `run_token`).
pub fn segment_pattern(camera: &str, run: &str) -> String {
    format!("{camera}/%Y-%m-%d/%H%M%S-{run}.mp4")
}

/// The name of a recorder run started at `started`: its millisecond in base 36. Two runs of
/// a camera never start in the same millisecond, so their files never share a name, even
/// when both open a segment in the same second.
pub fn run_token(started: UnixMs) -> String {
    let mut n = started.0.max(0) as u64;
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// The day directory (relative) of `camera` at `at`.
pub fn day_dir(camera: &str, at: UnixMs) -> String {
    let (year, month, day, ..) = at.civil();
    format!("{camera}/{year:04}-{month:02}-{day:02}")
}

/// A segment path parsed back: its camera and the second its file was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    /// Camera id.
    pub camera: String,
    /// Start of the second in the file name.
    pub opened: UnixMs,
}

/// Parses a relative path `<camera>/<YYYY-MM-DD>/<HHMMSS>-<run>.mp4` (or the older
/// `<HHMMSS>.mp4`); `None` for anything else.
pub fn parse_segment_path(relative: &str) -> Option<SegmentName> {
    let mut parts = relative.split('/');
    let (camera, day, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || camera.is_empty() {
        return None;
    }
    let stem = file.strip_suffix(".mp4")?;
    let stem = match stem.split_once('-') {
        Some((time, run))
            if !run.is_empty()
                && run.len() <= 13
                && run.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) =>
        {
            time
        }
        Some(_) => return None,
        None => stem,
    };
    if stem.len() != 6 || !stem.bytes().all(|b| b.is_ascii_digit()) || day.len() != 10 {
        return None;
    }
    let text = format!("{day}T{}:{}:{}Z", &stem[0..2], &stem[2..4], &stem[4..6]);
    let opened = UnixMs::parse_rfc3339(&text)?;
    Some(SegmentName { camera: camera.to_string(), opened })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_dirs_are_utc_dates() {
        assert_eq!(day_dir("front", UnixMs(0)), "front/1970-01-01");
        assert_eq!(day_dir("front", UnixMs(86_399_999)), "front/1970-01-01");
        assert_eq!(day_dir("front", UnixMs(86_400_000)), "front/1970-01-02");
    }

    #[test]
    fn parses_what_ffmpeg_writes() {
        for path in ["front/2026-11-24/144429.mp4", "front/2026-11-24/144429-mifk2x3q.mp4"] {
            let name = parse_segment_path(path).expect("valid");
            assert_eq!(name.camera, "front");
            assert_eq!(name.opened.to_string(), "2026-11-24T14:44:29.000Z");
        }
    }

    #[test]
    fn runs_started_a_millisecond_apart_write_different_names() {
        assert_eq!(run_token(UnixMs(0)), "0");
        assert_eq!(run_token(UnixMs(35)), "z");
        assert_eq!(run_token(UnixMs(36)), "10");
        let (a, b) = (UnixMs(1_764_650_000_123), UnixMs(1_764_650_000_124));
        assert_ne!(segment_pattern("front", &run_token(a)), segment_pattern("front", &run_token(b)));
        let path = format!("front/2026-11-24/144429-{}.mp4", run_token(a));
        assert!(parse_segment_path(&path).is_some(), "{path}");
    }

    #[test]
    fn rejects_other_files() {
        for bad in [
            "front/2026-11-24/1444.mp4",
            "front/144429.mp4",
            "front/2026-11-24/144429.mkv",
            "a/b/c/d.mp4",
            "front/2026-13-24/144429.mp4",
            "front/2026-11-24/246060.mp4",
            "front/2026-11-24/144429-.mp4",
            "front/2026-11-24/144429-AB.mp4",
            "front/2026-11-24/144429-a-b.mp4",
        ] {
            assert_eq!(parse_segment_path(bad), None, "{bad}");
        }
    }
}
