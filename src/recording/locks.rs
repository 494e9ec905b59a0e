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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_found_by_overlap_and_only_extended_forward() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::store::migrations::migrate(&mut conn).expect("migrate");
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
}
