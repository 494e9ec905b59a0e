//! Which segments a policy's job copies: in the window, of its cameras,
//! locked if it asks so, and not yet held by the destination.

use crate::config::schema::PolicyConfig;
use crate::wallclock::UnixMs;
use rusqlite::{Connection, params};

/// Segments fetched per query.
pub const PAGE: usize = 256;

/// A segment to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToCopy {
    /// Row id (read-locked while copied).
    pub id: i64,
    /// Path relative to the recordings directory, also the path at the destination.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Start, for pagination.
    pub start_ms: i64,
}

/// The selection a policy makes at `now`.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Destination id (manifest key).
    pub destination: String,
    /// Cameras; empty = all.
    pub cameras: Vec<String>,
    /// Footage ending after this.
    pub from: UnixMs,
    /// Footage starting before this.
    pub to: UnixMs,
    /// Only evidence-locked footage.
    pub only_locked: bool,
}

impl Selection {
    /// What `policy` selects at `now` (`lookback_s = 0`: everything not yet copied).
    pub fn of(policy: &PolicyConfig, now: UnixMs) -> Self {
        let from =
            if policy.lookback_s == 0 { UnixMs(i64::MIN / 2) } else { UnixMs(now.0 - policy.lookback_s as i64 * 1000) };
        Self {
            destination: policy.destination.clone(),
            cameras: policy.cameras.clone(),
            from,
            to: now,
            only_locked: policy.only_locked,
        }
    }
}

const FILTER: &str = "s.end_ms > ?1 AND s.start_ms < ?2
    AND (?3 = '[]' OR s.camera IN (SELECT value FROM json_each(?3)))
    AND NOT EXISTS (SELECT 1 FROM backup_manifest m WHERE m.destination = ?4 AND m.path = s.path AND m.bytes = s.bytes)
    AND (?5 = 0 OR EXISTS (SELECT 1 FROM evidence_locks l
         WHERE l.camera = s.camera AND l.from_ms < s.end_ms AND l.to_ms > s.start_ms))";

fn cameras_json(cameras: &[String]) -> String {
    serde_json::Value::from(cameras.to_vec()).to_string()
}

/// Files and bytes the selection still has to copy.
pub fn totals(conn: &Connection, sel: &Selection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        &format!("SELECT count(*), coalesce(sum(s.bytes), 0) FROM segments s WHERE {FILTER}"),
        params![sel.from.0, sel.to.0, cameras_json(&sel.cameras), sel.destination, sel.only_locked],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// The next page of segments to copy after `(start_ms, id)`, oldest first.
pub fn page(conn: &Connection, sel: &Selection, after: (i64, i64)) -> rusqlite::Result<Vec<ToCopy>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, s.path, s.bytes, s.start_ms FROM segments s WHERE {FILTER}
         AND (s.start_ms, s.id) > (?6, ?7) ORDER BY s.start_ms, s.id LIMIT ?8"
    ))?;
    let rows = stmt.query_map(
        params![
            sel.from.0,
            sel.to.0,
            cameras_json(&sel.cameras),
            sel.destination,
            sel.only_locked,
            after.0,
            after.1,
            PAGE as i64
        ],
        |r| Ok(ToCopy { id: r.get(0)?, path: r.get(1)?, bytes: r.get::<_, i64>(2)? as u64, start_ms: r.get(3)? }),
    )?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::index::record_copy;
    use crate::recording::index::{NewSegment, insert_segment};
    use crate::recording::locks::{NewLock, insert_lock};

    fn conn() -> Connection {
        let conn = crate::store::migrations::in_memory();
        for (camera, start) in [("a", 0), ("a", 10_000), ("b", 5_000), ("a", 100_000)] {
            let segment = NewSegment {
                camera: camera.into(),
                path: format!("{camera}/d/{start}.mp4"),
                start: UnixMs(start),
                end: UnixMs(start + 10_000),
                bytes: 10,
                codec: None,
                width: None,
                height: None,
            };
            insert_segment(&conn, &segment).expect("insert");
        }
        conn
    }

    fn sel(cameras: &[&str], from: i64, only_locked: bool) -> Selection {
        Selection {
            destination: "usb".into(),
            cameras: cameras.iter().map(|c| c.to_string()).collect(),
            from: UnixMs(from),
            to: UnixMs(200_000),
            only_locked,
        }
    }

    fn paths(conn: &Connection, sel: &Selection) -> Vec<String> {
        page(conn, sel, (i64::MIN, i64::MIN)).expect("page").into_iter().map(|c| c.path).collect()
    }

    #[test]
    fn window_cameras_manifest_and_locks_filter_the_selection() {
        let conn = conn();
        assert_eq!(paths(&conn, &sel(&[], i64::MIN / 2, false)).len(), 4);
        assert_eq!(paths(&conn, &sel(&["b"], i64::MIN / 2, false)), ["b/d/5000.mp4"]);
        assert_eq!(paths(&conn, &sel(&[], 50_000, false)), ["a/d/100000.mp4"]);
        record_copy(&conn, "usb", "a/d/0.mp4", 10, None, UnixMs(1)).expect("manifest");
        record_copy(&conn, "nas", "a/d/10000.mp4", 10, None, UnixMs(1)).expect("other destination");
        assert_eq!(paths(&conn, &sel(&["a"], i64::MIN / 2, false)), ["a/d/10000.mp4", "a/d/100000.mp4"]);
        assert_eq!(totals(&conn, &sel(&[], i64::MIN / 2, false)).expect("totals"), (3, 30));
        let lock = NewLock {
            camera: "a".into(),
            from: UnixMs(12_000),
            to: UnixMs(13_000),
            event_id: None,
            reason: "t".into(),
        };
        insert_lock(&conn, &lock, UnixMs(0)).expect("lock");
        assert_eq!(paths(&conn, &sel(&[], i64::MIN / 2, true)), ["a/d/10000.mp4"]);
    }
}
