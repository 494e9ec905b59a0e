//! `[[camera]]`: a camera, its V4L2 format and its zones.

use super::schedule::{ScheduleWindow, SnapshotSchedule};
use serde::Deserialize;
use std::path::PathBuf;

/// How a camera records.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// Everything, kept by retention.
    #[default]
    Continuous,
    /// Everything, but unlocked footage kept only for `pre_roll_s`.
    Events,
    /// Nothing.
    Off,
}

impl RecordMode {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Continuous => "continuous",
            Self::Events => "events",
            Self::Off => "off",
        }
    }
}

/// Which recorder takes a camera's stream.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// In process: the RTSP client receives, the service writes the segments.
    Native,
    /// One ffmpeg per camera.
    Ffmpeg,
}

/// One `[[camera]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// `[a-z0-9_-]{1,32}`, not starting with `_`.
    pub id: String,
    /// A name for people (Home Assistant); the id title-cased when absent.
    pub name: Option<String>,
    /// `rtsp(s)://`, `http(s)://`, `v4l2:///dev/videoN` or `lavfi:<graph>`.
    pub source: String,
    /// File with the password spliced into the source URL.
    pub password_file: Option<PathBuf>,
    /// The recorder: `native` (the default for `rtsp://`) or `ffmpeg` (every other source).
    pub capture: Option<CaptureMode>,
    /// Recording mode.
    #[serde(default)]
    pub record: RecordMode,
    /// Segment length in seconds.
    #[serde(default = "default_segment_s")]
    pub segment_s: u64,
    /// Days footage is kept.
    #[serde(default = "default_retain_days")]
    pub retain_days: u64,
    /// A second stream of the camera to sample from (a sub-stream URL), instead of `source`.
    pub sample_source: Option<String>,
    /// Frames per second offered to workers; 0 = none.
    #[serde(default = "default_sample_fps")]
    pub sample_fps: f64,
    /// Width of offered frames in pixels (aspect kept).
    #[serde(default = "default_sample_width")]
    pub sample_width: u32,
    /// Higher gets sampling budget first.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Capture format for `v4l2://` sources.
    pub v4l2: Option<V4l2Config>,
    /// Zones of this camera.
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneConfig>,
    /// Windows of the week with their own recording mode; `record` applies outside them.
    #[serde(default)]
    pub schedule: Vec<ScheduleWindow>,
    /// Periodic snapshots kept under the data directory.
    #[serde(default)]
    pub snapshot_schedule: Vec<SnapshotSchedule>,
}

impl CameraConfig {
    /// Whether the camera may record in `events` mode (its `record`, or a window of its
    /// schedule): retention then keeps only what it recorded in `continuous` mode for
    /// `retain_days`, the rest as pre-roll.
    pub fn may_record_events(&self) -> bool {
        self.record == RecordMode::Events || self.schedule.iter().any(|w| w.record == RecordMode::Events)
    }

    /// Whether the in-process recorder takes this camera: `rtsp://` sources unless
    /// `capture = "ffmpeg"`.
    pub fn native_capture(&self) -> bool {
        self.source.starts_with("rtsp://") && self.capture != Some(CaptureMode::Ffmpeg)
    }

    /// Whether the camera records at some time (its `record`, or a window of its schedule).
    pub fn ever_records(&self) -> bool {
        self.record != RecordMode::Off || self.schedule.iter().any(|w| w.record != RecordMode::Off)
    }
}

fn default_segment_s() -> u64 {
    60
}
fn default_retain_days() -> u64 {
    7
}
fn default_sample_fps() -> f64 {
    1.0
}
fn default_sample_width() -> u32 {
    640
}
fn default_priority() -> u32 {
    100
}

/// Pixel formats a V4L2 camera may be asked for.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum PixelFormat {
    /// Motion JPEG.
    #[default]
    #[serde(rename = "MJPG")]
    Mjpg,
    /// Packed YUV 4:2:2.
    #[serde(rename = "YUYV")]
    Yuyv,
    /// H.264 elementary stream.
    #[serde(rename = "H264")]
    H264,
}

/// `[camera.v4l2]`: the capture format asked of a V4L2 device.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2Config {
    /// Width in pixels.
    #[serde(default = "default_v4l2_width")]
    pub width: u32,
    /// Height in pixels.
    #[serde(default = "default_v4l2_height")]
    pub height: u32,
    /// Frames per second.
    #[serde(default = "default_v4l2_fps")]
    pub fps: u32,
    /// Pixel format.
    #[serde(default)]
    pub format: PixelFormat,
}

fn default_v4l2_width() -> u32 {
    1280
}
fn default_v4l2_height() -> u32 {
    720
}
fn default_v4l2_fps() -> u32 {
    15
}

/// Which crossings of a line count.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LineDirection {
    /// Both ways.
    #[default]
    Any,
    /// From the left of a→b to its right.
    Ab,
    /// From the right of a→b to its left.
    Ba,
}

/// A point `[x, y]`, normalized 0..1, origin top-left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point(pub [f64; 2]);

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read the whole array: a fixed-size array would silently ignore a third number.
        let numbers = Vec::<f64>::deserialize(deserializer)?;
        match numbers[..] {
            [x, y] => Ok(Point([x, y])),
            _ => Err(serde::de::Error::invalid_length(numbers.len(), &"a point [x, y]")),
        }
    }
}

/// One `[[camera.zone]]`: a polygon or a line.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// `[a-z0-9_-]{1,32}`, unique within the camera.
    pub id: String,
    /// A name for people (Home Assistant); the id title-cased when absent.
    pub name: Option<String>,
    /// Polygon corners (a zone has a polygon or a line).
    pub polygon: Option<Vec<Point>>,
    /// Line end points a, b.
    pub line: Option<Vec<Point>>,
    /// Labels that count; empty = every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Detections below this confidence are not seen.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f64,
    /// Consecutive observations before inside/outside flips.
    #[serde(default = "default_inertia")]
    pub inertia: u32,
    /// Seconds inside before a dwell event; 0 = none.
    #[serde(default)]
    pub dwell_s: u64,
    /// Occupancy that raises a count event; 0 = none.
    #[serde(default)]
    pub count_threshold: u32,
    /// Lock footage around this zone's events.
    #[serde(default)]
    pub lock: bool,
    /// Which crossings count (lines only).
    pub direction: Option<LineDirection>,
}

fn default_min_confidence() -> f64 {
    0.5
}
fn default_inertia() -> u32 {
    2
}
