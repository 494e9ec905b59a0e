//! What commands leave in the index: used nonces and the audit trail, both bounded.

use crate::wallclock::UnixMs;
use rusqlite::{Connection, OptionalExtension, params};

/// Nonces remembered per key. The newest are kept by their request's `ts`, whatever the
/// clock does; once a key has this many, a request older than all of them is refused, so a
/// forgotten nonce can never be replayed.
pub const NONCES_PER_KEY: i64 = 10_000;
/// Audit rows kept; the oldest go first.
pub const AUDIT_KEEP: i64 = 10_000;

/// What remembering a nonce found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nonce {
    /// First use: recorded.
    New,
    /// Seen before.
    Replayed,
    /// Older than every nonce remembered for its key, some of which were forgotten: it might
    /// be one of those.
    TooOld,
}

/// Records `nonce` of `key` sent at `ts`, unless it was used before (or may have been).
pub fn remember_nonce(conn: &Connection, key: &str, nonce: &str, ts: UnixMs) -> rusqlite::Result<Nonce> {
    let seen: Option<i64> = conn
        .query_row("SELECT 1 FROM command_nonces WHERE key = ?1 AND nonce = ?2", params![key, nonce], |r| r.get(0))
        .optional()?;
    if seen.is_some() {
        return Ok(Nonce::Replayed);
    }
    let count: i64 = conn.query_row("SELECT count(*) FROM command_nonces WHERE key = ?1", [key], |r| r.get(0))?;
    if count >= NONCES_PER_KEY {
        let (oldest_nonce, oldest_ts): (String, i64) = conn.query_row(
            "SELECT nonce, ts_ms FROM command_nonces WHERE key = ?1 ORDER BY ts_ms, nonce LIMIT 1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if ts.0 <= oldest_ts {
            return Ok(Nonce::TooOld);
        }
        conn.execute("DELETE FROM command_nonces WHERE key = ?1 AND nonce = ?2", params![key, oldest_nonce])?;
    }
    conn.execute("INSERT INTO command_nonces (key, nonce, ts_ms) VALUES (?1, ?2, ?3)", params![key, nonce, ts.0])?;
    Ok(Nonce::New)
}

/// One accepted command that changed something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When it ran.
    pub ts: UnixMs,
    /// The key that signed it.
    pub key: Option<String>,
    /// Command name.
    pub command: String,
    /// Request id.
    pub request_id: String,
    /// Hex SHA-256 of `args` as sent.
    pub args_sha256: String,
    /// `Ok` or the error code and message.
    pub result: Result<(), String>,
}

/// Appends `entry` to the audit trail, dropping the oldest rows beyond `AUDIT_KEEP`.
pub fn audit(conn: &Connection, entry: &AuditEntry) -> rusqlite::Result<()> {
    let (ok, result) = match &entry.result {
        Ok(()) => (true, "ok".to_string()),
        Err(e) => (false, e.clone()),
    };
    let id: i64 = conn.query_row(
        "INSERT INTO command_audit (ts_ms, key, command, request_id, args_sha256, ok, result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        params![entry.ts.0, entry.key, entry.command, entry.request_id, entry.args_sha256, ok, result],
        |r| r.get(0),
    )?;
    conn.execute("DELETE FROM command_audit WHERE id <= ?1", [id - AUDIT_KEEP])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        crate::store::migrations::in_memory()
    }

    #[test]
    fn a_nonce_is_accepted_once_per_key_whatever_its_age() {
        let conn = db();
        let ts = UnixMs(1_000_000);
        assert_eq!(remember_nonce(&conn, "ops", "n-000001", ts), Ok(Nonce::New));
        assert_eq!(remember_nonce(&conn, "ops", "n-000001", ts), Ok(Nonce::Replayed));
        assert_eq!(remember_nonce(&conn, "other", "n-000001", ts), Ok(Nonce::New));
        // A day later by any clock: still remembered (time never prunes).
        let later = UnixMs(ts.0 + 86_400_000);
        assert_eq!(remember_nonce(&conn, "ops", "n-000002", later), Ok(Nonce::New));
        assert_eq!(remember_nonce(&conn, "ops", "n-000001", ts), Ok(Nonce::Replayed));
    }

    #[test]
    fn a_full_key_forgets_its_oldest_and_refuses_anything_older() {
        let conn = db();
        for i in 0..NONCES_PER_KEY {
            assert_eq!(remember_nonce(&conn, "ops", &format!("n-{i:06}"), UnixMs(1_000 + i)), Ok(Nonce::New));
        }
        let newer = UnixMs(1_000 + NONCES_PER_KEY);
        assert_eq!(remember_nonce(&conn, "ops", "n-newest", newer), Ok(Nonce::New), "the oldest makes room");
        assert_eq!(remember_nonce(&conn, "ops", "n-000000", UnixMs(1_000)), Ok(Nonce::TooOld), "forgotten, refused");
        assert_eq!(remember_nonce(&conn, "ops", "n-000001", UnixMs(1_001)), Ok(Nonce::Replayed));
        assert_eq!(remember_nonce(&conn, "other", "n-000000", UnixMs(0)), Ok(Nonce::New), "per key");
        let count: i64 =
            conn.query_row("SELECT count(*) FROM command_nonces WHERE key = 'ops'", [], |r| r.get(0)).unwrap();
        assert_eq!(count, NONCES_PER_KEY);
    }

    #[test]
    fn the_audit_trail_keeps_the_newest_rows() {
        let conn = db();
        for i in 0..(AUDIT_KEEP + 5) {
            let entry = AuditEntry {
                ts: UnixMs(i),
                key: Some("ops".into()),
                command: "lock".into(),
                request_id: format!("r{i}"),
                args_sha256: "00".into(),
                result: if i % 2 == 0 { Ok(()) } else { Err("not_found: no camera".into()) },
            };
            audit(&conn, &entry).expect("audit");
        }
        let (count, oldest): (i64, String) = conn
            .query_row("SELECT count(*), min(request_id) FROM command_audit WHERE ts_ms < 10", [], |r| {
                Ok((r.get(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default()))
            })
            .unwrap();
        assert_eq!((count, oldest.as_str()), (5, "r5"));
        let total: i64 = conn.query_row("SELECT count(*) FROM command_audit", [], |r| r.get(0)).unwrap();
        assert_eq!(total, AUDIT_KEEP);
    }
}
