//! What each command does, against the running node. Every function returns
//! the reply's `result` or a typed error; nothing here publishes the reply.

use super::journal::{self, AuditEntry};
use super::reply::{CommandError, Outcome};
use super::request::{self, Request};
use crate::backup::export::{self, ExportRequest};
use crate::backup::job::BackupContext;
use crate::backup::scheduler::{self, JobReporting};
use crate::capture::CameraStates;
use crate::capture::modes::RecordModes;
use crate::capture::snapshot::Snapshots;
use crate::config::LoadedConfig;
use crate::config::schema::{DestinationKind, RecordMode};
use crate::mqtt::MqttHandle;
use crate::protocol::ErrorCode;
use crate::recording::guard::StorageGuard;
use crate::recording::locks::{self, NewLock};
use crate::recording::sweeper::{ReadLocks, Sweeper};
use crate::stats::StatsSources;
use crate::store::Store;
use crate::wallclock::UnixMs;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// Longest window a `lock` may cover.
const LOCK_MAX_MS: i64 = 31 * 86_400_000;
/// Longest `record` override with a duration.
const OVERRIDE_MAX_S: u64 = 31 * 86_400;

/// A reload asked of the service; answered with what changed.
pub type ReloadRequest = oneshot::Sender<Outcome>;

/// Everything the commands act on.
#[derive(Clone)]
pub struct Host {
    /// The config in force (replaced on reload).
    pub config: watch::Receiver<Arc<LoadedConfig>>,
    /// The index.
    pub store: Store,
    /// The broker session.
    pub mqtt: MqttHandle,
    /// Read locks (export, backup).
    pub reads: ReadLocks,
    /// Where `status` reads the node's figures.
    pub stats: Arc<StatsSources>,
    /// When the service started.
    pub started: std::time::Instant,
    /// Backup jobs: events, progress, the policies running.
    pub backups: JobReporting,
    /// The service's reload loop.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Recording modes in force.
    pub modes: RecordModes,
    /// Snapshots on demand.
    pub snapshots: Snapshots,
    /// Camera states and the segments being written.
    pub cameras: CameraStates,
    /// The storage guard, told when footage is unlocked.
    pub storage: StorageGuard,
}

pub(super) fn not_found(message: String) -> CommandError {
    CommandError::new(ErrorCode::NotFound, message)
}

pub(super) fn bad_request(message: impl Into<String>) -> CommandError {
    CommandError::new(ErrorCode::BadRequest, message)
}

pub(super) fn failed(error: anyhow::Error) -> CommandError {
    CommandError::failed(&error)
}

/// A time argument in RFC 3339.
fn time(name: &str, text: &str) -> Result<UnixMs, CommandError> {
    UnixMs::parse_rfc3339(text).ok_or_else(|| bad_request(format!("{name}: {text:?} is not an RFC 3339 time")))
}

/// A window `from..to` of the args, `to` after `from`.
pub(super) fn window(from: &str, to: &str) -> Result<(UnixMs, UnixMs), CommandError> {
    let (from, to) = (time("from", from)?, time("to", to)?);
    if to <= from {
        return Err(bad_request("to must be after from"));
    }
    Ok((from, to))
}

/// The cameras named (all configured ones when none is); an unknown one is `not_found`.
pub(super) fn cameras(config: &LoadedConfig, named: &[String]) -> Result<Vec<String>, CommandError> {
    let known: Vec<&str> = config.config.cameras.iter().map(|c| c.id.as_str()).collect();
    if named.is_empty() {
        return Ok(known.into_iter().map(str::to_string).collect());
    }
    match named.iter().find(|c| !known.contains(&c.as_str())) {
        Some(unknown) => Err(not_found(format!("no camera {unknown:?} on this node"))),
        None => Ok(named.to_vec()),
    }
}

impl Host {
    fn config(&self) -> Arc<LoadedConfig> {
        self.config.borrow().clone()
    }

    /// `status`: the node's figures (as `P/stats`) and its config in brief.
    pub async fn status(&self) -> Outcome {
        let config = self.config();
        let identity = (config.node_id.as_str(), config.config.node.board.as_str());
        let mut status = self.stats.report(identity, self.started.elapsed()).await;
        status["config"] = json!({
            "path": config.path.display().to_string(),
            "cameras": config.config.cameras.iter().map(|c| json!({
                "id": c.id, "record": c.record.name(), "zones": c.zones.iter().map(|z| z.id.as_str()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "backup_policies": config.config.backup.policies.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            "auth": config.config.commands.auth.name(),
        });
        Ok(status)
    }

    /// `lock`: an evidence lock per camera over the window; `audit` is written with them.
    pub async fn lock(&self, request: &Request, audit: Option<AuditEntry>) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            #[serde(default)]
            cameras: Vec<String>,
            from: String,
            to: String,
            reason: Option<String>,
        }
        let args: Args = request::args(request)?;
        let (from, to) = window(&args.from, &args.to)?;
        if to.0 - from.0 > LOCK_MAX_MS {
            return Err(bad_request("a lock covers at most 31 days"));
        }
        let reason = args.reason.unwrap_or_else(|| "command".into());
        if reason.chars().count() > 200 {
            return Err(bad_request("reason: at most 200 characters"));
        }
        let cameras = self.lockable(&args.cameras, from, to).await?;
        let now = UnixMs::now();
        let ids = self
            .store
            .call(move |conn| {
                let ids = cameras
                    .into_iter()
                    .map(|camera| {
                        let lock = NewLock { camera: camera.clone(), from, to, event_id: None, reason: reason.clone() };
                        locks::insert_lock(conn, &lock, now).map(|id| (id, camera))
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                audit.map(|entry| journal::audit(conn, &entry)).transpose()?;
                Ok(ids)
            })
            .await
            .map_err(failed)?;
        let locks: Vec<Value> = ids
            .iter()
            .map(|(id, camera)| json!({"id": id, "camera": camera, "from": from.to_rfc3339(), "to": to.to_rfc3339()}))
            .collect();
        Ok(json!({"id": ids.first().map(|(id, _)| *id), "locks": locks}))
    }

    /// The cameras a lock over `from..to` covers: those `named` (all when none is), less those
    /// that never record and hold no footage in the window. Naming such a camera is refused.
    async fn lockable(&self, named: &[String], from: UnixMs, to: UnixMs) -> Result<Vec<String>, CommandError> {
        let config = self.config();
        let cameras = cameras(&config, named)?;
        let silent: Vec<String> = config
            .config
            .cameras
            .iter()
            .filter(|c| !c.ever_records() && cameras.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        let bare = self
            .store
            .call(move |conn| {
                let mut bare = Vec::new();
                for camera in silent {
                    // One row is enough to know there is footage.
                    if crate::recording::index::camera_window(conn, &camera, from, to, 1)?.is_empty() {
                        bare.push(camera);
                    }
                }
                Ok(bare)
            })
            .await
            .map_err(failed)?;
        if let Some(camera) = bare.first().filter(|_| !named.is_empty()) {
            return Err(bad_request(format!(
                "camera {camera:?} does not record (record = \"off\" and no schedule window records) \
                 and has no footage in this window: nothing to lock"
            )));
        }
        let cameras: Vec<String> = cameras.into_iter().filter(|c| !bare.contains(c)).collect();
        if cameras.is_empty() {
            return Err(bad_request("no camera records or has footage in this window: nothing to lock"));
        }
        Ok(cameras)
    }

    /// `unlock`: removes locks by id, or those of the cameras lying inside a window; `audit`
    /// is written with the removal.
    pub async fn unlock(&self, request: &Request, audit: Option<AuditEntry>) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            id: Option<i64>,
            #[serde(default)]
            cameras: Vec<String>,
            from: Option<String>,
            to: Option<String>,
        }
        let args: Args = request::args(request)?;
        let selection = match (args.id, &args.from, &args.to) {
            (Some(id), None, None) if args.cameras.is_empty() => locks::Selection::Id(id),
            (None, Some(from), Some(to)) => {
                let (from, to) = window(from, to)?;
                locks::Selection::Within { cameras: cameras(&self.config(), &args.cameras)?, from, to }
            }
            _ => return Err(bad_request("give either id, or from and to (and optionally cameras)")),
        };
        let removed = self
            .store
            .call(move |conn| {
                let removed = locks::remove_locks(conn, &selection)?;
                // Nothing removed is a failure the router audits on its own.
                if !removed.is_empty() {
                    audit.map(|entry| journal::audit(conn, &entry)).transpose()?;
                }
                Ok(removed)
            })
            .await
            .map_err(failed)?;
        if removed.is_empty() {
            return Err(not_found("no lock matches".into()));
        }
        // Recorders paused for storage may resume once the sweep can delete this footage.
        self.storage.wake();
        Ok(json!({"removed": removed.len(), "ids": removed}))
    }

    /// `export`: one archive of the window, in `<data_dir>/exports/` or a directory destination.
    pub async fn export(&self, request: &Request) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            #[serde(default)]
            cameras: Vec<String>,
            from: String,
            to: String,
            destination: Option<String>,
            #[serde(default)]
            cut: bool,
        }
        let args: Args = request::args(request)?;
        let (from, to) = window(&args.from, &args.to)?;
        let config = self.config();
        let cameras = cameras(&config, &args.cameras)?;
        let directory = match &args.destination {
            None => config.data_dir.join("exports"),
            Some(id) => {
                let dest = config.config.backup.destinations.iter().find(|d| d.id == *id);
                let dest = dest.ok_or_else(|| not_found(format!("no [[backup.destination]] {id:?}")))?;
                if !matches!(dest.kind, DestinationKind::Local | DestinationKind::Usb) {
                    return Err(bad_request(format!("destination {id:?} is not a directory (local or usb)")));
                }
                crate::backup::job::check_destination(dest)
                    .map_err(|e| CommandError::new(ErrorCode::Failed, format!("destination {id}: {e}")))?;
                std::path::PathBuf::from(&dest.path).join("exports")
            }
        };
        let out = directory.join(export::archive_name(from, to));
        let export = ExportRequest { cameras, from, to, out, max_bytes: export::DEFAULT_MAX_BYTES, cut: args.cut };
        let dirs = (config.recordings_dir.as_path(), config.data_dir.as_path());
        let done = export::export(&self.store, dirs, &self.reads, export).await.map_err(|e| {
            let code =
                if e.downcast_ref::<export::NoFootage>().is_some() { ErrorCode::NotFound } else { ErrorCode::Failed };
            CommandError::new(code, format!("{e:#}"))
        })?;
        Ok(
            json!({"path": done.path.display().to_string(), "bytes": done.bytes, "sha256": done.sha256, "files": done.files,
                   "snapshots": done.snapshots}),
        )
    }

    /// `backup`: starts a job of the policy; the reply names the job, progress follows on `P/backup/<job>`.
    pub async fn backup(&self, request: &Request) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            policy: String,
        }
        let args: Args = request::args(request)?;
        let config = self.config();
        let backup = &config.config.backup;
        let policy = backup.policies.iter().find(|p| p.id == args.policy);
        let policy = policy.ok_or_else(|| not_found(format!("no [[backup.policy]] {:?}", args.policy)))?.clone();
        let dest = backup.destinations.iter().find(|d| d.id == policy.destination).cloned();
        let dest = dest.ok_or_else(|| not_found(format!("no destination {:?}", policy.destination)))?;
        let Some(claim) = self.backups.running.claim(&policy.id) else {
            return Err(CommandError::new(ErrorCode::Busy, format!("a job of {} is running", policy.id)));
        };
        let ctx = BackupContext::new(&config, &self.store, &self.reads);
        let job = crate::backup::job::begin_job(&ctx, &policy, &dest).await.map_err(failed)?;
        let reporting = self.backups.clone();
        let (policy_id, dest_id) = (policy.id.clone(), dest.id.clone());
        let topic = self.mqtt.topics().backup(job);
        let reply = json!({"job": job, "policy": policy_id, "destination": dest_id, "progress": topic});
        tokio::spawn(async move {
            scheduler::run_claimed(&ctx, job, &policy, &dest, &reporting, claim).await;
        });
        Ok(reply)
    }

    /// `sweep`: retention now.
    pub async fn sweep(&self) -> Outcome {
        let config = self.config();
        let report =
            Sweeper::new(&config, self.store.clone(), self.reads.clone()).sweep(UnixMs::now()).await.map_err(failed)?;
        Ok(
            json!({"aged": report.aged, "for_space": report.for_space, "freed_bytes": report.freed, "short": report.short}),
        )
    }

    /// `record`: overrides a camera's recording mode, for `duration_s` or until the next `record`.
    pub async fn record(&self, request: &Request) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            camera: String,
            mode: String,
            duration_s: Option<u64>,
        }
        let args: Args = request::args(request)?;
        let mode = match args.mode.as_str() {
            "on" => RecordMode::Continuous,
            "off" => RecordMode::Off,
            "events" => RecordMode::Events,
            other => return Err(bad_request(format!("mode {other:?}: on, off or events"))),
        };
        if args.duration_s.is_some_and(|d| d == 0 || d > OVERRIDE_MAX_S) {
            return Err(bad_request(format!("duration_s must be in 1..={OVERRIDE_MAX_S}")));
        }
        cameras(&self.config(), std::slice::from_ref(&args.camera))?;
        let duration = args.duration_s.map(std::time::Duration::from_secs);
        self.modes.set(&args.camera, mode, duration, UnixMs::now()).await.map_err(failed)
    }

    /// `snapshot`: the camera's latest frame as a JPEG on `P/snapshots/<camera>`.
    pub async fn snapshot(&self, request: &Request) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            camera: String,
        }
        let args: Args = request::args(request)?;
        cameras(&self.config(), std::slice::from_ref(&args.camera))?;
        let shot = self.snapshots.take(&self.store, &self.cameras, &args.camera).await.map_err(|e| {
            let nothing = e.downcast_ref::<crate::capture::snapshot::NothingRecorded>().is_some();
            CommandError::new(if nothing { ErrorCode::NotFound } else { ErrorCode::Failed }, format!("{e:#}"))
        })?;
        let topic = self.mqtt.topics().snapshot(&args.camera);
        let bytes = shot.jpeg.len();
        // Retained: Home Assistant's image and camera show the latest one also after it restarts.
        if !self.mqtt.publish(topic.clone(), shot.jpeg, rumqttc::QoS::AtLeastOnce, true) {
            return Err(CommandError::new(ErrorCode::Busy, "the MQTT queue is full: try again"));
        }
        Ok(json!({
            "camera": args.camera, "topic": topic, "seq": shot.seq, "ts": shot.ts.to_rfc3339(),
            "width": shot.width, "height": shot.height, "bytes": bytes,
        }))
    }

    /// `reload`: re-reads the config file through the service's reload loop.
    pub async fn reload(&self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if self.reload.try_send(tx).is_err() {
            return Err(CommandError::new(ErrorCode::Busy, "a reload is in progress"));
        }
        rx.await.unwrap_or_else(|_| Err(CommandError::new(ErrorCode::Failed, "the service is stopping")))
    }
}
