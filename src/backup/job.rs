//! Running one backup job: select what the destination lacks, copy it (a
//! directory: verified file by file; a remote: one rclone process), keep the
//! manifest and the job row up to date, report progress.

use super::copy::{self, Throttle};
use super::index;
use super::mounts;
use super::rclone;
use super::select::{self, Selection, ToCopy};
use crate::config::schema::{DestinationConfig, DestinationKind, PolicyConfig, VerifyMode};
use crate::recording::sweeper::ReadLocks;
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinSet;

/// What a job needs from the node.
#[derive(Clone)]
pub struct BackupContext {
    /// The index.
    pub store: Store,
    /// Root of the segments.
    pub recordings_dir: PathBuf,
    /// Read locks retention respects.
    pub reads: ReadLocks,
    /// Directory of the config file (relative `*_file` keys).
    pub config_dir: PathBuf,
    /// The node's data directory (owner-only): where a job keeps its temporary files.
    pub data_dir: PathBuf,
}

impl BackupContext {
    /// The context of a job on the node of `config`.
    pub fn new(config: &crate::config::LoadedConfig, store: &Store, reads: &ReadLocks) -> Self {
        Self {
            store: store.clone(),
            recordings_dir: config.recordings_dir.clone(),
            reads: reads.clone(),
            config_dir: config.config_dir().to_path_buf(),
            data_dir: config.data_dir.clone(),
        }
    }
}

/// A job's state, as published on `P/backup/<job>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobProgress {
    /// Job id.
    pub job: i64,
    /// Policy id.
    pub policy: String,
    /// Destination id.
    pub destination: String,
    /// `running`, `done` or `failed`.
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

impl JobProgress {
    /// A job of `policy` that failed before it had an id.
    pub fn not_started(policy: &PolicyConfig, dest: &DestinationConfig, error: &anyhow::Error) -> Self {
        Self {
            policy: policy.id.clone(),
            destination: dest.id.clone(),
            status: "failed".into(),
            error: Some(format!("{error:#}")),
            ..Self::default()
        }
    }

    /// The JSON of `P/backup/<job>`.
    pub fn payload(&self) -> serde_json::Value {
        let mut value = json!({
            "v": 1, "job": self.job, "policy": self.policy, "destination": self.destination, "status": self.status,
            "files_total": self.files_total, "files_done": self.files_done,
            "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
        });
        if let Some(error) = &self.error {
            value["error"] = error.as_str().into();
        }
        value
    }
}

/// Runs `policy` to `dest` now; `report` sees the progress (at most about once a second, and at the end).
pub async fn run_job(
    ctx: &BackupContext,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    report: &(dyn Fn(&JobProgress) + Sync),
) -> JobProgress {
    match begin_job(ctx, policy, dest).await {
        Ok(job) => run_begun(ctx, job, policy, dest, report).await,
        Err(e) => {
            let progress = JobProgress::not_started(policy, dest, &e);
            report(&progress);
            progress
        }
    }
}

/// Records a new `running` job of `policy`; returns its id.
pub async fn begin_job(ctx: &BackupContext, policy: &PolicyConfig, dest: &DestinationConfig) -> Result<i64> {
    let now = UnixMs::now();
    let (policy_id, dest_id) = (policy.id.clone(), dest.id.clone());
    ctx.store.call(move |conn| index::start_job(conn, &policy_id, &dest_id, now)).await
}

/// Runs job `job` (from `begin_job`) to its end and records how it ended.
pub async fn run_begun(
    ctx: &BackupContext,
    job: i64,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    report: &(dyn Fn(&JobProgress) + Sync),
) -> JobProgress {
    let mut progress = JobProgress {
        job,
        policy: policy.id.clone(),
        destination: dest.id.clone(),
        status: "running".into(),
        ..JobProgress::default()
    };
    let outcome = copy_all(ctx, policy, dest, &mut progress, report).await;
    progress.status = if outcome.is_ok() { "done" } else { "failed" }.into();
    progress.error = outcome.err().map(|e| format!("{e:#}"));
    let (error, totals, done) = (
        progress.error.clone(),
        (progress.files_total, progress.bytes_total),
        (progress.files_done, progress.bytes_done),
    );
    let finished = ctx
        .store
        .call(move |conn| {
            index::progress(conn, job, totals, done)?;
            index::finish_job(conn, job, error.as_deref(), UnixMs::now())
        })
        .await;
    if let Err(e) = finished {
        tracing::error!(job, error = %e, "backup job not recorded");
    }
    report(&progress);
    progress
}

async fn copy_all(
    ctx: &BackupContext,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    progress: &mut JobProgress,
    report: &(dyn Fn(&JobProgress) + Sync),
) -> Result<()> {
    let selection = Selection::of(policy, UnixMs::now());
    let sel = selection.clone();
    let (files, bytes) = ctx.store.call(move |conn| select::totals(conn, &sel)).await?;
    progress.files_total = files;
    progress.bytes_total = bytes;
    report(progress);
    match dest.kind {
        DestinationKind::Local | DestinationKind::Usb => {
            copy_to_directory(ctx, policy, dest, selection, progress, report).await
        }
        DestinationKind::Sftp | DestinationKind::S3 | DestinationKind::Rclone => {
            rclone::copy_to_remote(ctx, policy, dest, selection, progress, report).await
        }
    }
}

/// Fails when a `usb` destination is not on a mount of its own.
pub fn check_destination(dest: &DestinationConfig) -> Result<(), String> {
    if dest.kind != DestinationKind::Usb {
        return Ok(());
    }
    let mounts = mounts::current_mounts().map_err(|e| format!("reading mountinfo: {e}"))?;
    mounts::check_separate_mount(&mounts, Path::new(&dest.path))
}

async fn copy_to_directory(
    ctx: &BackupContext,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    selection: Selection,
    progress: &mut JobProgress,
    report: &(dyn Fn(&JobProgress) + Sync),
) -> Result<()> {
    check_destination(dest).map_err(|e| anyhow!("destination {}: {e}", dest.id))?;
    let root = PathBuf::from(&dest.path);
    if dest.kind == DestinationKind::Local {
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    }
    let throttle = Arc::new(Throttle::new(policy.bandwidth.map(|b| b.0)));
    let by_hash = policy.verify == VerifyMode::Sha256;
    let mut after = (i64::MIN, i64::MIN);
    let mut last_report = std::time::Instant::now();
    loop {
        let sel = selection.clone();
        let page: Vec<ToCopy> = ctx.store.call(move |conn| select::page(conn, &sel, after)).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = (last.start_ms, last.id);
        let _reading = ctx.reads.hold(&page.iter().map(|c| c.id).collect::<Vec<_>>());
        let mut running = JoinSet::new();
        let mut pending = page.into_iter();
        loop {
            while running.len() < policy.concurrency as usize {
                let Some(file) = pending.next() else { break };
                let (src, root, throttle, dest) =
                    (ctx.recordings_dir.join(&file.path), root.clone(), throttle.clone(), dest.clone());
                running.spawn(async move {
                    let still_ok = move || check_destination(&dest);
                    let copied = copy::copy_file(&src, &root, &file.path, &throttle, by_hash, &still_ok).await;
                    (file, copied)
                });
            }
            let Some(joined) = running.join_next().await else { break };
            let (file, copied) = joined.context("a copy task failed")?;
            let copied = match copied {
                Ok(copied) => copied,
                Err(e) => {
                    running.abort_all();
                    bail!("{}: {e:#}", file.path);
                }
            };
            let (dest_id, path) = (dest.id.clone(), file.path.clone());
            ctx.store
                .call(move |conn| {
                    index::record_copy(conn, &dest_id, &path, copied.bytes, Some(&copied.sha256), UnixMs::now())
                })
                .await?;
            progress.files_done += 1;
            progress.bytes_done += copied.bytes;
            if last_report.elapsed() >= std::time::Duration::from_secs(1) {
                last_report = std::time::Instant::now();
                let (job, totals, done) = (
                    progress.job,
                    (progress.files_total, progress.bytes_total),
                    (progress.files_done, progress.bytes_done),
                );
                ctx.store.call(move |conn| index::progress(conn, job, totals, done)).await?;
                report(progress);
            }
        }
    }
}
