//! The viewing surface (DESIGN §9): a small authenticated HTTP(S) server in the
//! node, off the recording path. It serves what is already on disk and in the
//! index: the cameras and their timelines as JSON, recorded footage as HLS over
//! the segment files (streamed, under a read lock), live view as HLS over the
//! fragments of the segment being written; never transcoding.

pub mod api;
pub mod auth;
pub mod clip;
pub mod fmp4;
pub mod footage;
pub mod live;
pub mod media;
pub mod playlist;
pub mod routes;
pub mod secrets;
pub mod server;

use crate::capture::CameraStates;
use crate::capture::snapshot::Snapshots;
use crate::config::LoadedConfig;
use crate::recording::sweeper::ReadLocks;
use crate::store::Store;
use anyhow::Result;
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};

/// Binds `[http]` of `config` (when present) and starts serving; `None` when it is absent.
/// Errors name the key (`http.listen`, `http.cert_file`, …).
pub async fn start(
    config: watch::Receiver<Arc<LoadedConfig>>,
    (store, reads, cameras): (Store, ReadLocks, CameraStates),
    snapshots: Snapshots,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let loaded = config.borrow().clone();
    let Some(http) = &loaded.config.http else { return Ok(None) };
    let listener = server::Listener::bind(http, loaded.config_dir()).await?;
    let data_dir = loaded.data_dir.clone();
    let key = tokio::task::spawn_blocking(move || secrets::session_secret(&data_dir)).await??;
    let admin = match http.users.is_empty() {
        true => Some(generated_admin(&loaded).await?),
        false => None,
    };
    let app = routes::App {
        config,
        store,
        reads,
        cameras,
        key: auth::SessionKey::new(key),
        admin,
        limiter: Default::default(),
        password_checks: Semaphore::new(1),
        viewers: Arc::new(Semaphore::new(loaded.board.limits.max_viewers)),
        live: Default::default(),
        ffmpeg: snapshots.ffmpeg.clone(),
        snapshots,
        secure: http.cert_file.is_some(),
        started: std::time::Instant::now(),
    };
    tracing::info!(url = %listener.url(), "viewing surface listening");
    Ok(Some(tokio::spawn(listener.serve(app))))
}

/// The generated `admin`, its password logged once, when it is made.
async fn generated_admin(config: &LoadedConfig) -> Result<crate::config::schema::HttpUserConfig> {
    let data_dir = config.data_dir.clone();
    let (user, password) = tokio::task::spawn_blocking(move || secrets::generated_admin(&data_dir)).await??;
    match password {
        Some(password) => tracing::warn!(
            user = secrets::ADMIN,
            password = %password,
            "no [[http.user]] in the config: made this login for the viewing surface; it is shown only this once (its hash is in data_dir/http-admin.hash)"
        ),
        None => tracing::info!(user = secrets::ADMIN, "no [[http.user]] in the config: the generated admin may log in"),
    }
    Ok(user)
}
