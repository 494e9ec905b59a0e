//! Backup jobs and per-destination manifests in the index.

use crate::wallclock::UnixMs;
use rusqlite::{Connection, OptionalExtension, params};

/// A job's row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobRow {
    /// Job id.
    pub id: i64,
    /// Policy id.
    pub policy: String,
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: String,
    /// Files to copy.
    pub files_total: u64,
    /// Files copied.
    pub files_done: u64,
    /// Bytes to copy.
    pub bytes_total: u64,
    /// Bytes copied.
    pub bytes_done: u64,
    /// Why it failed.
    pub error: Option<String>,
}

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

/// A job by id.
pub fn job(conn: &Connection, id: i64) -> rusqlite::Result<Option<JobRow>> {
    conn.query_row(
        "SELECT id, policy, status, files_total, files_done, bytes_total, bytes_done, error FROM backup_jobs WHERE id = ?1",
        [id],
        |r| {
            Ok(JobRow {
                id: r.get(0)?,
                policy: r.get(1)?,
                status: r.get(2)?,
                files_total: r.get::<_, i64>(3)? as u64,
                files_done: r.get::<_, i64>(4)? as u64,
                bytes_total: r.get::<_, i64>(5)? as u64,
                bytes_done: r.get::<_, i64>(6)? as u64,
                error: r.get(7)?,
            })
        },
    )
    .optional()
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
