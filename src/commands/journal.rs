//! What commands leave in the index: used nonces and the audit trail, both bounded.

use crate::wallclock::UnixMs;
use rusqlite::{Connection, OptionalExtension, params};

/// Nonces older than this (by their request's `ts`) can no longer be replayed: the
/// window refuses them as stale first. Kept with margin for a clock stepped back.
const NONCE_KEEP_MS: i64 = 10 * 60_000;
/// Nonces remembered at most; beyond, signed requests are `busy` until old ones expire.
pub const NONCES_MAX: i64 = 100_000;
/// Audit rows kept; the oldest go first.
pub const AUDIT_KEEP: i64 = 10_000;

/// What remembering a nonce found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nonce {
    /// First use: recorded.
    New,
    /// Seen before.
    Replayed,
    /// The table is at its limit.
    Full,
}

/// Records `nonce` of `key` sent at `ts`, unless it was used before.
pub fn remember_nonce(conn: &Connection, key: &str, nonce: &str, ts: UnixMs, now: UnixMs) -> rusqlite::Result<Nonce> {
    conn.execute("DELETE FROM command_nonces WHERE ts_ms < ?1", [now.0 - NONCE_KEEP_MS])?;
    let seen: Option<i64> = conn
        .query_row("SELECT 1 FROM command_nonces WHERE key = ?1 AND nonce = ?2", params![key, nonce], |r| r.get(0))
        .optional()?;
    if seen.is_some() {
        return Ok(Nonce::Replayed);
    }
    let count: i64 = conn.query_row("SELECT count(*) FROM command_nonces", [], |r| r.get(0))?;
    if count >= NONCES_MAX {
        return Ok(Nonce::Full);
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
        let mut conn = Connection::open_in_memory().expect("open");
        crate::store::migrations::migrate(&mut conn).expect("migrate");
        conn
    }

    #[test]
    fn a_nonce_is_accepted_once_per_key_and_forgotten_when_old() {
        let conn = db();
        let (ts, now) = (UnixMs(1_000_000), UnixMs(1_000_500));
        assert_eq!(remember_nonce(&conn, "ops", "n-000001", ts, now), Ok(Nonce::New));
        assert_eq!(remember_nonce(&conn, "ops", "n-000001", ts, now), Ok(Nonce::Replayed));
        assert_eq!(remember_nonce(&conn, "other", "n-000001", ts, now), Ok(Nonce::New));
        let later = UnixMs(ts.0 + NONCE_KEEP_MS + 1);
        assert_eq!(remember_nonce(&conn, "ops", "n-000002", later, later), Ok(Nonce::New));
        let left: i64 = conn.query_row("SELECT count(*) FROM command_nonces", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 1, "the old nonces are pruned");
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
