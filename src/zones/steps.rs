//! One step of one track against one zone: the pure rules of polygons
//! (enter, exit, dwell) and lines (crossings).

use super::engine::{TrackSnapshot, Zone, ZoneEvent, ZoneEventKind};
use super::geometry::{self, Pt};
use crate::config::schema::LineDirection;
use embassy_time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
/// Where one track stands with one zone.
pub struct ZoneState {
    pub inside: bool,
    pub streak: u32,
    pub entered: Option<Instant>,
    pub dwell_fired: bool,
    pub confirmed_side: Option<bool>,
    pub crossing_valid: bool,
}

/// One observation of a track against a polygon zone: enter, exit and dwell after `inertia`.
pub fn polygon_step(
    z: usize,
    zone: &Zone,
    state: &mut ZoneState,
    inside: bool,
    at: Instant,
    snapshot: &TrackSnapshot,
    emit: &mut impl FnMut(ZoneEvent),
) {
    if inside == state.inside {
        state.streak = 0;
    } else {
        state.streak += 1;
        if state.streak >= zone.inertia {
            state.streak = 0;
            state.inside = inside;
            if inside {
                state.entered = Some(at);
                state.dwell_fired = false;
                emit(ZoneEvent { zone: z, kind: ZoneEventKind::Enter, at, track: Some(snapshot.clone()) });
            } else {
                let dwell = state.entered.take().map_or(Duration::from_ticks(0), |e| at.saturating_duration_since(e));
                emit(ZoneEvent { zone: z, kind: ZoneEventKind::Exit { dwell }, at, track: Some(snapshot.clone()) });
            }
        }
    }
    if let (true, Some(entered), Some(dwell), false) = (state.inside, state.entered, zone.dwell, state.dwell_fired) {
        let spent = at.saturating_duration_since(entered);
        if spent >= dwell {
            state.dwell_fired = true;
            emit(ZoneEvent { zone: z, kind: ZoneEventKind::Dwell { dwell: spent }, at, track: Some(snapshot.clone()) });
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// One observation of a track against a line: a crossing after `inertia`, in the wanted direction.
pub fn line_step(
    z: usize,
    zone: &Zone,
    state: &mut ZoneState,
    (a, b, direction): (Pt, Pt, LineDirection),
    (previous, point): (Pt, Pt),
    at: Instant,
    snapshot: &TrackSnapshot,
    emit: &mut impl FnMut(ZoneEvent),
) {
    let Some(side) = geometry::side(a, b, point) else { return };
    let Some(confirmed) = state.confirmed_side else {
        state.confirmed_side = Some(side);
        return;
    };
    if side == confirmed {
        state.streak = 0;
        state.crossing_valid = false;
        return;
    }
    if state.streak == 0 {
        // The step that left the confirmed side must pass through the segment itself.
        state.crossing_valid = geometry::segments_intersect(previous, point, a, b);
    }
    state.streak += 1;
    if state.streak < zone.inertia {
        return;
    }
    state.streak = 0;
    state.confirmed_side = Some(side);
    let ab = !confirmed && side;
    let wanted = match direction {
        LineDirection::Any => true,
        LineDirection::Ab => ab,
        LineDirection::Ba => !ab,
    };
    if std::mem::take(&mut state.crossing_valid) && wanted {
        emit(ZoneEvent { zone: z, kind: ZoneEventKind::Cross { ab }, at, track: Some(snapshot.clone()) });
    }
}
