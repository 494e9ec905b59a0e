//! The index store: one SQLite connection owned by its own thread behind a
//! bounded channel, so no async task ever blocks on SQLite. Jobs that queue up
//! run together in one transaction (each in its own savepoint), which keeps
//! writes batched on SD cards; a job's result is delivered after the commit is durable.
//! A reserve file beside the database keeps room for commits on a full disk.

pub mod migrations;
pub mod reserve;

use anyhow::{Context, Result, anyhow};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the store thread; callers wait when it is full.
pub const STORE_QUEUE: usize = 256;
/// Most jobs run in one transaction.
const BATCH_MAX: usize = 256;

type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;

/// A handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
}

/// The store thread; join it after dropping every `Store` handle to close the database.
pub struct StoreThread(JoinHandle<()>);

impl StoreThread {
    /// Waits until the thread has committed its last batch and closed the database.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the store thread panicked");
        }
    }
}

/// Opens (creating if needed) and migrates the database at `path`, with the pragmas the service uses.
pub fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on the disk before its job resolves, so an event is durable before it
    // is published (a power cut must not lose it, nor hand its seq to another event). Jobs are
    // batched into one transaction, so this costs one sync per batch, not per write.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrations::migrate(&mut conn).with_context(|| format!("migrating {}", path.display()))?;
    Ok(conn)
}

impl Store {
    /// Opens the database at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<(Store, StoreThread)> {
        let conn = open_connection(path)?;
        let (tx, rx) = mpsc::channel::<Job>(STORE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn({
                let reserve = reserve::IndexReserve::beside(path);
                move || run_store(conn, rx, reserve)
            })
            .context("starting the store thread")?;
        Ok((Store { tx, path: path.to_path_buf() }, StoreThread(thread)))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the store thread inside a transaction; resolves after it committed.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (job, reply) = make_job(f);
        self.tx.send(job).await.map_err(|_| anyhow!("the store is closed"))?;
        reply.await.map_err(|_| anyhow!("the store dropped a job"))?
    }

    /// Like `call`, without waiting for room: `None` when the queue is full.
    pub fn try_call<R, F>(&self, f: F) -> Option<oneshot::Receiver<Result<R>>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (job, reply) = make_job(f);
        self.tx.try_send(job).ok().map(|()| reply)
    }
}

fn make_job<R, F>(f: F) -> (Job, oneshot::Receiver<Result<R>>)
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
{
    let (reply_tx, reply_rx) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let result = f(conn);
        let ok = result.is_ok();
        let deliver: Deliver = Box::new(move |commit| {
            let outcome = match (result, commit) {
                (Ok(value), Ok(())) => Ok(value),
                (Err(e), _) => Err(anyhow::Error::new(e).context("index query")),
                (Ok(_), Err(e)) => Err(anyhow!("index commit failed: {e}")),
            };
            let _ = reply_tx.send(outcome);
        });
        (ok, deliver)
    });
    (job, reply_rx)
}

fn run_store(mut conn: Connection, mut rx: mpsc::Receiver<Job>, mut reserve: reserve::IndexReserve) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        reserve.keep();
        if run_batch(&mut conn, &mut batch) == Err(rusqlite::ErrorCode::DiskFull) {
            // Too late for this batch: the next one gets the reserve's room.
            reserve.release();
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "index checkpoint at close failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the index failed");
    }
}

/// Runs a batch in one transaction; the SQLite error code when the commit failed.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>) -> Result<(), rusqlite::ErrorCode> {
    let mut delivers = Vec::with_capacity(batch.len());
    let commit = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        for job in batch.drain(..) {
            tx.execute_batch("SAVEPOINT job")?;
            let (ok, deliver) = job(&tx);
            if ok {
                tx.execute_batch("RELEASE job")?;
            } else {
                tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
            delivers.push(deliver);
        }
        tx.commit()
    })();
    let code = commit.as_ref().err().map(|e| e.sqlite_error_code().unwrap_or(rusqlite::ErrorCode::Unknown));
    let commit = commit.map_err(|e| {
        tracing::error!(error = %e, "index transaction failed");
        e.to_string()
    });
    for deliver in delivers {
        deliver(commit.clone());
    }
    batch.clear();
    code.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("heldar-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("index.db")
    }

    #[tokio::test]
    async fn a_failed_job_rolls_back_alone() {
        let path = temp_db("rollback");
        let (store, thread) = Store::open(&path).expect("open");
        let bad = store.call(|c| {
            c.execute("UPDATE node_state SET value = 7 WHERE key = 'event_seq'", [])?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])
        });
        let good = store.call(|c| c.execute("UPDATE node_state SET value = 3 WHERE key = 'outbox_dropped'", []));
        let (bad, good) = tokio::join!(bad, good);
        assert!(bad.is_err());
        assert_eq!(good.expect("good"), 1);
        let values: Vec<i64> = store
            .call(|c| {
                let mut stmt = c.prepare("SELECT value FROM node_state ORDER BY key")?;
                let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(rows)
            })
            .await
            .expect("read");
        assert_eq!(values, vec![0, 3], "event_seq untouched, outbox_dropped set");
        drop(store);
        thread.join();
        let mode: String = Connection::open(&path)
            .expect("reopen")
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }
}
