//! The TOML schema of `config.toml` (DESIGN §7) as typed structs.
//! Unknown keys are errors; defaults are the ones the reference documents.

use super::size::ByteSize;
use serde::Deserialize;
use std::path::PathBuf;

/// The whole `config.toml`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`
    #[serde(default)]
    pub node: NodeConfig,
    /// `[mqtt]`
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// `[storage]`
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[sampler]`
    #[serde(default)]
    pub sampler: SamplerConfig,
    /// `[events]`
    #[serde(default)]
    pub events: EventsConfig,
    /// `[[camera]]`
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    /// `[backup]`
    #[serde(default)]
    pub backup: BackupConfig,
    /// `[commands]`
    #[serde(default)]
    pub commands: CommandsConfig,
    /// `[homeassistant]`
    #[serde(default)]
    pub homeassistant: HomeAssistantConfig,
}

/// `[node]`: who this node is and where it keeps its data.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id, also the MQTT topic level; the hostname when absent.
    pub id: Option<String>,
    /// Board profile: a built-in name or a path to a profile file.
    #[serde(default = "default_board")]
    pub board: String,
    /// Where `index.db`, snapshots and exports live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { id: None, board: default_board(), data_dir: default_data_dir() }
    }
}

fn default_board() -> String {
    "generic".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/heldar")
}

/// `[mqtt]`: the broker connection.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    #[serde(default = "default_mqtt_url")]
    pub url: String,
    /// First topic level; `P` is `<topic_prefix>/<node.id>`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// MQTT client id; `heldar-<node.id>` when absent.
    pub client_id: Option<String>,
    /// Broker user name.
    pub username: Option<String>,
    /// File holding the broker password.
    pub password_file: Option<PathBuf>,
    /// CA bundle for `mqtts://` (system roots when absent).
    pub ca_file: Option<PathBuf>,
    /// Keep-alive interval in seconds.
    #[serde(default = "default_keepalive")]
    pub keepalive_s: u64,
    /// Interval of `P/stats` in seconds.
    #[serde(default = "default_stats_interval")]
    pub stats_interval_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: default_mqtt_url(),
            topic_prefix: default_topic_prefix(),
            client_id: None,
            username: None,
            password_file: None,
            ca_file: None,
            keepalive_s: default_keepalive(),
            stats_interval_s: default_stats_interval(),
        }
    }
}

fn default_mqtt_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_topic_prefix() -> String {
    "heldar".into()
}
fn default_keepalive() -> u64 {
    15
}
fn default_stats_interval() -> u64 {
    30
}

/// `[storage]`: where segments go and how much room they may take.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Segment root; `<data_dir>/recordings` when absent.
    pub recordings_dir: Option<PathBuf>,
    /// Retention keeps at least this share of the file system free.
    #[serde(default = "default_min_free_percent")]
    pub min_free_percent: f64,
    /// Optional cap on all recordings.
    pub max_bytes: Option<ByteSize>,
    /// Seconds between retention sweeps.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            recordings_dir: None,
            min_free_percent: default_min_free_percent(),
            max_bytes: None,
            sweep_interval_s: default_sweep_interval(),
        }
    }
}

fn default_sweep_interval() -> u64 {
    60
}

fn default_min_free_percent() -> f64 {
    10.0
}

/// `[sampler]`: the global frame budget.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// Frames per second shared by all sampled cameras; the board's limit when absent.
    pub max_total_fps: Option<f64>,
}

#[allow(clippy::derivable_impls)]
impl Default for SamplerConfig {
    fn default() -> Self {
        Self { max_total_fps: None }
    }
}

/// `[events]`: footage kept around events.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Seconds of footage kept before an event.
    #[serde(default = "default_pre_roll")]
    pub pre_roll_s: u64,
    /// Seconds of footage kept after an event.
    #[serde(default = "default_post_roll")]
    pub post_roll_s: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { pre_roll_s: default_pre_roll(), post_roll_s: default_post_roll() }
    }
}

fn default_pre_roll() -> u64 {
    10
}
fn default_post_roll() -> u64 {
    30
}

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

/// One `[[camera]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// `[a-z0-9_-]{1,32}`, not starting with `_`.
    pub id: String,
    /// `rtsp(s)://`, `http(s)://`, `v4l2:///dev/videoN` or `lavfi:<graph>`.
    pub source: String,
    /// File with the password spliced into the source URL.
    pub password_file: Option<PathBuf>,
    /// Recording mode.
    #[serde(default)]
    pub record: RecordMode,
    /// Segment length in seconds.
    #[serde(default = "default_segment_s")]
    pub segment_s: u64,
    /// Days footage is kept.
    #[serde(default = "default_retain_days")]
    pub retain_days: u64,
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

/// `[backup]`: destinations and the policies that fill them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// `[[backup.destination]]`
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationConfig>,
    /// `[[backup.policy]]`
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
}

/// Kinds of backup destination.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// A directory.
    Local,
    /// A directory that must be a mount point of a removable or network device.
    Usb,
    /// An SFTP server, through rclone.
    Sftp,
    /// An S3-compatible store, through rclone.
    S3,
    /// A remote of the user's rclone config.
    Rclone,
}

impl DestinationKind {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Usb => "usb",
            Self::Sftp => "sftp",
            Self::S3 => "s3",
            Self::Rclone => "rclone",
        }
    }
}

/// One `[[backup.destination]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// `[a-z0-9_-]{1,32}`.
    pub id: String,
    /// What it is.
    pub kind: DestinationKind,
    /// Directory (local, usb) or path/bucket prefix on the remote.
    pub path: String,
    /// sftp: host name.
    pub host: Option<String>,
    /// sftp: port.
    pub port: Option<u16>,
    /// sftp: user name.
    pub user: Option<String>,
    /// sftp: file holding the password.
    pub password_file: Option<PathBuf>,
    /// sftp: private key file.
    pub key_file: Option<PathBuf>,
    /// s3: endpoint URL (MinIO, Ceph RGW, …); AWS when absent.
    pub endpoint: Option<String>,
    /// s3: region.
    pub region: Option<String>,
    /// s3: rclone provider name (`AWS`, `Minio`, `Ceph`, …).
    pub provider: Option<String>,
    /// s3: access key id.
    pub access_key_id: Option<String>,
    /// s3: file holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// rclone: name of a remote in the user's rclone config.
    pub remote: Option<String>,
    /// rclone: path of that rclone config.
    pub rclone_config: Option<PathBuf>,
}

/// How a copied file is verified.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Compare sizes.
    #[default]
    Size,
    /// Compare SHA-256 digests.
    Sha256,
}

/// One `[[backup.policy]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `[a-z0-9_-]{1,32}`.
    pub id: String,
    /// Id of a `[[backup.destination]]`.
    pub destination: String,
    /// Cameras backed up; empty = all.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Seconds between runs; 0 = only on request.
    #[serde(default = "default_every_s")]
    pub every_s: u64,
    /// Window looked back on each run; 0 = everything not yet copied.
    #[serde(default = "default_lookback_s")]
    pub lookback_s: u64,
    /// Copy only evidence-locked footage.
    #[serde(default)]
    pub only_locked: bool,
    /// Verification of each copied file.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Files copied at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Bytes per second, all files together; no limit when absent.
    pub bandwidth: Option<ByteSize>,
}

fn default_concurrency() -> u32 {
    2
}

fn default_every_s() -> u64 {
    86_400
}
fn default_lookback_s() -> u64 {
    86_400
}

/// How commands are authorized.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Signed with a key's HMAC secret.
    #[default]
    Hmac,
    /// Trust the broker's ACL alone.
    None,
}

impl AuthMode {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::None => "none",
        }
    }
}

/// `[commands]`: who may run which command.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Authorization mode.
    #[serde(default)]
    pub auth: AuthMode,
    /// With `auth = "none"`: the commands anyone on the broker may run.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `[[commands.key]]`
    #[serde(default, rename = "key")]
    pub keys: Vec<CommandKeyConfig>,
}

/// One `[[commands.key]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandKeyConfig {
    /// `[A-Za-z0-9_-]{1,64}`.
    pub id: String,
    /// File holding the HMAC secret.
    pub secret_file: PathBuf,
    /// Commands this key may run.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `[homeassistant]`: MQTT discovery.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// Publish discovery configs.
    #[serde(default)]
    pub discovery: bool,
    /// Discovery topic prefix.
    #[serde(default = "default_ha_prefix")]
    pub prefix: String,
    /// A recording switch per camera (trusts the broker ACL).
    #[serde(default)]
    pub switches: bool,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self { discovery: false, prefix: default_ha_prefix(), switches: false }
    }
}

fn default_ha_prefix() -> String {
    "homeassistant".into()
}
