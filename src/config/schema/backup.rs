//! `[backup]`: destinations and the policies that fill them.

use crate::config::size::ByteSize;
use serde::Deserialize;
use std::path::PathBuf;

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
