//! Deleting segments through the `garbage` table (Moonfire's rule): rows leave
//! `segments` for `garbage` in one transaction, the files are unlinked and their
//! directories synced, then the garbage rows go. The index never points at a file
//! that is gone; a crash between the steps leaves garbage rows that the next
//! collection (at start-up, before every sweep) finishes.

use super::layout;
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::Result;
use rusqlite::{Connection, params};
use std::collections::BTreeSet;
use std::path::Path;

/// Garbage rows handled per store job.
const PAGE: usize = 500;

/// A segment whose row moved to `garbage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doomed {
    /// Its former row id.
    pub id: i64,
    /// Path relative to the recordings directory.
    pub path: String,
    /// Its size as indexed.
    pub bytes: u64,
}

/// Moves the rows `ids` from `segments` to `garbage`; returns those that were there.
pub fn move_to_garbage(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<Doomed>> {
    let mut take = conn.prepare_cached("DELETE FROM segments WHERE id = ?1 RETURNING path, camera, bytes")?;
    let mut keep = conn.prepare_cached("INSERT OR IGNORE INTO garbage (path, camera) VALUES (?1, ?2)")?;
    let mut moved = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<(String, String, i64)> =
            take.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map(Some).or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let Some((path, camera, bytes)) = row else { continue };
        keep.execute(params![path, camera])?;
        moved.push(Doomed { id: *id, path, bytes: bytes.max(0) as u64 });
    }
    Ok(moved)
}

/// Drops the garbage rows of `paths`: their files are gone and the directories synced.
pub fn drop_garbage(conn: &Connection, paths: &[String]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached("DELETE FROM garbage WHERE path = ?1")?;
    let mut dropped = 0;
    for path in paths {
        dropped += stmt.execute([path])?;
    }
    Ok(dropped)
}

/// Up to `PAGE` garbage paths.
fn garbage_page(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT path FROM garbage ORDER BY path LIMIT ?1")?;
    let rows = stmt.query_map([PAGE as i64], |r| r.get(0))?;
    rows.collect()
}

/// Whether `path` is garbage (a file reconciliation must not index again).
pub fn is_garbage(conn: &Connection, path: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM garbage WHERE path = ?1)", [path], |r| r.get(0))
}

/// Unlinks the files of `paths` (blocking), syncs each directory they were in, and removes
/// day directories left empty that are older than `today` (today's and tomorrow's are where
/// ffmpeg writes next). Returns the paths whose file is gone for good.
pub fn unlink_and_sync(recordings_dir: &Path, paths: &[String], now: UnixMs) -> Vec<String> {
    let today = layout::day_dir("", now);
    let mut gone = Vec::with_capacity(paths.len());
    let mut dirs = BTreeSet::new();
    for path in paths {
        let file = recordings_dir.join(path);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "segment not deleted: kept as garbage, tried again later");
                continue;
            }
        }
        if let Some(day) = Path::new(path).parent() {
            dirs.insert(day.to_path_buf());
        }
        gone.push(path.clone());
    }
    let mut synced = true;
    for day in &dirs {
        let full = recordings_dir.join(day);
        let old = day.file_name().is_some_and(|name| format!("/{}", name.to_string_lossy()) < today);
        let removed = old && std::fs::remove_dir(&full).is_ok();
        // The directory entry is the deletion: sync it (or, when it went, its parent) so a
        // power cut cannot bring the file back after its garbage row is dropped.
        let sync = if removed { full.parent().map(Path::to_path_buf) } else { Some(full.clone()) };
        if let Some(dir) = sync
            && let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(dir = %dir.display(), error = %e, "directory not synced after deletions");
            synced = false;
        }
    }
    if synced { gone } else { Vec::new() }
}

/// Finishes deletions a crash or an unlink error left in `garbage`; returns the files removed.
pub async fn collect(store: &Store, recordings_dir: &Path) -> Result<usize> {
    let mut collected = 0;
    loop {
        let paths = store.call(garbage_page).await?;
        if paths.is_empty() {
            return Ok(collected);
        }
        let dir = recordings_dir.to_path_buf();
        let page = paths.clone();
        let gone = tokio::task::spawn_blocking(move || unlink_and_sync(&dir, &page, UnixMs::now())).await?;
        let finished = gone.len();
        collected += store.call(move |conn| drop_garbage(conn, &gone)).await?;
        if finished < paths.len() {
            // Some could not be removed now (read-only, permissions): the next collection retries.
            tracing::warn!(left = paths.len() - finished, "segment files left as garbage");
            return Ok(collected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        crate::store::migrations::in_memory()
    }

    #[test]
    fn rows_move_to_garbage_in_one_step_and_leave_it_when_the_file_is_gone() {
        let conn = conn();
        conn.execute(
            "INSERT INTO segments (id, camera, path, start_ms, end_ms, bytes) VALUES (1, 'a', 'a/d/1.mp4', 0, 1, 10)",
            [],
        )
        .expect("insert");
        let moved = move_to_garbage(&conn, &[1, 2]).expect("move");
        assert_eq!(moved, [Doomed { id: 1, path: "a/d/1.mp4".into(), bytes: 10 }], "the missing id 2 is skipped");
        assert!(is_garbage(&conn, "a/d/1.mp4").expect("query"));
        let left: i64 = conn.query_row("SELECT count(*) FROM segments", [], |r| r.get(0)).expect("count");
        assert_eq!(left, 0);
        assert_eq!(drop_garbage(&conn, &["a/d/1.mp4".into()]).expect("drop"), 1);
        assert!(!is_garbage(&conn, "a/d/1.mp4").expect("query"));
    }

    #[test]
    fn unlinking_keeps_today_and_removes_old_empty_days() {
        let dir = std::env::temp_dir().join(format!("heldar-garbage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = UnixMs(86_400_000 * 3 + 5);
        let (old, today) = (layout::day_dir("a", UnixMs(0)), layout::day_dir("a", now));
        for day in [&old, &today] {
            std::fs::create_dir_all(dir.join(day)).expect("dir");
            std::fs::write(dir.join(format!("{day}/1.mp4")), b"x").expect("file");
        }
        let paths = vec![format!("{old}/1.mp4"), format!("{today}/1.mp4"), format!("{old}/missing.mp4")];
        let gone = unlink_and_sync(&dir, &paths, now);
        assert_eq!(gone, paths, "a file already missing counts as gone");
        assert!(!dir.join(&old).exists(), "an old empty day goes");
        assert!(dir.join(&today).is_dir(), "today's stays for ffmpeg");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
