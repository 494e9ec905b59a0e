//! Capture: one supervised recording ffmpeg per camera, fed by the network
//! (RTSP, HTTP), ffmpeg's synthetic sources, or a V4L2 capture thread.

pub mod ffmpeg;
pub mod health;
pub mod source;
pub mod supervisor;
pub mod v4l2;

pub use supervisor::CameraSupervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The latest state message of every camera, for `P/stats`; one entry per configured camera.
#[derive(Clone, Default)]
pub struct CameraStates(Arc<Mutex<BTreeMap<String, serde_json::Value>>>);

impl CameraStates {
    /// Records `camera`'s latest state.
    pub fn set(&self, camera: &str, state: serde_json::Value) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(camera.to_string(), state);
    }

    /// All states, by camera id.
    pub fn snapshot(&self) -> serde_json::Value {
        let states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::Value::Object(states.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// Finds `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
