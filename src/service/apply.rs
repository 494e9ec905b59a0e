//! Reloading the node: the config file is read again and what changed is
//! applied camera by camera; an invalid file, or one that changes what needs
//! a restart, changes nothing.

use super::cameras;
use super::node::Node;
use super::reload::{self, CameraChange, ReloadPlan};
use crate::capture::source::Source;
use crate::commands::auth::Verifier;
use crate::commands::reply::{CommandError, Outcome};
use crate::config::{self, LoadedConfig};
use crate::protocol::ErrorCode;
use crate::wallclock::UnixMs;
use crate::zones::engine::ZoneEngine;
use crate::zones::service::ZoneUpdate;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Each new camera's source and the secrets to scrub from its logs.
type Sources = BTreeMap<String, (Source, Vec<String>)>;

/// A new config that loaded and may be applied.
struct Accepted {
    config: LoadedConfig,
    verifier: Verifier,
    plan: ReloadPlan,
    sources: Sources,
}

fn invalid(message: String) -> CommandError {
    CommandError::new(ErrorCode::Failed, message)
}

impl Node {
    /// Re-reads the config file and applies what changed, camera by camera.
    pub async fn reload(&mut self) -> Outcome {
        let old = self.current();
        let outcome = match self.accept(&old) {
            Ok(accepted) => Ok(self.apply(&old, accepted).await),
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(summary) => tracing::info!(changes = %summary, "config reloaded"),
            Err(e) => {
                for line in e.message.lines() {
                    tracing::error!(problem = %line, "config not reloaded");
                }
            }
        }
        outcome
    }

    /// Loads the file again and plans the change; refuses what cannot be applied live.
    fn accept(&self, old: &LoadedConfig) -> Result<Accepted, CommandError> {
        let new = config::load(&old.path).map_err(|e| invalid(format!("{e}\nnothing was changed")))?;
        let verifier = Verifier::from_config(&new).map_err(|e| invalid(format!("{e:#}\nnothing was changed")))?;
        let mut plan = reload::plan(old, &new);
        if !plan.restart_required.is_empty() {
            return Err(invalid(format!(
                "{}: changes to {} need a restart of the service (systemctl restart heldar-edge); nothing was changed",
                new.path.display(),
                plan.restart_required.join(", ")
            )));
        }
        let mut sources = BTreeMap::new();
        for (i, camera) in new.config.cameras.iter().enumerate() {
            let source = cameras::camera_source(&new, i, camera).map_err(|e| invalid(format!("{e:#}")))?;
            sources.insert(camera.id.clone(), source);
        }
        // A changed password (same file, new content) restarts the recorder too.
        for (id, change) in &mut plan.cameras {
            let running = self.cameras.source(id);
            if matches!(change, CameraChange::Updated(_) | CameraChange::Unchanged)
                && running != sources.get(id.as_str()).map(|(s, _)| s)
            {
                *change = CameraChange::Restarted;
            }
        }
        Ok(Accepted { config: new, verifier, plan, sources })
    }

    /// Applies an accepted config; returns what changed (the reply of `reload`).
    async fn apply(&mut self, old: &LoadedConfig, accepted: Accepted) -> serde_json::Value {
        let Accepted { config: new, verifier, plan, mut sources } = accepted;
        let limits = &new.board.limits;
        let mut engines = Vec::new();
        for (id, change) in &plan.cameras {
            let camera = new.config.cameras.iter().find(|c| c.id == *id);
            self.apply_camera(id, change, camera, &mut sources).await;
            let before = old.config.cameras.iter().find(|c| c.id == *id);
            let zones = camera.map(|c| c.zones.as_slice()).unwrap_or_default();
            if before.map(|c| c.zones.as_slice()).unwrap_or_default() != zones {
                let engine = (!zones.is_empty()).then(|| ZoneEngine::new(zones, limits.max_tracks_per_camera));
                engines.push((id.clone(), engine));
            }
        }
        self.modes.configure(&new.config, UnixMs::now()).await;
        let rolls =
            (Duration::from_secs(new.config.events.pre_roll_s), Duration::from_secs(new.config.events.post_roll_s));
        let frame_labels = crate::zones::objects::frame_labels(&new.config.cameras);
        if self.zones.send(ZoneUpdate { engines, rolls, frame_labels }).await.is_err() {
            tracing::error!("the zone engines are gone: zones not reloaded");
        }
        self.start_tasks(&new, plan.backup);
        self.verifier.send_replace(Arc::new(verifier));
        // With Home Assistant discovery on before and after, the discovery task clears a removed
        // camera's state after it removed the camera's entities (HA would render the empty
        // state). Discovery turned on now never advertised the camera: it is cleared here.
        let removed = plan.cameras.iter().filter(|(_, change)| matches!(change, CameraChange::Removed));
        let advertised = old.config.homeassistant.discovery && new.config.homeassistant.discovery;
        let cleared: Vec<String> = match advertised {
            true => Vec::new(),
            false => removed.map(|(id, _)| id.clone()).collect(),
        };
        self.config.send_replace(Arc::new(new));
        for id in cleared {
            self.cameras.clear_state(&id);
        }
        plan.summary()
    }

    /// Starts, stops, restarts or updates one camera.
    async fn apply_camera(
        &mut self,
        id: &str,
        change: &CameraChange,
        camera: Option<&crate::config::schema::CameraConfig>,
        sources: &mut Sources,
    ) {
        match (change, camera) {
            (CameraChange::Removed, _) => self.cameras.stop(id, true).await,
            (CameraChange::Restarted, Some(camera)) => {
                self.cameras.stop(id, false).await;
                if let Some((source, secrets)) = sources.remove(id) {
                    self.cameras.start(camera.clone(), source, secrets);
                }
            }
            (CameraChange::Added, Some(camera)) => {
                if let Some((source, secrets)) = sources.remove(id) {
                    self.cameras.start(camera.clone(), source, secrets);
                }
            }
            (_, Some(camera)) => self.cameras.update(camera.clone()),
            _ => {}
        }
    }
}
