//! The durable outbox: every event is written to the index with the next
//! node-wide `seq` before it is published, and marked sent only when the
//! broker acknowledged it. The MQTT session drains it in `seq` order.

pub mod event;

pub use event::{EventType, NODE_LEVEL, NewEvent, Severity};

use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use tokio::sync::Notify;

/// An event as stored: its assigned identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Node-wide sequence number.
    pub seq: i64,
    /// Unique id.
    pub id: String,
}

/// An unsent outbox row, ready to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    /// Node-wide sequence number.
    pub seq: i64,
    /// Topic level: camera id or `_node`.
    pub camera: String,
    /// Event type string.
    pub kind: String,
    /// JSON payload.
    pub payload: String,
}

/// Depth and loss counters of the outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Events not yet acknowledged by the broker.
    pub unsent: i64,
    /// Events dropped unsent because more than `outbox_max` were waiting.
    pub dropped: i64,
    /// The last `seq` assigned.
    pub last_seq: i64,
}

/// Writes `event` with the next `seq`; keeps at most `outbox_max` events in the table,
/// dropping (and counting) the oldest unsent ones beyond that.
pub fn insert_event(
    conn: &Connection,
    event: &NewEvent,
    id_prefix: u64,
    outbox_max: u64,
    now: UnixMs,
) -> rusqlite::Result<StoredEvent> {
    let seq: i64 =
        conn.query_row("UPDATE node_state SET value = value + 1 WHERE key = 'event_seq' RETURNING value", [], |r| {
            r.get(0)
        })?;
    let id = format!("{id_prefix:016x}{seq:016x}");
    conn.execute(
        "INSERT INTO outbox (seq, id, camera, type, payload, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![seq, id, event.topic_level(), event.kind.as_str(), event.payload(&id, seq), now.0],
    )?;
    let horizon = seq - i64::try_from(outbox_max).unwrap_or(i64::MAX);
    if horizon > 0 {
        let dropped = conn.execute("DELETE FROM outbox WHERE sent_ms IS NULL AND seq <= ?1", [horizon])?;
        if dropped > 0 {
            conn.execute("UPDATE node_state SET value = value + ?1 WHERE key = 'outbox_dropped'", [dropped as i64])?;
            tracing::warn!(dropped, outbox_max, "outbox full: oldest unsent events dropped");
        }
        conn.execute("DELETE FROM outbox WHERE seq <= ?1", [horizon])?;
    }
    Ok(StoredEvent { seq, id })
}

/// Which past events to read: `cameras` (topic levels; `None` for all), a type, a window of
/// `created_ms`.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Topic levels (camera ids, `_node`) to read; `None` for all.
    pub cameras: Option<Vec<String>>,
    /// Event type, or all.
    pub kind: Option<String>,
    /// Window start (inclusive).
    pub from: UnixMs,
    /// Window end (exclusive).
    pub to: UnixMs,
    /// Most rows returned.
    pub limit: usize,
}

/// The kept events `query` names, newest first: the outbox keeps the last `outbox_max`.
pub fn history(conn: &Connection, query: &HistoryQuery) -> rusqlite::Result<Vec<OutboxRow>> {
    let cameras = query.cameras.as_ref().map(|c| serde_json::Value::from(c.clone()).to_string());
    let mut stmt = conn.prepare_cached(
        "SELECT seq, camera, type, payload FROM outbox
         WHERE created_ms >= ?1 AND created_ms < ?2
           AND (?3 IS NULL OR camera IN (SELECT value FROM json_each(?3)))
           AND (?4 IS NULL OR type = ?4)
         ORDER BY seq DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(params![query.from.0, query.to.0, cameras, query.kind, query.limit as i64], |r| {
        Ok(OutboxRow { seq: r.get(0)?, camera: r.get(1)?, kind: r.get(2)?, payload: r.get(3)? })
    })?;
    rows.collect()
}

/// Up to `limit` unsent rows with `seq > after`, in `seq` order.
pub fn fetch_unsent(conn: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, camera, type, payload FROM outbox WHERE sent_ms IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        Ok(OutboxRow { seq: r.get(0)?, camera: r.get(1)?, kind: r.get(2)?, payload: r.get(3)? })
    })?;
    rows.collect()
}

/// Marks `seqs` acknowledged at `now`; returns how many were still unsent.
pub fn mark_sent(conn: &Connection, seqs: &[i64], now: UnixMs) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached("UPDATE outbox SET sent_ms = ?1 WHERE seq = ?2 AND sent_ms IS NULL")?;
    let mut changed = 0;
    for seq in seqs {
        changed += stmt.execute(params![now.0, seq])?;
    }
    Ok(changed)
}

/// Current depth and counters.
pub fn counts(conn: &Connection) -> rusqlite::Result<OutboxCounts> {
    let unsent = conn.query_row("SELECT count(*) FROM outbox WHERE sent_ms IS NULL", [], |r| r.get(0))?;
    let value = |key: &str| -> rusqlite::Result<i64> {
        conn.query_row("SELECT value FROM node_state WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map(Option::unwrap_or_default)
    };
    Ok(OutboxCounts { unsent, dropped: value("outbox_dropped")?, last_seq: value("event_seq")? })
}

/// Where the rest of the service emits events; cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    store: Store,
    wake: Arc<Notify>,
    outbox_max: u64,
    id_prefix: u64,
}

impl EventSink {
    /// A sink writing through `store`, waking `wake` (the MQTT session) after each event.
    pub fn new(store: Store, wake: Arc<Notify>, outbox_max: u64) -> Self {
        Self { store, wake, outbox_max, id_prefix: random_u64() }
    }

    /// Persists `event` and hands it to the session; resolves once it is durable.
    pub async fn emit(&self, event: NewEvent) -> Result<StoredEvent> {
        Ok(self.emit_with(event, |_, _| Ok(())).await?.0)
    }

    /// Persists `event` and what `with` writes beside it (the lock it takes, the gap it
    /// reports) as one fact: both commit or neither does.
    pub async fn emit_with<R, F>(&self, event: NewEvent, with: F) -> Result<(StoredEvent, R)>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &StoredEvent) -> rusqlite::Result<R> + Send + 'static,
    {
        let (prefix, max) = (self.id_prefix, self.outbox_max);
        let stored = self
            .store
            .call(move |conn| {
                let stored = insert_event(conn, &event, prefix, max, UnixMs::now())?;
                let companion = with(conn, &stored)?;
                Ok((stored, companion))
            })
            .await?;
        self.wake.notify_one();
        Ok(stored)
    }
}

/// 64 random bits from the kernel, or from the clock and pid when that fails.
pub fn random_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => (UnixMs::now().0 as u64).rotate_left(20) ^ u64::from(std::process::id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        crate::store::migrations::in_memory()
    }

    fn test_event() -> NewEvent {
        NewEvent::new(EventType::Test, Some("cam"), UnixMs(1))
    }

    #[test]
    fn history_reads_kept_events_newest_first_by_camera_type_and_window() {
        let conn = conn();
        for (camera, at) in [(Some("a"), 10), (Some("b"), 20), (None, 30), (Some("a"), 40)] {
            insert_event(&conn, &NewEvent::new(EventType::Test, camera, UnixMs(at)), 1, 100, UnixMs(at))
                .expect("insert");
        }
        let query = HistoryQuery { from: UnixMs(0), to: UnixMs(100), limit: 10, ..HistoryQuery::default() };
        let seqs = |q: &HistoryQuery| history(&conn, q).expect("history").iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&query), [4, 3, 2, 1]);
        assert_eq!(seqs(&HistoryQuery { cameras: Some(vec!["a".into(), "_node".into()]), ..query.clone() }), [4, 3, 1]);
        assert_eq!(seqs(&HistoryQuery { from: UnixMs(15), to: UnixMs(40), ..query.clone() }), [3, 2]);
        assert_eq!(seqs(&HistoryQuery { kind: Some("zone_enter".into()), ..query.clone() }), Vec::<i64>::new());
        assert_eq!(seqs(&HistoryQuery { limit: 1, ..query }), [4]);
    }

    #[test]
    fn seq_is_contiguous_and_ids_unique() {
        let conn = conn();
        let a = insert_event(&conn, &test_event(), 1, 100, UnixMs(5)).expect("a");
        let b = insert_event(&conn, &test_event(), 1, 100, UnixMs(5)).expect("b");
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_ne!(a.id, b.id);
        let rows = fetch_unsent(&conn, 0, 10).expect("fetch");
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(rows[0].payload.contains("\"seq\":1"));
    }

    #[test]
    fn mark_sent_hides_rows_and_counts_depth() {
        let conn = conn();
        for _ in 0..3 {
            insert_event(&conn, &test_event(), 1, 100, UnixMs(5)).expect("insert");
        }
        assert_eq!(mark_sent(&conn, &[1, 3, 3], UnixMs(9)).expect("mark"), 2);
        assert_eq!(fetch_unsent(&conn, 0, 10).expect("fetch").len(), 1);
        assert_eq!(counts(&conn).expect("counts"), OutboxCounts { unsent: 1, dropped: 0, last_seq: 3 });
    }

    #[test]
    fn overflow_drops_the_oldest_unsent_and_counts_them() {
        let conn = conn();
        for _ in 0..10 {
            insert_event(&conn, &test_event(), 1, 4, UnixMs(5)).expect("insert");
        }
        let rows = fetch_unsent(&conn, 0, 100).expect("fetch");
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [7, 8, 9, 10]);
        assert_eq!(counts(&conn).expect("counts"), OutboxCounts { unsent: 4, dropped: 6, last_seq: 10 });
    }

    #[test]
    fn seq_survives_pruning() {
        let conn = conn();
        for _ in 0..5 {
            let e = insert_event(&conn, &test_event(), 1, 2, UnixMs(5)).expect("insert");
            mark_sent(&conn, &[e.seq], UnixMs(6)).expect("mark");
        }
        let total: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).expect("count");
        assert_eq!(total, 2, "sent rows beyond outbox_max are pruned");
        assert_eq!(insert_event(&conn, &test_event(), 1, 2, UnixMs(7)).expect("next").seq, 6);
        assert_eq!(counts(&conn).expect("counts").dropped, 0);
    }

    #[tokio::test]
    async fn an_event_and_its_companion_commit_together_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("heldar-outbox-with-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, thread) = Store::open(&dir.join("index.db")).expect("open");
        let sink = EventSink::new(store.clone(), Arc::new(Notify::new()), 100);
        let failed =
            sink.emit_with(test_event(), |conn, _| conn.execute("INSERT INTO no_such_table VALUES (1)", [])).await;
        assert!(failed.is_err());
        let (stored, rows) = sink
            .emit_with(test_event(), |conn, stored| {
                conn.execute("UPDATE node_state SET value = ?1 WHERE key = 'outbox_dropped'", [stored.seq])
            })
            .await
            .expect("emit");
        assert_eq!((stored.seq, rows), (1, 1), "the failed companion took its event (and seq) with it");
        let counts = store.call(counts).await.expect("counts");
        assert_eq!(counts, OutboxCounts { unsent: 1, dropped: 1, last_seq: 1 });
        drop((sink, store));
        thread.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
