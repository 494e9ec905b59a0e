//! Backup jobs and per-destination manifests in the index.

use crate::wallclock::UnixMs;
use rusqlite::{Connection, OptionalExtension, params};

/// Starts a job; returns its id.
pub fn start_job(conn: &Connection, policy: &str, destination: &str, now: UnixMs) -> rusqlite::Result<i64> {
    conn.query_row(
        "INSERT INTO backup_jobs (policy, destination, status, started_ms) VALUES (?1, ?2, 'running', ?3) RETURNING id",
        params![policy, destination, now.0],
        |r| r.get(0),
    )
}

/// Records a job's totals and progress.
pub fn progress(conn: &Connection, id: i64, totals: (u64, u64), done: (u64, u64)) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE backup_jobs SET files_total = ?2, bytes_total = ?3, files_done = ?4, bytes_done = ?5 WHERE id = ?1",
        params![id, totals.0 as i64, totals.1 as i64, done.0 as i64, done.1 as i64],
    )
}

/// Ends a job as `done` or `failed`.
pub fn finish_job(conn: &Connection, id: i64, error: Option<&str>, now: UnixMs) -> rusqlite::Result<usize> {
    let status = if error.is_some() { "failed" } else { "done" };
    conn.execute(
        "UPDATE backup_jobs SET status = ?2, error = ?3, ended_ms = ?4 WHERE id = ?1",
        params![id, status, error, now.0],
    )
}

/// Marks jobs left `running` by a crash as `interrupted`; returns how many.
pub fn interrupt_running(conn: &Connection, now: UnixMs) -> rusqlite::Result<usize> {
    conn.execute("UPDATE backup_jobs SET status = 'interrupted', ended_ms = ?1 WHERE status = 'running'", [now.0])
}

/// Records that `destination` holds `path` (copied and verified).
pub fn record_copy(
    conn: &Connection,
    destination: &str,
    path: &str,
    bytes: u64,
    sha256: Option<&str>,
    now: UnixMs,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO backup_manifest (destination, path, bytes, sha256, copied_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (destination, path) DO UPDATE SET bytes = excluded.bytes, sha256 = excluded.sha256, copied_ms = excluded.copied_ms",
        params![destination, path, bytes as i64, sha256, now.0],
    )
}

/// Of `paths` (with sizes), those `destination` does not hold yet at that size.
pub fn missing(conn: &Connection, destination: &str, paths: &[(String, u64)]) -> rusqlite::Result<Vec<bool>> {
    let mut stmt = conn.prepare_cached("SELECT bytes FROM backup_manifest WHERE destination = ?1 AND path = ?2")?;
    paths
        .iter()
        .map(|(path, bytes)| {
            let held: Option<i64> = stmt.query_row(params![destination, path], |r| r.get(0)).optional()?;
            Ok(held != Some(*bytes as i64))
        })
        .collect()
}
