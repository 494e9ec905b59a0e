//! The native recorder: RTSP received in process (retina), segments written
//! by the service itself in the same fragmented MP4 the ffmpeg recorder
//! writes, and the sampler's stream made from the same frames. It reports to
//! the camera's supervisor what ffmpeg's pipes say on the ffmpeg path (files
//! opened, the video format, progress, errors, closed segments), so
//! indexing, health and everything downstream stay one code path.

mod batching;
mod connect;
pub mod cutter;
mod files;
pub mod fmp4;
mod run;
mod sample;
pub mod ts;

pub use connect::split_credentials;
pub use run::{NativePlan, spawn};

use super::ffmpeg::{ListedSegment, StderrLine};

/// What a native recorder run tells its supervisor.
#[derive(Debug)]
pub enum NativeEvent {
    /// What the ffmpeg recorder would say on its log (`Opening`, `Video`, `Error`).
    Said(StderrLine),
    /// How far into the stream the run is, and its recent frame rate (about once a second).
    Progress {
        /// Stream time of the last frame, µs from the run's first.
        out_time_us: i64,
        /// Frames per second since the last report.
        fps: f64,
    },
    /// A segment closed, as a line of ffmpeg's segment list.
    Closed(ListedSegment),
}
