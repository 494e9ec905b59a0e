//! Table-driven tests of the zone engine, on deterministic time.

use super::engine::{Observation, TRACK_TIMEOUT, ZoneEngine, ZoneEvent, ZoneEventKind};
use crate::config::schema::{LineDirection, Point, ZoneConfig};
use embassy_time::{Duration, Instant};

fn polygon(id: &str, points: &[[f64; 2]]) -> ZoneConfig {
    ZoneConfig {
        id: id.into(),
        name: None,
        polygon: Some(points.iter().map(|p| Point(*p)).collect()),
        line: None,
        labels: Vec::new(),
        min_confidence: 0.5,
        inertia: 2,
        dwell_s: 0,
        count_threshold: 0,
        lock: false,
        direction: None,
    }
}

fn line(id: &str, a: [f64; 2], b: [f64; 2], direction: LineDirection) -> ZoneConfig {
    ZoneConfig { polygon: None, line: Some(vec![Point(a), Point(b)]), direction: Some(direction), ..polygon(id, &[]) }
}

const SQUARE: [[f64; 2]; 4] = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]];

/// A box whose bottom centre is `(x, y)`.
fn at(x: f64, y: f64) -> [f64; 4] {
    [x - 0.05, y - 0.1, 0.1, 0.1]
}

fn seen<'a>(track: &'a str, bbox: [f64; 4]) -> Observation<'a> {
    Observation { track_id: Some(track), label: "person", confidence: 0.9, bbox }
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Runs frames `(time ms, detections)` and returns the events as short strings.
fn run(engine: &mut ZoneEngine, frames: &[(u64, Vec<Observation<'_>>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (ms, detections) in frames {
        engine.observe(t(*ms), detections, &mut |e| out.push(describe(&e)));
    }
    out
}

fn describe(e: &ZoneEvent) -> String {
    let track = e.track.as_ref().map_or(String::new(), |t| format!(" {}", t.id));
    let kind = match &e.kind {
        ZoneEventKind::Enter => "enter".to_string(),
        ZoneEventKind::Exit { dwell } => format!("exit {}s", dwell.as_millis() / 1000),
        ZoneEventKind::Dwell { dwell } => format!("dwell {}s", dwell.as_millis() / 1000),
        ZoneEventKind::Cross { ab } => format!("cross {}", if *ab { "ab" } else { "ba" }),
        ZoneEventKind::Count { count, reached } => format!("count {count} {}", if *reached { "up" } else { "down" }),
    };
    format!("z{} {kind}{track} @{}", e.zone, e.at.as_millis())
}

#[test]
fn enter_and_exit_need_inertia_observations() {
    let mut engine = ZoneEngine::new(&[polygon("yard", &SQUARE)], 8);
    let events = run(
        &mut engine,
        &[
            (0, vec![seen("a", at(0.1, 0.1))]),
            (1000, vec![seen("a", at(0.4, 0.4))]),
            (2000, vec![seen("a", at(0.4, 0.4))]),
            (3000, vec![seen("a", at(0.4, 0.5))]),
            (4000, vec![seen("a", at(0.8, 0.8))]),
            (5000, vec![seen("a", at(0.8, 0.8))]),
        ],
    );
    assert_eq!(events, ["z0 enter a @2000", "z0 exit 3s a @5000"]);
}

#[test]
fn jitter_on_an_edge_makes_no_events() {
    let mut engine = ZoneEngine::new(&[polygon("yard", &SQUARE)], 8);
    let frames: Vec<(u64, Vec<Observation<'_>>)> =
        (0..20).map(|i| (i * 500, vec![seen("a", if i % 2 == 0 { at(0.61, 0.4) } else { at(0.59, 0.4) })])).collect();
    assert!(run(&mut engine, &frames).is_empty());
}

#[test]
fn dwell_fires_once_per_visit() {
    let mut zone = polygon("door", &SQUARE);
    zone.dwell_s = 3;
    let mut engine = ZoneEngine::new(&[zone], 8);
    let frames: Vec<(u64, Vec<Observation<'_>>)> = (0..8).map(|i| (i * 1000, vec![seen("a", at(0.4, 0.4))])).collect();
    assert_eq!(run(&mut engine, &frames), ["z0 enter a @1000", "z0 dwell 3s a @4000"]);
}

#[test]
fn lines_count_real_crossings_in_both_directions() {
    let mut engine = ZoneEngine::new(&[line("gate", [0.2, 0.5], [0.8, 0.5], LineDirection::Any)], 8);
    let events = run(
        &mut engine,
        &[
            (0, vec![seen("a", at(0.5, 0.3))]),
            (1000, vec![seen("a", at(0.5, 0.7))]),
            (2000, vec![seen("a", at(0.5, 0.75))]),
            (3000, vec![seen("a", at(0.5, 0.3))]),
            (4000, vec![seen("a", at(0.5, 0.2))]),
        ],
    );
    assert_eq!(events, ["z0 cross ab a @2000", "z0 cross ba a @4000"]);
}

#[test]
fn direction_filters_crossings() {
    let mut engine = ZoneEngine::new(&[line("gate", [0.2, 0.5], [0.8, 0.5], LineDirection::Ba)], 8);
    let frames: Vec<(u64, Vec<Observation<'_>>)> = [0.3, 0.7, 0.7, 0.3, 0.3]
        .iter()
        .enumerate()
        .map(|(i, y)| (i as u64 * 1000, vec![seen("a", at(0.5, *y))]))
        .collect();
    assert_eq!(run(&mut engine, &frames), ["z0 cross ba a @4000"]);
}

#[test]
fn jitter_across_a_line_and_passing_beside_it_make_no_crossing() {
    let mut engine = ZoneEngine::new(&[line("gate", [0.2, 0.5], [0.8, 0.5], LineDirection::Any)], 8);
    let jitter: Vec<(u64, Vec<Observation<'_>>)> =
        (0..10).map(|i| (i * 500, vec![seen("a", at(0.5, if i % 2 == 0 { 0.49 } else { 0.51 }))])).collect();
    assert!(run(&mut engine, &jitter).is_empty());
    let beside: Vec<(u64, Vec<Observation<'_>>)> = [0.3, 0.7, 0.7]
        .iter()
        .enumerate()
        .map(|(i, y)| (10_000 + i as u64 * 1000, vec![seen("b", at(0.95, *y))]))
        .collect();
    assert!(run(&mut engine, &beside).is_empty(), "beyond the end of the line");
}

#[test]
fn count_threshold_up_and_down() {
    let mut zone = polygon("lobby", &SQUARE);
    zone.count_threshold = 2;
    zone.inertia = 1;
    let mut engine = ZoneEngine::new(&[zone], 8);
    let events = run(
        &mut engine,
        &[
            (0, vec![seen("a", at(0.3, 0.3))]),
            (1000, vec![seen("a", at(0.3, 0.3)), seen("b", at(0.4, 0.4))]),
            (2000, vec![seen("a", at(0.3, 0.3)), seen("b", at(0.9, 0.9))]),
        ],
    );
    assert_eq!(
        events,
        ["z0 enter a @0", "z0 enter b @1000", "z0 count 2 up @1000", "z0 exit 1s b @2000", "z0 count 1 down @2000"]
    );
}

#[test]
fn silent_tracks_exit_on_timeout_via_tick() {
    let mut engine = ZoneEngine::new(&[polygon("yard", &SQUARE)], 8);
    run(&mut engine, &[(0, vec![seen("a", at(0.4, 0.4))]), (1000, vec![seen("a", at(0.4, 0.4))])]);
    let mut out = Vec::new();
    engine.tick(t(1000) + TRACK_TIMEOUT - Duration::from_millis(1), &mut |e| out.push(describe(&e)));
    assert!(out.is_empty(), "not yet");
    engine.tick(t(1000) + TRACK_TIMEOUT, &mut |e| out.push(describe(&e)));
    assert_eq!(out, ["z0 exit 0s a @1000"], "exit at the last sighting");
    assert_eq!(engine.track_count(), 0);
}

#[test]
fn batches_older_than_the_newest_are_ignored_and_counted() {
    let mut engine = ZoneEngine::new(&[polygon("yard", &SQUARE)], 8);
    run(&mut engine, &[(5000, vec![seen("a", at(0.4, 0.4))])]);
    assert!(run(&mut engine, &[(4000, vec![seen("a", at(0.4, 0.4))])]).is_empty());
    assert_eq!(engine.counters.stale, 1);
}

#[test]
fn a_visit_carries_on_across_a_clock_step_back() {
    let mut engine = ZoneEngine::new(&[polygon("yard", &SQUARE)], 8);
    let before =
        run(&mut engine, &[(3_601_000, vec![seen("a", at(0.4, 0.4))]), (3_602_000, vec![seen("a", at(0.4, 0.4))])]);
    assert_eq!(before, ["z0 enter a @3602000"]);
    // The wall clock goes back an hour: frames now carry times an hour earlier.
    engine.shift(-3_600_000);
    let after = run(
        &mut engine,
        &[
            (3_000, vec![seen("a", at(0.4, 0.4))]),
            (4_000, vec![seen("a", at(0.8, 0.8))]),
            (5_000, vec![seen("a", at(0.8, 0.8))]),
        ],
    );
    assert_eq!(after, ["z0 exit 3s a @5000"], "not stale, no second enter, dwell measured across the step");
    assert_eq!(engine.counters.stale, 0);
}

#[test]
fn labels_and_confidence_filter_what_a_zone_sees() {
    let mut zone = polygon("cars", &SQUARE);
    zone.labels = vec!["car".into()];
    zone.inertia = 1;
    let mut engine = ZoneEngine::new(&[zone], 8);
    let person = seen("p", at(0.4, 0.4));
    let weak_car = Observation { track_id: Some("c1"), label: "car", confidence: 0.3, bbox: at(0.4, 0.4) };
    let car = Observation { track_id: Some("c2"), label: "car", confidence: 0.8, bbox: at(0.4, 0.4) };
    assert_eq!(run(&mut engine, &[(0, vec![person, weak_car, car])]), ["z0 enter c2 @0"]);
}

#[test]
fn untracked_detections_are_associated_by_overlap() {
    let mut zone = polygon("yard", &SQUARE);
    zone.inertia = 1;
    let mut engine = ZoneEngine::new(&[zone], 8);
    let loose = |bbox| Observation { track_id: None, label: "dog", confidence: 0.9, bbox };
    // auto-1 walks down out of the square in overlapping steps; auto-2 idles outside.
    let mut frames = vec![(0, vec![loose(at(0.4, 0.4)), loose(at(0.9, 0.9))])];
    for (i, y) in [0.45, 0.5, 0.55, 0.6, 0.65].iter().enumerate() {
        frames.push((1000 * (i as u64 + 1), vec![loose(at(0.9, 0.91)), loose(at(0.4, *y))]));
    }
    frames.push((6000, vec![loose(at(0.2, 0.3))]));
    let events = run(&mut engine, &frames);
    assert_eq!(events, ["z0 enter auto-1 @0", "z0 exit 5s auto-1 @5000", "z0 enter auto-3 @6000"]);
}

#[test]
fn a_full_track_table_evicts_the_oldest_with_an_exit() {
    let mut zone = polygon("yard", &SQUARE);
    zone.inertia = 1;
    let mut engine = ZoneEngine::new(&[zone], 2);
    let events = run(
        &mut engine,
        &[
            (0, vec![seen("a", at(0.4, 0.4))]),
            (1000, vec![seen("b", at(0.4, 0.4))]),
            (2000, vec![seen("c", at(0.4, 0.4))]),
        ],
    );
    assert_eq!(events, ["z0 enter a @0", "z0 enter b @1000", "z0 exit 2s a @2000", "z0 enter c @2000"]);
    assert_eq!(engine.counters.evicted, 1);
    assert_eq!(engine.track_count(), 2);
}

mod properties {
    use super::*;
    use crate::zones::geometry;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn inside_a_convex_polygon_is_inside(cx in 0.2f64..0.8, cy in 0.2f64..0.8, r in 0.05f64..0.2, n in 3usize..12, u in 0.0f64..0.99, v in 0.0f64..1.0) {
            let polygon: Vec<[f64; 2]> = (0..n)
                .map(|k| {
                    let a = std::f64::consts::TAU * k as f64 / n as f64;
                    [cx + r * a.cos(), cy + r * a.sin()]
                })
                .collect();
            // A point strictly inside: a convex combination of the centre and a vertex pair.
            let k = (v * n as f64) as usize % n;
            let (p, q) = (polygon[k], polygon[(k + 1) % n]);
            let s = u * 0.99;
            let point = [cx + s * ((p[0] + q[0]) / 2.0 - cx), cy + s * ((p[1] + q[1]) / 2.0 - cy)];
            prop_assert!(geometry::contains(&polygon, point));
            let outside = [cx + r * 1.01 + u, cy];
            prop_assert!(!geometry::contains(&polygon, outside));
        }

        #[test]
        fn enters_and_exits_balance_once_tracks_time_out(
            steps in proptest::collection::vec((0usize..4, 0.0f64..1.0, 0.0f64..1.0, proptest::bool::ANY), 1..120),
        ) {
            let mut zone = polygon("yard", &SQUARE);
            zone.dwell_s = 2;
            let gate = line("gate", [0.1, 0.5], [0.9, 0.5], LineDirection::Any);
            let mut engine = ZoneEngine::new(&[zone, gate], 3);
            let ids = ["a", "b", "c", "d"];
            let (mut enters, mut exits) = (0i64, 0i64);
            let mut tally = |e: ZoneEvent| match e.kind {
                ZoneEventKind::Enter => enters += 1,
                ZoneEventKind::Exit { .. } => exits += 1,
                _ => {}
            };
            let mut ms = 0;
            for (who, x, y, tracked) in &steps {
                ms += 700;
                let bbox = [x * 0.9, y * 0.9, 0.1, 0.1];
                let o = Observation { track_id: tracked.then_some(ids[*who]), label: "person", confidence: 0.9, bbox };
                engine.observe(t(ms), &[o], &mut tally);
            }
            engine.tick(t(ms) + TRACK_TIMEOUT, &mut tally);
            prop_assert_eq!(enters, exits);
            prop_assert_eq!(engine.track_count(), 0);
            prop_assert!(engine.occupancy().iter().all(|o| *o == 0));
        }
    }
}
