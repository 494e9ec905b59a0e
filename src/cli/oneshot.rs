//! The one-shot commands `sweep`, `backup` and `export`: each opens the index,
//! does its work and closes the index cleanly.

use crate::backup::export::{ExportRequest, ExportResult};
use crate::backup::job::{BackupContext, JobProgress};
use crate::config::LoadedConfig;
use crate::outbox::EventSink;
use crate::recording::sweeper::{ReadLocks, SweepReport, Sweeper};
use crate::store::Store;
use crate::sys::lock::LockError;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::Notify;

/// Opens the index for a one-shot command, runs `f` with it, and closes it cleanly. It runs
/// alone: under the data directory's lock, which a running service holds.
async fn with_index<T, F, Fut>(config: &LoadedConfig, f: F) -> Result<T>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating node.data_dir {}", config.data_dir.display()))?;
    let _lock = match crate::sys::lock::lock_dir(&config.data_dir) {
        Ok(lock) => lock,
        Err(LockError::Held(pid)) => anyhow::bail!(
            "the service runs on {} (pid {}): ask it with `heldar-edge call` instead (sweep, backup, export)",
            config.data_dir.display(),
            pid.map_or("?".to_string(), |p| p.to_string())
        ),
        Err(e) => return Err(e).with_context(|| config.data_dir.display().to_string()),
    };
    let (store, store_thread) = Store::open(&config.index_path())?;
    let result = f(store).await;
    tokio::task::spawn_blocking(move || store_thread.join()).await.context("closing the index")?;
    result
}

/// `heldar-edge sweep`: one retention pass on the index and recordings of `config`.
pub async fn sweep_once(config: LoadedConfig) -> Result<SweepReport> {
    with_index(&config, |store| async { Sweeper::new(&config, store, ReadLocks::default()).sweep(UnixMs::now()).await })
        .await
}

/// `heldar-edge backup POLICY`: runs one policy now, telling `report` how far it is; its
/// `backup_done`/`backup_failed` event goes to the outbox (a running service publishes it).
pub async fn backup_once(
    config: LoadedConfig,
    policy_id: &str,
    report: &(dyn Fn(&JobProgress) + Sync),
) -> Result<JobProgress> {
    let backup = &config.config.backup;
    let policy = backup
        .policies
        .iter()
        .find(|p| p.id == policy_id)
        .with_context(|| format!("no [[backup.policy]] with id {policy_id:?}"))?;
    let dest = backup
        .destinations
        .iter()
        .find(|d| d.id == policy.destination)
        .with_context(|| format!("policy {policy_id}: no destination {:?}", policy.destination))?;
    let config = &config;
    with_index(config, |store| async move {
        let ctx = BackupContext::new(config, &store, &ReadLocks::default());
        let done = crate::backup::job::run_job(&ctx, policy, dest, report).await;
        let events = EventSink::new(store.clone(), Arc::new(Notify::new()), config.board.limits.outbox_max);
        events.emit(crate::backup::scheduler::finished_event(&done)).await?;
        Ok(done)
    })
    .await
}

/// `heldar-edge export`: writes one archive of a window of footage.
pub async fn export_once(config: LoadedConfig, request: ExportRequest) -> Result<ExportResult> {
    let (recordings_dir, data_dir) = (config.recordings_dir.clone(), config.data_dir.clone());
    with_index(&config, |store| async move {
        crate::backup::export::export(&store, (&recordings_dir, &data_dir), &ReadLocks::default(), request).await
    })
    .await
}
