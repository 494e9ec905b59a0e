//! Tests of the modes in force: overrides over schedules over `record`, and the
//! marks of continuous recording retention reads.

use super::*;
use crate::config::schema::{ClockTime, Days};

fn night() -> Vec<ScheduleWindow> {
    vec![ScheduleWindow {
        days: Days::DAILY,
        from: ClockTime(22 * 60),
        to: ClockTime(6 * 60),
        record: RecordMode::Continuous,
    }]
}

const HOUR: i64 = 3_600_000;

#[test]
fn an_override_holds_until_it_expires() {
    let tz = TimeZone::UTC;
    let over = Override { mode: RecordMode::Off, until: Some(UnixMs(1000)) };
    let mode = |configured, over: Option<&Override>, now| in_force((configured, &[]), over, &tz, UnixMs(now)).0;
    assert_eq!(mode(RecordMode::Continuous, Some(&over), 999).mode, RecordMode::Off);
    assert_eq!(mode(RecordMode::Continuous, Some(&over), 999).next, Some((UnixMs(1000), RecordMode::Continuous)));
    assert_eq!(mode(RecordMode::Continuous, Some(&over), 1000), InForce::configured(RecordMode::Continuous));
    let open = Override { mode: RecordMode::Events, until: None };
    let forever = mode(RecordMode::Continuous, Some(&open), i64::MAX);
    assert_eq!((forever.mode, forever.by, forever.next), (RecordMode::Events, By::Command, None));
    assert_eq!(mode(RecordMode::Events, None, 0), InForce::configured(RecordMode::Events));
}

#[test]
fn a_schedule_puts_its_window_in_force_and_says_when_it_ends() {
    let tz = TimeZone::UTC;
    let windows = night();
    let (inside, wake) = in_force((RecordMode::Off, &windows), None, &tz, UnixMs(23 * HOUR));
    assert_eq!(inside.mode, RecordMode::Continuous);
    assert_eq!(inside.by, By::Schedule);
    assert_eq!(inside.window.as_deref(), Some("daily 22:00–06:00 continuous"));
    assert_eq!(inside.next, Some((UnixMs(30 * HOUR), RecordMode::Off)));
    assert_eq!(wake, Some(UnixMs(30 * HOUR)));
    let (outside, _) = in_force((RecordMode::Off, &windows), None, &tz, UnixMs(12 * HOUR));
    assert_eq!((outside.mode, outside.by, outside.window), (RecordMode::Off, By::Schedule, None));
    // A command overrides the schedule until its end, then the schedule is back.
    let over = Override { mode: RecordMode::Continuous, until: Some(UnixMs(13 * HOUR)) };
    let (commanded, wake) = in_force((RecordMode::Off, &windows), Some(&over), &tz, UnixMs(12 * HOUR));
    assert_eq!((commanded.mode, commanded.by), (RecordMode::Continuous, By::Command));
    assert_eq!(commanded.next, Some((UnixMs(13 * HOUR), RecordMode::Off)));
    assert_eq!(wake, Some(UnixMs(13 * HOUR)));
}

#[test]
fn continuous_recording_of_an_events_camera_is_marked_until_the_next_change() {
    let conn = crate::store::migrations::in_memory();
    store_marks(&conn, &vec![("cam".into(), Some(5000))], UnixMs(1000)).expect("open");
    store_marks(&conn, &vec![("cam".into(), None)], UnixMs(3000)).expect("close");
    store_marks(&conn, &vec![("cam".into(), Some(i64::MAX))], UnixMs(4000)).expect("open again");
    mark_so_far(&conn, &vec![("other".into(), Some(0))], UnixMs(4500)).expect("so far");
    let windows: Vec<(String, i64, i64)> = conn
        .prepare("SELECT camera, from_ms, to_ms FROM record_windows ORDER BY camera, from_ms")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected =
        [("cam".to_string(), 1000, 3000), ("cam".to_string(), 4000, i64::MAX), ("other".to_string(), 0, 4500)];
    assert_eq!(windows, expected);
    let off = Override { mode: RecordMode::Off, until: None };
    store_override(&conn, "cam", Some(off), UnixMs(4000)).expect("store");
    assert_eq!(load_overrides(&conn).unwrap(), [("cam".to_string(), off)]);
    store_override(&conn, "cam", None, UnixMs(5000)).expect("clear");
    assert!(load_overrides(&conn).unwrap().is_empty());
}

#[test]
fn only_a_camera_that_may_record_events_marks_its_continuous_recording() {
    let tz = TimeZone::UTC;
    let camera = |record: &str, schedule: &str| -> CameraConfig {
        let text = format!("id = \"c\"\nsource = \"lavfi:testsrc\"\nrecord = \"{record}\"\n{schedule}");
        toml::from_str(&text).expect("camera")
    };
    let mut plain = CameraMode::new(&camera("continuous", ""));
    assert_eq!(plain.refresh(&tz, UnixMs(0), true), Some(None), "a continuous camera needs no marks");
    let evening = "[[schedule]]\nfrom = \"18:00\"\nto = \"22:00\"\nrecord = \"events\"\n";
    let mut shifts = CameraMode::new(&camera("continuous", evening));
    assert_eq!(shifts.refresh(&tz, UnixMs(HOUR), true), Some(Some(18 * HOUR)), "marked until the events window");
    assert_eq!(shifts.refresh(&tz, UnixMs(2 * HOUR), false), None, "unchanged: nothing to write");
    assert_eq!(shifts.refresh(&tz, UnixMs(19 * HOUR), false), Some(None), "the events window: no mark");
}
