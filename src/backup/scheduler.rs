//! Runs backup policies on their schedule, publishes progress on
//! `P/backup/<job>` and ends each job with `backup_done` or `backup_failed`.

use super::index;
use super::job::{self, BackupContext, JobProgress};
use crate::config::schema::{BackupConfig, DestinationConfig, PolicyConfig};
use crate::mqtt::MqttHandle;
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::wallclock::UnixMs;
use rumqttc::QoS;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Policies with a job running now: one job per policy at a time.
#[derive(Clone, Default)]
pub struct RunningPolicies(Arc<Mutex<HashSet<String>>>);

/// A policy claimed for one job; released when dropped.
pub struct PolicyClaim {
    running: RunningPolicies,
    policy: String,
}

impl RunningPolicies {
    /// Claims `policy`, or `None` when a job of it is running.
    pub fn claim(&self, policy: &str) -> Option<PolicyClaim> {
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(policy.to_string()).then(|| PolicyClaim { running: self.clone(), policy: policy.to_string() })
    }
}

impl Drop for PolicyClaim {
    fn drop(&mut self) {
        self.running.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.policy);
    }
}

/// What a job reports to: the broker, the outbox, and the policies running.
#[derive(Clone)]
pub struct JobReporting {
    /// Where `backup_done` / `backup_failed` go.
    pub events: EventSink,
    /// Where progress goes.
    pub mqtt: MqttHandle,
    /// Jobs running now.
    pub running: RunningPolicies,
}

/// Runs `policy` once now, reporting on MQTT and through events; `None` when a job of it is running.
pub async fn run_policy(
    ctx: &BackupContext,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    reporting: &JobReporting,
) -> Option<JobProgress> {
    let Some(claim) = reporting.running.claim(&policy.id) else {
        tracing::info!(policy = %policy.id, "backup already running: this run is skipped");
        return None;
    };
    match job::begin_job(ctx, policy, dest).await {
        Ok(job) => Some(run_claimed(ctx, job, policy, dest, reporting, claim).await),
        Err(e) => {
            let failed = JobProgress::not_started(policy, dest, &e);
            tracing::error!(policy = %policy.id, error = %e, "backup job not started");
            if let Err(e) = reporting.events.emit(finished_event(&failed)).await {
                tracing::error!(error = %e, "backup event not stored");
            }
            Some(failed)
        }
    }
}

/// Runs begun job `job` of a claimed policy to its end: progress on `P/backup/<job>`, then its event.
pub async fn run_claimed(
    ctx: &BackupContext,
    job: i64,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    reporting: &JobReporting,
    _claim: PolicyClaim,
) -> JobProgress {
    let mqtt = &reporting.mqtt;
    let report = |progress: &JobProgress| {
        let topic = mqtt.topics().backup(progress.job);
        let last = progress.status != "running";
        let qos = if last { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        mqtt.publish(topic, progress.payload().to_string(), qos, last);
    };
    tracing::info!(job, policy = %policy.id, destination = %dest.id, "backup started");
    let done = job::run_begun(ctx, job, policy, dest, &report).await;
    match &done.error {
        Some(error) => tracing::warn!(job, policy = %policy.id, error = %error, "backup failed"),
        None => {
            tracing::info!(job, policy = %policy.id, files = done.files_done, bytes = done.bytes_done, "backup done")
        }
    }
    if let Err(e) = reporting.events.emit(finished_event(&done)).await {
        tracing::error!(error = %e, "backup event not stored");
    }
    done
}

/// `backup_done` or `backup_failed` for a finished job.
pub fn finished_event(done: &JobProgress) -> NewEvent {
    let kind = if done.error.is_none() { EventType::BackupDone } else { EventType::BackupFailed };
    let event = NewEvent::new(kind, None, UnixMs::now())
        .with("job", done.job)
        .with("policy", done.policy.as_str())
        .with("destination", done.destination.as_str())
        .with("files", done.files_done)
        .with("bytes", done.bytes_done);
    match &done.error {
        Some(error) => event.with("error", error.as_str()),
        None => event,
    }
}

/// Runs every scheduled policy; a job interrupted by a crash runs again at once, whatever its policy.
pub async fn run(ctx: BackupContext, backup: BackupConfig, reporting: JobReporting) {
    let interrupted = ctx.store.call(|conn| index::interrupt_running(conn, UnixMs::now())).await.unwrap_or(0);
    if interrupted > 0 {
        tracing::warn!(jobs = interrupted, "backup jobs interrupted by a stop resume now");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for policy in &backup.policies {
        let Some(dest) = backup.destinations.iter().find(|d| d.id == policy.destination).cloned() else { continue };
        let (ctx, policy, reporting) = (ctx.clone(), policy.clone(), reporting.clone());
        // A job cut short resumes at once, also one a `backup` command started (`every_s = 0`).
        let resume = interrupted > 0 && was_interrupted(&ctx, &policy.id).await;
        if policy.every_s == 0 && !resume {
            continue;
        }
        tasks.spawn(async move {
            if resume {
                run_policy(&ctx, &policy, &dest, &reporting).await;
            }
            if policy.every_s == 0 {
                return;
            }
            let every = Duration::from_secs(policy.every_s);
            loop {
                tokio::time::sleep(every).await;
                run_policy(&ctx, &policy, &dest, &reporting).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn was_interrupted(ctx: &BackupContext, policy: &str) -> bool {
    let policy = policy.to_string();
    ctx.store
        .call(move |conn| {
            conn.query_row("SELECT status FROM backup_jobs WHERE policy = ?1 ORDER BY id DESC LIMIT 1", [policy], |r| {
                r.get::<_, String>(0)
            })
        })
        .await
        .is_ok_and(|status| status == "interrupted")
}
