//! The segment index: what is recorded, where, and the holes between.

use crate::wallclock::UnixMs;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Longest segment the index accepts; window queries rely on it to bound their scan.
pub const MAX_SEGMENT_MS: i64 = 2 * 3600 * 1000;

/// A segment to index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSegment {
    /// Camera id.
    pub camera: String,
    /// Path relative to the recordings directory.
    pub path: String,
    /// First frame, wall clock.
    pub start: UnixMs,
    /// End of the last frame, wall clock.
    pub end: UnixMs,
    /// File size.
    pub bytes: u64,
    /// Video codec (`h264`, `hevc`, …) when known.
    pub codec: Option<String>,
    /// Width in pixels when known.
    pub width: Option<u32>,
    /// Height in pixels when known.
    pub height: Option<u32>,
}

/// An indexed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    /// Row id.
    pub id: i64,
    /// The segment.
    pub segment: NewSegment,
}

/// A hole in a camera's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Camera id.
    pub camera: String,
    /// Last recorded instant before the hole.
    pub start: UnixMs,
    /// First recorded instant after it.
    pub end: UnixMs,
    /// Why (the camera's last error, `service stopped`, …).
    pub reason: String,
}

/// Recorded bytes and segment count of one camera.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraTotal {
    /// Camera id.
    pub camera: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segments indexed.
    pub segments: u64,
}

/// The columns `segment_row` reads, in its order.
pub const SEGMENT_COLUMNS: &str = "id, camera, path, start_ms, end_ms, bytes, codec, width, height";

/// Reads a `SEGMENT_COLUMNS` row.
pub fn segment_row(row: &Row<'_>) -> rusqlite::Result<SegmentRow> {
    Ok(SegmentRow {
        id: row.get(0)?,
        segment: NewSegment {
            camera: row.get(1)?,
            path: row.get(2)?,
            start: UnixMs(row.get(3)?),
            end: UnixMs(row.get(4)?),
            bytes: row.get::<_, i64>(5)?.max(0) as u64,
            codec: row.get(6)?,
            width: row.get(7)?,
            height: row.get(8)?,
        },
    })
}

/// A row of `camera`'s segment at `path` over `[start, end)` ms, for tests.
#[cfg(test)]
pub fn test_row(id: i64, camera: &str, path: &str, (start, end): (i64, i64)) -> SegmentRow {
    let segment = NewSegment {
        camera: camera.into(),
        path: path.into(),
        start: UnixMs(start),
        end: UnixMs(end),
        bytes: 1,
        codec: None,
        width: None,
        height: None,
    };
    SegmentRow { id, segment }
}

/// Indexes `segment` (replacing a row of the same path); refuses one longer than `MAX_SEGMENT_MS`.
pub fn insert_segment(conn: &Connection, segment: &NewSegment) -> rusqlite::Result<i64> {
    let duration = segment.end.0 - segment.start.0;
    if !(0..=MAX_SEGMENT_MS).contains(&duration) {
        return Err(rusqlite::Error::ToSqlConversionFailure(
            format!("segment {} lasts {duration} ms, outside 0..={MAX_SEGMENT_MS}", segment.path).into(),
        ));
    }
    // A row is never re-timed: a second segment under an indexed path is refused, not merged.
    conn.query_row(
        "INSERT INTO segments (camera, path, start_ms, end_ms, bytes, codec, width, height)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (path) DO NOTHING
         RETURNING id",
        params![
            segment.camera,
            segment.path,
            segment.start.0,
            segment.end.0,
            segment.bytes as i64,
            segment.codec,
            segment.width,
            segment.height
        ],
        |r| r.get(0),
    )
}

/// Rewrites the row of `segment.path` with what is on disk now: only for a file its own
/// recorder run overwrote (ffmpeg opened two segments within one second under one name).
pub fn replace_segment(conn: &Connection, segment: &NewSegment) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE segments SET start_ms = ?2, end_ms = ?3, bytes = ?4, codec = ?5, width = ?6, height = ?7
         WHERE path = ?1 AND camera = ?8",
        params![
            segment.path,
            segment.start.0,
            segment.end.0,
            segment.bytes as i64,
            segment.codec,
            segment.width,
            segment.height,
            segment.camera
        ],
    )
}

/// What the clocks said when a segment closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockStamp {
    /// The kernel's boot id.
    pub boot_id: Option<String>,
    /// `CLOCK_BOOTTIME` in ms.
    pub boot_ms: i64,
    /// The wall clock was not synchronised.
    pub unsynced: bool,
}

impl ClockStamp {
    /// The clocks now.
    pub fn now() -> Self {
        let synchronised = crate::sys::clock::synchronised();
        Self {
            boot_id: crate::sys::clock::boot_id().map(str::to_string),
            boot_ms: crate::sys::clock::read().1,
            unsynced: synchronised == Some(false),
        }
    }
}

/// Stamps the row of `path` with the clocks at its close and the recorder (`native`,
/// `ffmpeg`) that wrote it.
pub fn stamp_close(conn: &Connection, path: &str, stamp: &ClockStamp, recorder: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE segments SET boot_id = ?2, boot_ms = ?3, unsynced = ?4, recorder = ?5 WHERE path = ?1",
        params![path, stamp.boot_id, stamp.boot_ms, stamp.unsynced, recorder],
    )
}

/// Of the rows `ids`, those closed in boot `boot_id`, with their boot-clock close time (ms).
pub fn closed_in_boot(conn: &Connection, ids: &[i64], boot_id: &str) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT boot_ms FROM segments WHERE id = ?1 AND boot_id = ?2")?;
    let mut closed = Vec::new();
    for id in ids {
        if let Some(boot_ms) =
            stmt.query_row(params![id, boot_id], |r| r.get::<_, Option<i64>>(0)).optional()?.flatten()
        {
            closed.push((*id, boot_ms));
        }
    }
    Ok(closed)
}

/// Of the rows `ids`, those recorded while the wall clock was not synchronised.
pub fn unsynced_among(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM segments WHERE id = ?1 AND unsynced = 1")?;
    let mut unsynced = Vec::new();
    for id in ids {
        if stmt.exists([id])? {
            unsynced.push(*id);
        }
    }
    Ok(unsynced)
}

/// Segments of `cameras` (all when empty) overlapping `[from, to)`, by start time.
pub fn segments_overlapping(
    conn: &Connection,
    cameras: &[String],
    from: UnixMs,
    to: UnixMs,
) -> rusqlite::Result<Vec<SegmentRow>> {
    let lower = from.0.saturating_sub(MAX_SEGMENT_MS);
    let mut rows = Vec::new();
    if cameras.is_empty() {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments
             WHERE start_ms >= ?1 AND start_ms < ?2 AND end_ms > ?3 ORDER BY start_ms, camera"
        ))?;
        rows = stmt.query_map(params![lower, to.0, from.0], segment_row)?.collect::<rusqlite::Result<_>>()?;
    } else {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments
             WHERE camera = ?1 AND start_ms >= ?2 AND start_ms < ?3 AND end_ms > ?4 ORDER BY start_ms"
        ))?;
        for camera in cameras {
            for row in stmt.query_map(params![camera, lower, to.0, from.0], segment_row)? {
                rows.push(row?);
            }
        }
        rows.sort_by(|a, b| (a.segment.start, &a.segment.camera).cmp(&(b.segment.start, &b.segment.camera)));
    }
    Ok(rows)
}

/// The `limit` oldest segments across all cameras.
pub fn oldest_segments(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<SegmentRow>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {SEGMENT_COLUMNS} FROM segments ORDER BY start_ms LIMIT ?1"))?;
    let rows = stmt.query_map([limit as i64], segment_row)?;
    rows.collect()
}

/// Bytes and segment counts per camera.
pub fn camera_totals(conn: &Connection) -> rusqlite::Result<Vec<CameraTotal>> {
    let mut stmt = conn.prepare_cached("SELECT camera, bytes, segments FROM camera_totals ORDER BY camera")?;
    let rows = stmt.query_map([], |r| {
        Ok(CameraTotal {
            camera: r.get(0)?,
            bytes: r.get::<_, i64>(1)?.max(0) as u64,
            segments: r.get::<_, i64>(2)?.max(0) as u64,
        })
    })?;
    rows.collect()
}

/// End of `camera`'s latest segment.
pub fn last_segment_end(conn: &Connection, camera: &str) -> rusqlite::Result<Option<UnixMs>> {
    Ok(latest_segment(conn, camera)?.map(|row| row.segment.end))
}

/// `camera`'s latest indexed segment.
pub fn latest_segment(conn: &Connection, camera: &str) -> rusqlite::Result<Option<SegmentRow>> {
    conn.query_row(
        &format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE camera = ?1 ORDER BY start_ms DESC LIMIT 1"),
        [camera],
        segment_row,
    )
    .optional()
}

/// At most `limit` of `camera`'s segments overlapping `[from, to)`, by start time.
pub fn camera_window(
    conn: &Connection,
    camera: &str,
    from: UnixMs,
    to: UnixMs,
    limit: usize,
) -> rusqlite::Result<Vec<SegmentRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM segments
         WHERE camera = ?1 AND start_ms >= ?2 AND start_ms < ?3 AND end_ms > ?4 ORDER BY start_ms LIMIT ?5"
    ))?;
    let lower = from.0.saturating_sub(MAX_SEGMENT_MS);
    let rows = stmt.query_map(params![camera, lower, to.0, from.0, limit as i64], segment_row)?;
    rows.collect()
}

/// The segment of row `id`.
pub fn segment_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<SegmentRow>> {
    conn.query_row(&format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE id = ?1"), [id], segment_row).optional()
}

/// Every indexed path with its row id.
pub fn all_paths(conn: &Connection) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare("SELECT id, path FROM segments")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Drops the rows `ids`.
pub fn delete_segments(conn: &Connection, ids: &[i64]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached("DELETE FROM segments WHERE id = ?1")?;
    let mut deleted = 0;
    for id in ids {
        deleted += stmt.execute([id])?;
    }
    Ok(deleted)
}

/// Records a hole in `gap.camera`'s timeline.
pub fn insert_gap(conn: &Connection, gap: &Gap) -> rusqlite::Result<i64> {
    conn.query_row(
        "INSERT INTO recording_gaps (camera, start_ms, end_ms, reason) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        params![gap.camera, gap.start.0, gap.end.0, gap.reason],
        |r| r.get(0),
    )
}

/// Gaps of `camera` overlapping `[from, to)`.
pub fn gaps_overlapping(conn: &Connection, camera: &str, from: UnixMs, to: UnixMs) -> rusqlite::Result<Vec<Gap>> {
    let mut stmt = conn.prepare_cached(
        "SELECT camera, start_ms, end_ms, reason FROM recording_gaps
         WHERE camera = ?1 AND start_ms < ?2 AND end_ms > ?3 ORDER BY start_ms",
    )?;
    let rows = stmt.query_map(params![camera, to.0, from.0], |r| {
        Ok(Gap { camera: r.get(0)?, start: UnixMs(r.get(1)?), end: UnixMs(r.get(2)?), reason: r.get(3)? })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        crate::store::migrations::in_memory()
    }

    fn seg(camera: &str, start: i64, end: i64) -> NewSegment {
        NewSegment {
            camera: camera.into(),
            path: format!("{camera}/{start}.mp4"),
            start: UnixMs(start),
            end: UnixMs(end),
            bytes: 100,
            codec: Some("h264".into()),
            width: Some(640),
            height: Some(480),
        }
    }

    #[test]
    fn window_queries_find_overlaps_only() {
        let conn = conn();
        for (camera, start) in [("a", 0), ("a", 10_000), ("a", 20_000), ("b", 5_000)] {
            insert_segment(&conn, &seg(camera, start, start + 10_000)).expect("insert");
        }
        let starts = |cams: &[&str], from, to| -> Vec<(String, i64)> {
            let cams: Vec<String> = cams.iter().map(|c| c.to_string()).collect();
            segments_overlapping(&conn, &cams, UnixMs(from), UnixMs(to))
                .expect("query")
                .into_iter()
                .map(|r| (r.segment.camera, r.segment.start.0))
                .collect()
        };
        assert_eq!(starts(&["a"], 9_999, 10_001), [("a".into(), 0), ("a".into(), 10_000)]);
        assert_eq!(starts(&["a"], 10_000, 20_000), [("a".into(), 10_000)]);
        assert_eq!(starts(&[], 12_000, 13_000), [("b".into(), 5_000), ("a".into(), 10_000)]);
        assert_eq!(starts(&["b", "a"], 0, 6_000), [("a".into(), 0), ("b".into(), 5_000)]);
        assert!(starts(&["a"], 30_000, 40_000).is_empty());
    }

    #[test]
    fn totals_follow_inserts_and_deletes_and_a_row_is_never_re_timed() {
        let conn = conn();
        let first = insert_segment(&conn, &seg("a", 0, 1000)).expect("insert");
        insert_segment(&conn, &seg("a", 1000, 2000)).expect("insert");
        let mut again = seg("a", 1000, 2000);
        (again.bytes, again.start, again.end) = (500, UnixMs(5000), UnixMs(6000));
        assert!(insert_segment(&conn, &again).is_err(), "a second segment under an indexed path is refused");
        assert_eq!(
            camera_totals(&conn).expect("totals"),
            [CameraTotal { camera: "a".into(), bytes: 200, segments: 2 }]
        );
        assert_eq!(last_segment_end(&conn, "a").expect("last"), Some(UnixMs(2000)), "the row keeps its times");
        delete_segments(&conn, &[first]).expect("delete");
        assert_eq!(camera_totals(&conn).expect("totals")[0].bytes, 100);
        assert_eq!(last_segment_end(&conn, "a").expect("last"), Some(UnixMs(2000)));
        assert_eq!(oldest_segments(&conn, 10).expect("oldest").len(), 1);
    }

    #[test]
    fn refuses_absurd_durations() {
        let conn = conn();
        assert!(insert_segment(&conn, &seg("a", 0, MAX_SEGMENT_MS + 1)).is_err());
        assert!(insert_segment(&conn, &seg("a", 10, 5)).is_err());
    }

    #[test]
    fn gaps_are_recorded_and_found() {
        let conn = conn();
        let gap = Gap { camera: "a".into(), start: UnixMs(100), end: UnixMs(200), reason: "camera offline".into() };
        insert_gap(&conn, &gap).expect("gap");
        assert_eq!(gaps_overlapping(&conn, "a", UnixMs(150), UnixMs(160)).expect("query"), [gap]);
        assert!(gaps_overlapping(&conn, "a", UnixMs(200), UnixMs(300)).expect("query").is_empty());
    }
}
