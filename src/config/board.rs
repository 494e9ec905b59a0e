//! Board profiles: the capacity limits in force on one kind of board and the
//! ffmpeg settings that suit its hardware.

use super::size::ByteSize;
use crate::capacity;
use serde::Deserialize;

/// The board profiles shipped in `board/`, compiled into the binary.
pub const BUILTIN_BOARDS: &[(&str, &str)] = &[
    ("generic", include_str!("../../board/generic.toml")),
    ("rpi4", include_str!("../../board/rpi4.toml")),
    ("rk3588", include_str!("../../board/rk3588.toml")),
    ("qemu-arm64", include_str!("../../board/qemu-arm64.toml")),
];

/// One board profile (`board/<name>.toml`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    /// Human description of the board.
    pub description: String,
    /// Capacity limits in force on this board.
    pub limits: BoardLimits,
    /// ffmpeg settings for this board's hardware.
    pub ffmpeg: BoardFfmpeg,
}

/// The capacity limits of DESIGN §3, each at most its compile-time ceiling.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardLimits {
    /// Cameras configured.
    pub max_cameras: usize,
    /// Zones per camera.
    pub max_zones_per_camera: usize,
    /// Points per zone polygon.
    pub max_zone_points: usize,
    /// Tracks the zone engine remembers per camera.
    pub max_tracks_per_camera: usize,
    /// Sampler ring slots per camera.
    pub frame_slots: usize,
    /// Largest sampled JPEG frame.
    pub max_frame_bytes: ByteSize,
    /// Global sampling budget in frames per second.
    pub max_total_fps: f64,
    /// Unsent events kept while the broker is away.
    pub outbox_max: u64,
    /// Perception workers tracked at once.
    pub max_workers: usize,
    /// Detections accepted in one message.
    pub max_detections_per_message: usize,
    /// Largest detection or worker status message accepted.
    pub max_message_bytes: ByteSize,
    /// Resident memory the service stays within on this board (ffmpeg not counted): reported
    /// in `P/stats`, logged when exceeded.
    pub rss_budget: ByteSize,
    /// Media streams (playlists' files, clips) the viewing surface serves at once; beyond it
    /// `503` with `Retry-After`.
    #[serde(default = "default_max_viewers")]
    pub max_viewers: usize,
}

fn default_max_viewers() -> usize {
    4
}

/// ffmpeg choices that depend on the board's hardware.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardFfmpeg {
    /// H.264 encoder for sources that are not H.264 already (`libx264`, `h264_v4l2m2m`, `h264_rkmpp`).
    pub h264_encoder: String,
    /// The sampler's hardware decoder for H.264 streams; software when absent.
    #[serde(default)]
    pub h264_decoder: Option<String>,
    /// The sampler's hardware decoder for H.265 streams; software when absent.
    #[serde(default)]
    pub hevc_decoder: Option<String>,
}

impl BoardLimits {
    /// Checks every limit against its ceiling; returns `(key, problem)` pairs.
    pub fn ceiling_violations(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut check = |key: &'static str, value: f64, min: f64, max: f64| {
            if !(value >= min && value <= max) {
                problems.push((key, format!("must be in {min}..={max} (compile-time ceiling), is {value}")));
            }
        };
        check("limits.max_cameras", self.max_cameras as f64, 1.0, capacity::MAX_CAMERAS as f64);
        check(
            "limits.max_zones_per_camera",
            self.max_zones_per_camera as f64,
            0.0,
            capacity::MAX_ZONES_PER_CAMERA as f64,
        );
        check("limits.max_zone_points", self.max_zone_points as f64, 3.0, capacity::MAX_ZONE_POINTS as f64);
        check(
            "limits.max_tracks_per_camera",
            self.max_tracks_per_camera as f64,
            1.0,
            capacity::MAX_TRACKS_PER_CAMERA as f64,
        );
        check("limits.frame_slots", self.frame_slots as f64, 1.0, capacity::MAX_FRAME_SLOTS as f64);
        check("limits.max_frame_bytes", self.max_frame_bytes.0 as f64, 1024.0, capacity::MAX_FRAME_BYTES as f64);
        check("limits.max_total_fps", self.max_total_fps, 0.1, capacity::MAX_TOTAL_FPS);
        check("limits.outbox_max", self.outbox_max as f64, 1.0, capacity::MAX_OUTBOX as f64);
        check("limits.max_workers", self.max_workers as f64, 1.0, capacity::MAX_WORKERS as f64);
        check(
            "limits.max_detections_per_message",
            self.max_detections_per_message as f64,
            1.0,
            capacity::MAX_DETECTIONS_PER_MESSAGE as f64,
        );
        check("limits.max_message_bytes", self.max_message_bytes.0 as f64, 1024.0, capacity::MAX_MESSAGE_BYTES as f64);
        check("limits.max_viewers", self.max_viewers as f64, 1.0, capacity::MAX_VIEWERS as f64);
        check("limits.rss_budget", self.rss_budget.0 as f64, (8 << 20) as f64, (4u64 << 30) as f64);
        problems
    }
}

/// Where a board profile comes from: a built-in name or a file path.
pub fn is_board_path(board: &str) -> bool {
    board.contains('/') || board.ends_with(".toml")
}

/// The text of a built-in profile, if `name` is one.
pub fn builtin_board(name: &str) -> Option<&'static str> {
    BUILTIN_BOARDS.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// Names of the built-in profiles, for error messages.
pub fn builtin_board_names() -> String {
    BUILTIN_BOARDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}
