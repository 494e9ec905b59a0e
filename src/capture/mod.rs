//! Capture: one supervised recording ffmpeg per camera, fed by the network
//! (RTSP, HTTP), ffmpeg's synthetic sources, or a V4L2 capture thread.

pub mod ffmpeg;
pub mod health;
pub mod source;
pub mod supervisor;
pub mod v4l2;

pub use supervisor::CameraSupervisor;

use std::path::PathBuf;

/// Finds `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
