//! Schedules in time: which of a camera's `[[camera.schedule]]` windows is in
//! force at an instant, the recording mode it gives, when that next changes,
//! and when the next scheduled snapshot is due. Pure: the instant and the
//! time zone are passed in.
//!
//! Windows name wall-clock times: a window is open while the local clock
//! shows a time inside it. On the night the clocks go forward a window
//! opening in the skipped hour opens when the clock jumps past its start (and
//! one lying wholly inside it does not open); on the night they go back, the
//! repeated hour is inside a window twice, so a window `01:00–05:00` records
//! five real hours that night and three on the spring night.

use crate::config::schema::{DAY_MINUTES, RecordMode, ScheduleWindow, SnapshotSchedule, Window};
use crate::wallclock::UnixMs;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use std::cmp::Reverse;

/// Days looked ahead for a change: over a week, so a weekly window is always seen.
const HORIZON_DAYS: i64 = 9;

fn timestamp(at: UnixMs) -> Timestamp {
    Timestamp::from_millisecond(at.0).unwrap_or(if at.0 < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

fn unix_ms(ts: Timestamp) -> UnixMs {
    UnixMs(ts.as_millisecond())
}

/// The local weekday (0 = Monday) and minute of the day (0..1440) at `at` in `tz`.
pub fn local_minute(tz: &TimeZone, at: UnixMs) -> (u8, u16) {
    let dt = tz.to_datetime(timestamp(at));
    (dt.weekday().to_monday_zero_offset() as u8, dt.hour() as u16 * 60 + dt.minute() as u16)
}

/// How much a mode records: `continuous` over `events` over `off`.
pub fn rank(mode: RecordMode) -> u8 {
    match mode {
        RecordMode::Continuous => 2,
        RecordMode::Events => 1,
        RecordMode::Off => 0,
    }
}

/// The window of `windows` in force at `at`: of those open, the one that records most (the
/// first of equals); `None` when none is open.
pub fn window_at(windows: &[ScheduleWindow], tz: &TimeZone, at: UnixMs) -> Option<usize> {
    if windows.is_empty() {
        return None;
    }
    let (day, minute) = local_minute(tz, at);
    windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.contains(day, minute))
        .max_by_key(|(i, w)| (rank(w.record), Reverse(*i)))
        .map(|(i, _)| i)
}

/// The mode `windows` put in force at `at` and the window that does it; outside every
/// window, `configured` (and `None`).
pub fn scheduled(
    configured: RecordMode,
    windows: &[ScheduleWindow],
    tz: &TimeZone,
    at: UnixMs,
) -> (RecordMode, Option<usize>) {
    match window_at(windows, tz, at) {
        Some(i) => (windows[i].record, Some(i)),
        None => (configured, None),
    }
}

fn day_offset(date: Date, days: i64) -> Option<Date> {
    date.checked_add(SignedDuration::from_hours(24 * days)).ok()
}

/// Both readings of local `dt` (they differ in a repeated hour; in a skipped one, they lie
/// around the jump).
fn readings(tz: &TimeZone, dt: DateTime) -> [Option<UnixMs>; 2] {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    [ambiguous.earlier().ok().map(unix_ms), ambiguous.later().ok().map(unix_ms)]
}

/// The local date-time `minute` minutes after the start of `date` (1440: the next midnight).
fn at_minute(date: Date, minute: u16) -> Option<DateTime> {
    let dt = date.at(0, 0, 0, 0);
    dt.checked_add(SignedDuration::from_mins(i64::from(minute))).ok()
}

/// Instants after `at`, sorted, where a window of `windows` may open or close: its edges on
/// each day of the horizon, both readings of each, and the zone's transitions (a skipped
/// hour moves an edge inside it to the jump).
fn edges<W: Window>(windows: &[W], tz: &TimeZone, at: UnixMs) -> Vec<UnixMs> {
    let today = tz.to_datetime(timestamp(at)).date();
    let horizon = UnixMs(at.0.saturating_add(HORIZON_DAYS * 86_400_000));
    let mut out: Vec<UnixMs> =
        tz.following(timestamp(at)).map(|t| unix_ms(t.timestamp())).take_while(|t| *t <= horizon).collect();
    for offset in -1..=HORIZON_DAYS {
        let Some(date) = day_offset(today, offset) else { continue };
        for window in windows {
            for minute in [window.opens_at(), window.closes_at()] {
                if let Some(dt) = at_minute(date, minute) {
                    out.extend(readings(tz, dt).into_iter().flatten());
                }
            }
        }
    }
    out.retain(|t| *t > at && *t <= horizon);
    out.sort_unstable();
    out.dedup();
    out
}

/// The first instant after `at` where `f` differs from `f(at)`, among the edges of
/// `windows`; `None` when it does not change within the horizon (over a week).
pub fn next_change<W: Window, T: PartialEq>(
    windows: &[W],
    tz: &TimeZone,
    at: UnixMs,
    f: impl Fn(UnixMs) -> T,
) -> Option<UnixMs> {
    if windows.is_empty() {
        return None;
    }
    let now = f(at);
    edges(windows, tz, at).into_iter().find(|t| f(*t) != now)
}

/// The next scheduled snapshot after `after`: at `from` and every `every_s` after it while
/// the window is open, on its days, in local time. A time in a skipped hour is not taken;
/// one in a repeated hour is taken twice.
pub fn next_snapshot(shot: &SnapshotSchedule, tz: &TimeZone, after: UnixMs) -> Option<UnixMs> {
    let every = shot.every_s.max(1) as i64;
    let (from, to) = (shot.opens_at(), shot.closes_at());
    let length_s = i64::from(if from < to { to - from } else { DAY_MINUTES - from + to }) * 60;
    let today = tz.to_datetime(timestamp(after)).date();
    for offset in -1..=HORIZON_DAYS {
        let Some(date) = day_offset(today, offset) else { continue };
        if !shot.days.has(date.weekday().to_monday_zero_offset() as u8) {
            continue;
        }
        let Some(open) = at_minute(date, from) else { continue };
        // Start a little before `after` (a zone's offset is at most hours from the civil reading).
        let rough = readings(tz, open)[0].map_or(0, |t| (after.0 - t.0) / 1000 - 7200);
        let first = (rough / every).max(0);
        let mut best: Option<UnixMs> = None;
        for k in first.. {
            let since_open = k * every;
            if since_open >= length_s {
                break;
            }
            let Ok(dt) = open.checked_add(SignedDuration::from_secs(since_open)) else { break };
            let ambiguous = tz.to_ambiguous_timestamp(dt);
            if matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
                continue;
            }
            let found = readings(tz, dt).into_iter().flatten().filter(|t| *t > after).min();
            if let Some(t) = found {
                best = Some(best.map_or(t, |b| b.min(t)));
                if !ambiguous.is_ambiguous() {
                    break;
                }
            }
        }
        if best.is_some() {
            return best;
        }
    }
    None
}

/// `at` in local time for people: `06:00 Tue`, with the date when it is a week or more away.
pub fn local_words(tz: &TimeZone, at: UnixMs, now: UnixMs) -> String {
    let dt = tz.to_datetime(timestamp(at));
    let far = at.0 - now.0 >= 6 * 86_400_000;
    dt.strftime(if far { "%H:%M %a %Y-%m-%d" } else { "%H:%M %a" }).to_string()
}

/// What a camera's schedule does at `now`, in words: `continuous until 06:00 Tue, then
/// events`; `off, no change within a week` when nothing changes within a week.
pub fn in_words(configured: RecordMode, windows: &[ScheduleWindow], tz: &TimeZone, now: UnixMs) -> String {
    let mode_at = |t| scheduled(configured, windows, tz, t).0;
    let mode = mode_at(now);
    match next_change(windows, tz, now, mode_at) {
        Some(at) => format!("{} until {}, then {}", mode.name(), local_words(tz, at, now), mode_at(at).name()),
        None => format!("{}, no change within a week", mode.name()),
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
