//! Capture: one supervised recorder per camera. An `rtsp://` camera is
//! received in process (`native/`: the RTSP client, the segment writer, the
//! sampler's stream); every other source, and `capture = "ffmpeg"`, is one
//! ffmpeg fed by the network (RTSP, HTTP), its synthetic sources, or a V4L2
//! capture thread. The recorder (`recorder.rs`) writes segments, `segments.rs`
//! turns each closed one into an index row, and the supervisor
//! (`supervisor.rs`) is the state machine around them.
pub mod controls;
pub mod feed;
pub mod ffmpeg;
pub mod health;
pub mod modes;
pub mod native;
pub mod recorder;
mod report;
pub mod schedule;
pub mod segments;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod stills;
pub mod supervisor;
pub mod v4l2;
mod watch;

pub use supervisor::CameraSupervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The latest state message of every camera, for `P/stats`, and the segment each is writing.
#[derive(Clone, Default)]
pub struct CameraStates {
    states: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    writing: Arc<Mutex<BTreeMap<String, PathBuf>>>,
}

impl CameraStates {
    /// Records `camera`'s latest state.
    pub fn set(&self, camera: &str, state: serde_json::Value) {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).insert(camera.to_string(), state);
    }

    /// Forgets a camera no longer configured.
    pub fn remove(&self, camera: &str) {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).remove(camera);
        self.set_writing(camera, None);
    }

    /// All states, by camera id.
    pub fn snapshot(&self) -> serde_json::Value {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::Value::Object(states.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Records the segment file `camera`'s recorder writes now (`None`: none).
    pub fn set_writing(&self, camera: &str, file: Option<PathBuf>) {
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        match file {
            Some(file) => writing.insert(camera.to_string(), file),
            None => writing.remove(camera),
        };
    }

    /// The segment file `camera`'s recorder writes now.
    pub fn writing(&self, camera: &str) -> Option<PathBuf> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner()).get(camera).cloned()
    }
}
