//! Evidence locks in the index: footage retention must keep.

use crate::wallclock::UnixMs;
use rusqlite::{Connection, params};

/// A lock to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLock {
    /// Camera.
    pub camera: String,
    /// Start of the locked footage.
    pub from: UnixMs,
    /// End of the locked footage.
    pub to: UnixMs,
    /// The event that caused it.
    pub event_id: Option<String>,
    /// Why, for people.
    pub reason: String,
}

/// Records a lock; returns its id.
pub fn insert_lock(conn: &Connection, lock: &NewLock, now: UnixMs) -> rusqlite::Result<i64> {
    conn.query_row(
        "INSERT INTO evidence_locks (camera, from_ms, to_ms, event_id, reason, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![lock.camera, lock.from.0, lock.to.0.max(lock.from.0), lock.event_id, lock.reason, now.0],
        |r| r.get(0),
    )
}

/// Moves the end of lock `id` to `to` if that is later.
pub fn extend_lock(conn: &Connection, id: i64, to: UnixMs) -> rusqlite::Result<usize> {
    conn.execute("UPDATE evidence_locks SET to_ms = ?2 WHERE id = ?1 AND to_ms < ?2", params![id, to.0])
}

/// Locks of `camera` overlapping `[from, to)`.
pub fn locks_overlapping(
    conn: &Connection,
    camera: &str,
    from: UnixMs,
    to: UnixMs,
) -> rusqlite::Result<Vec<(i64, NewLock)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, camera, from_ms, to_ms, event_id, reason FROM evidence_locks
         WHERE camera = ?1 AND to_ms > ?2 AND from_ms < ?3 ORDER BY from_ms",
    )?;
    let rows = stmt.query_map(params![camera, from.0, to.0], |r| {
        Ok((
            r.get(0)?,
            NewLock {
                camera: r.get(1)?,
                from: UnixMs(r.get(2)?),
                to: UnixMs(r.get(3)?),
                event_id: r.get(4)?,
                reason: r.get(5)?,
            },
        ))
    })?;
    rows.collect()
}

/// Which locks to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The lock with this id.
    Id(i64),
    /// The locks of these cameras lying entirely inside `[from, to]`.
    Within {
        /// Cameras.
        cameras: Vec<String>,
        /// Window start.
        from: UnixMs,
        /// Window end.
        to: UnixMs,
    },
}

/// Removes the selected locks; returns their ids.
pub fn remove_locks(conn: &Connection, selection: &Selection) -> rusqlite::Result<Vec<i64>> {
    let mut removed = Vec::new();
    match selection {
        Selection::Id(id) => {
            let mut stmt = conn.prepare_cached("DELETE FROM evidence_locks WHERE id = ?1 RETURNING id")?;
            removed.extend(stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?);
        }
        Selection::Within { cameras, from, to } => {
            let mut stmt = conn.prepare_cached(
                "DELETE FROM evidence_locks WHERE camera = ?1 AND from_ms >= ?2 AND to_ms <= ?3 RETURNING id",
            )?;
            for camera in cameras {
                let ids = stmt.query_map(params![camera, from.0, to.0], |r| r.get(0))?;
                removed.extend(ids.collect::<rusqlite::Result<Vec<i64>>>()?);
            }
        }
    }
    removed.sort_unstable();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_found_by_overlap_and_only_extended_forward() {
        let conn = crate::store::migrations::in_memory();
        let lock = NewLock {
            camera: "a".into(),
            from: UnixMs(1000),
            to: UnixMs(5000),
            event_id: Some("e1".into()),
            reason: "zone_enter".into(),
        };
        let id = insert_lock(&conn, &lock, UnixMs(0)).expect("insert");
        assert_eq!(locks_overlapping(&conn, "a", UnixMs(4000), UnixMs(6000)).expect("q").len(), 1);
        assert!(locks_overlapping(&conn, "a", UnixMs(5000), UnixMs(6000)).expect("q").is_empty());
        assert!(locks_overlapping(&conn, "b", UnixMs(0), UnixMs(9000)).expect("q").is_empty());
        assert_eq!(extend_lock(&conn, id, UnixMs(9000)).expect("extend"), 1);
        assert_eq!(extend_lock(&conn, id, UnixMs(7000)).expect("no shrink"), 0);
        let (_, found) = locks_overlapping(&conn, "a", UnixMs(8000), UnixMs(8500)).expect("q").remove(0);
        assert_eq!(found.to, UnixMs(9000));
        assert_eq!(found.event_id.as_deref(), Some("e1"));
    }

    #[test]
    fn locks_are_removed_by_id_or_when_inside_a_window() {
        let conn = crate::store::migrations::in_memory();
        let lock = |camera: &str, from, to| {
            let lock = NewLock {
                camera: camera.into(),
                from: UnixMs(from),
                to: UnixMs(to),
                event_id: None,
                reason: "r".into(),
            };
            insert_lock(&conn, &lock, UnixMs(0)).expect("insert")
        };
        let (a1, a2, b1, a3) = (lock("a", 100, 200), lock("a", 150, 400), lock("b", 100, 200), lock("a", 500, 600));
        let within = |cameras: &[&str]| Selection::Within {
            cameras: cameras.iter().map(|c| c.to_string()).collect(),
            from: UnixMs(100),
            to: UnixMs(300),
        };
        assert_eq!(remove_locks(&conn, &within(&["a"])), Ok(vec![a1]), "a2 reaches past the window");
        assert_eq!(remove_locks(&conn, &within(&["a", "b"])), Ok(vec![b1]));
        assert_eq!(remove_locks(&conn, &Selection::Id(a3)), Ok(vec![a3]));
        assert_eq!(remove_locks(&conn, &Selection::Id(a3)), Ok(vec![]));
        assert_eq!(locks_overlapping(&conn, "a", UnixMs(0), UnixMs(1000)).expect("q").len(), 1);
        let _ = a2;
    }
}
