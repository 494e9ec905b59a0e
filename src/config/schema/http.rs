//! `[http]`: the viewing surface (live and recorded playback in a browser).

use serde::Deserialize;
use std::path::PathBuf;

/// `[http]`: where the viewing surface listens and who may use it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// PEM certificate chain: serve HTTPS only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The URL viewers reach the surface at (behind a proxy, by a name), for share links.
    pub public_url: Option<String>,
    /// Hours a login lasts.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// `[[http.user]]`
    #[serde(default, rename = "user")]
    pub users: Vec<HttpUserConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            cert_file: None,
            key_file: None,
            public_url: None,
            session_hours: default_session_hours(),
            users: Vec::new(),
        }
    }
}

/// One `[[http.user]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUserConfig {
    /// Login name, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// argon2id PHC string, as `heldar-edge passwd` prints it.
    pub password_hash: String,
    /// Camera ids this user may see, or `"*"` for all.
    #[serde(default = "all_cameras")]
    pub cameras: Vec<String>,
    /// What this user may do besides nothing: `view`, `export`, `lock`.
    #[serde(default = "view_only")]
    pub allow: Vec<HttpRight>,
}

/// What a viewing user may do.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum HttpRight {
    /// Live view, recorded playback, the timeline, events and snapshots.
    View,
    /// Download clips.
    Export,
    /// Lock footage against retention.
    Lock,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_session_hours() -> u64 {
    12
}

fn all_cameras() -> Vec<String> {
    vec!["*".into()]
}

fn view_only() -> Vec<HttpRight> {
    vec![HttpRight::View]
}
