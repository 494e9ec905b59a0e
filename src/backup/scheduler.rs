//! Runs backup policies on their schedule, publishes progress on
//! `P/backup/<job>` and ends each job with `backup_done` or `backup_failed`.

use super::index;
use super::job::{self, BackupContext, JobProgress};
use crate::config::schema::{BackupConfig, DestinationConfig, PolicyConfig};
use crate::mqtt::MqttHandle;
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::wallclock::UnixMs;
use rumqttc::QoS;
use std::time::Duration;

/// Runs `policy` once now, reporting on MQTT and through events.
pub async fn run_policy(
    ctx: &BackupContext,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    events: &EventSink,
    mqtt: &MqttHandle,
) -> JobProgress {
    let root = mqtt.topics().root().to_string();
    let report = |progress: &JobProgress| {
        let topic = format!("{root}/backup/{}", progress.job);
        let last = progress.status != "running";
        let qos = if last { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        mqtt.publish(topic, progress.payload().to_string(), qos, last);
    };
    tracing::info!(policy = %policy.id, destination = %dest.id, "backup started");
    let done = job::run_job(ctx, policy, dest, &report).await;
    match &done.error {
        Some(error) => tracing::warn!(policy = %policy.id, error = %error, "backup failed"),
        None => tracing::info!(policy = %policy.id, files = done.files_done, bytes = done.bytes_done, "backup done"),
    }
    if let Err(e) = events.emit(finished_event(&done)).await {
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

/// Runs every scheduled policy; a policy interrupted by a crash runs again at once.
pub async fn run(ctx: BackupContext, backup: BackupConfig, events: EventSink, mqtt: MqttHandle) {
    let interrupted = ctx.store.call(|conn| index::interrupt_running(conn, UnixMs::now())).await.unwrap_or(0);
    if interrupted > 0 {
        tracing::warn!(jobs = interrupted, "backup jobs interrupted by a stop resume now");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for policy in backup.policies.iter().filter(|p| p.every_s > 0) {
        let Some(dest) = backup.destinations.iter().find(|d| d.id == policy.destination).cloned() else { continue };
        let (ctx, policy, events, mqtt) = (ctx.clone(), policy.clone(), events.clone(), mqtt.clone());
        let resume = interrupted > 0 && was_interrupted(&ctx, &policy.id).await;
        tasks.spawn(async move {
            let every = Duration::from_secs(policy.every_s);
            let mut next = if resume { tokio::time::Instant::now() } else { tokio::time::Instant::now() + every };
            loop {
                tokio::time::sleep_until(next).await;
                run_policy(&ctx, &policy, &dest, &events, &mqtt).await;
                next = tokio::time::Instant::now() + every;
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
