//! Table tests of the schedule evaluator: time and zone passed in.

use super::*;
use crate::config::schema::{ClockTime, Days};

fn t(text: &str) -> UnixMs {
    UnixMs::parse_rfc3339(text).unwrap_or_else(|| panic!("bad time {text}"))
}

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).expect("zone in the tz database")
}

fn window(days: &str, from: &str, to: &str, record: RecordMode) -> ScheduleWindow {
    ScheduleWindow {
        days: Days::parse(days).expect("days"),
        from: ClockTime::parse(from).expect("from"),
        to: ClockTime::parse(to).expect("to"),
        record,
    }
}

use RecordMode::{Continuous, Events, Off};

/// (instant, mode in force, next change) for `windows` over `configured` in `tz`.
fn check(tz: &str, configured: RecordMode, windows: &[ScheduleWindow], table: &[(&str, RecordMode, Option<&str>)]) {
    let tz = zone(tz);
    for (at, mode, next) in table {
        let mode_at = |u| scheduled(configured, windows, &tz, u).0;
        assert_eq!(mode_at(t(at)), *mode, "mode at {at}");
        assert_eq!(next_change(windows, &tz, t(at), mode_at), next.map(t), "next change after {at}");
    }
}

#[test]
fn an_overnight_window_wraps_past_midnight_into_the_next_day() {
    // Friday night only: Fri 22:00 to Sat 06:00 (2026-11-27 is a Friday).
    let windows = [window("fri", "22:00", "06:00", Continuous)];
    check(
        "UTC",
        Off,
        &windows,
        &[
            ("2026-11-27T21:59:59Z", Off, Some("2026-11-27T22:00:00Z")),
            ("2026-11-27T22:00:00Z", Continuous, Some("2026-11-28T06:00:00Z")),
            ("2026-11-28T05:59:59.999Z", Continuous, Some("2026-11-28T06:00:00Z")),
            ("2026-11-28T06:00:00Z", Off, Some("2026-12-04T22:00:00Z")),
            ("2026-11-28T23:00:00Z", Off, Some("2026-12-04T22:00:00Z")),
            ("2026-11-27T05:00:00Z", Off, Some("2026-11-27T22:00:00Z")),
        ],
    );
}

#[test]
fn weekday_sets_pick_their_days() {
    // 2026-11-23 is a Monday.
    let windows = [window("weekdays", "08:00", "18:00", Events), window("weekends", "00:00", "24:00", Continuous)];
    check(
        "UTC",
        Off,
        &windows,
        &[
            ("2026-11-23T07:00:00Z", Off, Some("2026-11-23T08:00:00Z")),
            ("2026-11-23T12:00:00Z", Events, Some("2026-11-23T18:00:00Z")),
            ("2026-11-27T18:30:00Z", Off, Some("2026-11-28T00:00:00Z")),
            ("2026-11-28T12:00:00Z", Continuous, Some("2026-11-30T00:00:00Z")),
            ("2026-11-29T23:59:00Z", Continuous, Some("2026-11-30T00:00:00Z")),
        ],
    );
    let odd = [window("mon", "10:00", "11:00", Continuous), window("thu", "10:00", "11:00", Continuous)];
    check("UTC", Events, &odd, &[("2026-11-24T10:30:00Z", Events, Some("2026-11-26T10:00:00Z"))]);
}

#[test]
fn overlapping_windows_the_one_that_records_most_wins() {
    let windows = [
        window("daily", "11:00", "13:00", Off),
        window("daily", "10:00", "14:00", Events),
        window("daily", "08:00", "12:00", Continuous),
    ];
    check(
        "UTC",
        Continuous,
        &windows,
        &[
            ("2026-11-23T07:00:00Z", Continuous, Some("2026-11-23T12:00:00Z")),
            ("2026-11-23T10:30:00Z", Continuous, Some("2026-11-23T12:00:00Z")),
            ("2026-11-23T11:30:00Z", Continuous, Some("2026-11-23T12:00:00Z")),
            ("2026-11-23T12:30:00Z", Events, Some("2026-11-23T14:00:00Z")),
            ("2026-11-23T14:00:00Z", Continuous, Some("2026-11-24T12:00:00Z")),
        ],
    );
    let tz = zone("UTC");
    assert_eq!(window_at(&windows, &tz, t("2026-11-23T11:30:00Z")), Some(2), "continuous beats events and off");
    assert_eq!(window_at(&windows, &tz, t("2026-11-23T12:30:00Z")), Some(1), "events beats off");
    // An off window turns a continuous camera off, where nothing records more.
    let night_off = [window("daily", "02:00", "04:00", Off)];
    check("UTC", Continuous, &night_off, &[("2026-11-23T03:00:00Z", Off, Some("2026-11-23T04:00:00Z"))]);
}

#[test]
fn berlin_spring_night_skips_an_hour() {
    // 2026-03-29: 02:00 CET (01:00Z) jumps to 03:00 CEST.
    let night = [window("daily", "01:00", "05:00", Continuous)];
    check(
        "Europe/Berlin",
        Off,
        &night,
        &[
            ("2026-03-28T23:30:00Z", Off, Some("2026-03-29T00:00:00Z")),
            // Opens at 01:00 CET and closes at 05:00 CEST: three real hours.
            ("2026-03-29T00:00:00Z", Continuous, Some("2026-03-29T03:00:00Z")),
        ],
    );
    // Opening inside the skipped hour: it opens when the clock jumps past 02:30.
    let late = [window("daily", "02:30", "04:00", Continuous)];
    check(
        "Europe/Berlin",
        Off,
        &late,
        &[
            ("2026-03-29T00:30:00Z", Off, Some("2026-03-29T01:00:00Z")),
            ("2026-03-29T01:00:00Z", Continuous, Some("2026-03-29T02:00:00Z")),
        ],
    );
    // Wholly inside the skipped hour: it does not open that night.
    let lost = [window("daily", "02:00", "02:30", Continuous)];
    check(
        "Europe/Berlin",
        Off,
        &lost,
        &[
            ("2026-03-28T23:30:00Z", Off, Some("2026-03-30T00:00:00Z")),
            ("2026-03-29T01:15:00Z", Off, Some("2026-03-30T00:00:00Z")),
        ],
    );
}

#[test]
fn berlin_autumn_night_repeats_an_hour() {
    // 2026-10-25: 03:00 CEST (01:00Z) goes back to 02:00 CET.
    let night = [window("daily", "01:00", "05:00", Continuous)];
    check(
        "Europe/Berlin",
        Off,
        &night,
        &[
            // Opens at 01:00 CEST and closes at 05:00 CET: five real hours.
            ("2026-10-24T22:30:00Z", Off, Some("2026-10-24T23:00:00Z")),
            ("2026-10-24T23:00:00Z", Continuous, Some("2026-10-25T04:00:00Z")),
        ],
    );
    // Inside the repeated hour: open twice.
    let twice = [window("daily", "02:00", "02:30", Events)];
    check(
        "Europe/Berlin",
        Off,
        &twice,
        &[
            ("2026-10-24T23:30:00Z", Off, Some("2026-10-25T00:00:00Z")),
            ("2026-10-25T00:00:00Z", Events, Some("2026-10-25T00:30:00Z")),
            ("2026-10-25T00:30:00Z", Off, Some("2026-10-25T01:00:00Z")),
            ("2026-10-25T01:00:00Z", Events, Some("2026-10-25T01:30:00Z")),
            ("2026-10-25T01:30:00Z", Off, Some("2026-10-26T01:00:00Z")),
        ],
    );
}

#[test]
fn new_york_nights_of_both_changes() {
    // 2026-03-08: 02:00 EST (07:00Z) jumps to 03:00 EDT.
    let night = [window("daily", "01:00", "04:00", Continuous)];
    check(
        "America/New_York",
        Off,
        &night,
        &[
            ("2026-03-08T05:00:00Z", Off, Some("2026-03-08T06:00:00Z")),
            ("2026-03-08T06:00:00Z", Continuous, Some("2026-03-08T08:00:00Z")),
        ],
    );
    let lost = [window("sun", "02:00", "03:00", Continuous)];
    check("America/New_York", Off, &lost, &[("2026-03-08T06:30:00Z", Off, Some("2026-03-15T06:00:00Z"))]);
    // 2026-11-01: 02:00 EDT (06:00Z) goes back to 01:00 EST. 01:30–03:00: open at 01:30 EDT,
    // closed while the clock shows 01:00–01:30 again, open from 01:30 EST to 03:00 EST.
    let fold = [window("daily", "01:30", "03:00", Continuous)];
    check(
        "America/New_York",
        Off,
        &fold,
        &[
            ("2026-11-01T05:00:00Z", Off, Some("2026-11-01T05:30:00Z")),
            ("2026-11-01T05:30:00Z", Continuous, Some("2026-11-01T06:00:00Z")),
            ("2026-11-01T06:00:00Z", Off, Some("2026-11-01T06:30:00Z")),
            ("2026-11-01T06:30:00Z", Continuous, Some("2026-11-01T08:00:00Z")),
        ],
    );
}

#[test]
fn snapshots_come_from_the_window_start_every_so_often() {
    let tz = zone("UTC");
    let every = |s, from: Option<&str>, to: Option<&str>| SnapshotSchedule {
        every_s: s,
        days: Days::DAILY,
        from: from.map(|f| ClockTime::parse(f).expect("from")),
        to: to.map(|f| ClockTime::parse(f).expect("to")),
        width: 640,
        retain_days: 1,
    };
    let all_day = every(10, None, None);
    assert_eq!(next_snapshot(&all_day, &tz, t("2026-11-23T10:00:03Z")), Some(t("2026-11-23T10:00:10Z")));
    assert_eq!(next_snapshot(&all_day, &tz, t("2026-11-23T10:00:10Z")), Some(t("2026-11-23T10:00:20Z")));
    assert_eq!(next_snapshot(&all_day, &tz, t("2026-11-23T23:59:55Z")), Some(t("2026-11-24T00:00:00Z")));
    let noon = every(86_400, Some("12:00"), Some("12:01"));
    assert_eq!(next_snapshot(&noon, &tz, t("2026-11-23T12:00:00Z")), Some(t("2026-11-24T12:00:00Z")));
    let shift = every(3600, Some("22:00"), Some("02:00"));
    assert_eq!(next_snapshot(&shift, &tz, t("2026-11-24T00:30:00Z")), Some(t("2026-11-24T01:00:00Z")));
    assert_eq!(next_snapshot(&shift, &tz, t("2026-11-24T01:00:00Z")), Some(t("2026-11-24T22:00:00Z")));
    // Berlin's repeated hour: 02:30 comes twice; its skipped hour: 02:30 never comes.
    let berlin = zone("Europe/Berlin");
    let half_past_two = every(3600, Some("02:30"), Some("03:00"));
    assert_eq!(next_snapshot(&half_past_two, &berlin, t("2026-10-25T00:00:00Z")), Some(t("2026-10-25T00:30:00Z")));
    assert_eq!(next_snapshot(&half_past_two, &berlin, t("2026-10-25T00:30:00Z")), Some(t("2026-10-25T01:30:00Z")));
    assert_eq!(next_snapshot(&half_past_two, &berlin, t("2026-03-28T23:00:00Z")), Some(t("2026-03-30T00:30:00Z")));
}

#[test]
fn schedules_in_words_name_the_next_change() {
    let windows = [window("daily", "22:00", "06:00", Continuous)];
    let tz = zone("Europe/Berlin");
    // 2026-11-23T23:00Z is Tue 00:00 in Berlin.
    let words = in_words(Events, &windows, &tz, t("2026-11-23T23:00:00Z"));
    assert_eq!(words, "continuous until 06:00 Tue, then events");
    assert_eq!(in_words(Off, &[], &tz, t("2026-11-23T23:00:00Z")), "off, no change within a week");
}

#[test]
fn the_bundled_tz_database_serves_boards_without_zoneinfo() {
    // What a board without /usr/share/zoneinfo reads (the `tzdb-bundle-always` feature).
    let bundled = jiff::tz::TimeZoneDatabase::bundled();
    for name in ["Europe/Berlin", "America/New_York"] {
        let tz = bundled.get(name).unwrap_or_else(|e| panic!("{name} not bundled: {e}"));
        let night = [window("daily", "01:00", "05:00", Continuous)];
        let mode_at = |u| scheduled(Off, &night, &tz, u).0;
        let (open, close) = match name {
            "Europe/Berlin" => ("2026-10-24T23:00:00Z", "2026-10-25T04:00:00Z"),
            _ => ("2026-11-01T05:00:00Z", "2026-11-01T10:00:00Z"),
        };
        assert_eq!(next_change(&night, &tz, t(open), mode_at), Some(t(close)), "{name}: five real hours that night");
    }
}
