//! The TOML schema of `config.toml` (DESIGN §7) as typed structs.
//! Unknown keys are errors; defaults are the ones the reference documents.

mod backup;
mod camera;
mod http;
mod schedule;

pub use backup::*;
pub use camera::*;
pub use http::*;
pub use schedule::*;

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
    /// `[http]`: the viewing surface, off when absent.
    pub http: Option<HttpConfig>,
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
    /// The IANA time zone schedules are read in (`Europe/Berlin`); the system's when absent.
    pub timezone: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { id: None, board: default_board(), data_dir: default_data_dir(), timezone: None }
    }
}

impl NodeConfig {
    /// The time zone schedules are read in: `timezone` from the tz database (bundled, or the
    /// system's), else the system's zone (`TZ`, `/etc/localtime`), else UTC.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        match &self.timezone {
            Some(name) => jiff::tz::TimeZone::get(name).unwrap_or_else(|e| {
                tracing::warn!(timezone = %name, error = %e, "unknown time zone: UTC used");
                jiff::tz::TimeZone::UTC
            }),
            None => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
        }
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
