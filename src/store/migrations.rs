//! Schema migrations: `migrations/NNNN_name.sql`, compiled in, applied in
//! order and tracked by `PRAGMA user_version`.

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

/// Every migration, in order; `user_version` is the count applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_outbox", include_str!("../../migrations/0001_outbox.sql")),
    ("0002_segments", include_str!("../../migrations/0002_segments.sql")),
    ("0003_locks", include_str!("../../migrations/0003_locks.sql")),
    ("0004_backup", include_str!("../../migrations/0004_backup.sql")),
    ("0005_commands", include_str!("../../migrations/0005_commands.sql")),
    ("0006_nonces_by_key", include_str!("../../migrations/0006_nonces_by_key.sql")),
    ("0007_garbage", include_str!("../../migrations/0007_garbage.sql")),
    ("0008_segment_clock", include_str!("../../migrations/0008_segment_clock.sql")),
    ("0009_ha_advertised", include_str!("../../migrations/0009_ha_advertised.sql")),
    ("0010_snapshots", include_str!("../../migrations/0010_snapshots.sql")),
    ("0011_segment_recorder", include_str!("../../migrations/0011_segment_recorder.sql")),
];

/// Applies the migrations `conn` lacks; refuses a database from a newer binary.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .context("reading the schema version")?
        .try_into()
        .unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        bail!(
            "the index is at schema version {version}, this binary knows up to {}: it was written by a newer heldar-edge",
            MIGRATIONS.len()
        );
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).with_context(|| format!("applying migration {name}"))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(migration = name, "index schema migrated");
    }
    Ok(())
}

/// A migrated in-memory index, for unit tests.
#[cfg(test)]
pub fn in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("open");
    migrate(&mut conn).expect("migrate");
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| format!("{n}.sql")).collect();
        assert_eq!(files, listed);
        for (i, name) in files.iter().enumerate() {
            assert!(name.starts_with(&format!("{:04}_", i + 1)), "{name} out of sequence");
        }
    }

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("first");
        migrate(&mut conn).expect("idempotent");
        let count: i64 = conn.query_row("SELECT count(*) FROM node_state", [], |r| r.get(0)).expect("query");
        assert_eq!(count, 2);
        conn.pragma_update(None, "user_version", 999).expect("bump");
        let err = migrate(&mut conn).expect_err("newer");
        assert!(err.to_string().contains("newer heldar-edge"), "{err}");
    }
}
