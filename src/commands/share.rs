//! `share`: a link that plays one camera's footage over a window without an
//! account, until it expires. The token is signed with the viewing surface's
//! secret, so only this node honours it.

use super::exec::{Host, bad_request, cameras, failed, window};
use super::reply::{CommandError, Outcome};
use super::request::{self, Request};
use crate::config::LoadedConfig;
use crate::config::schema::HttpConfig;
use crate::protocol::ErrorCode;
use crate::viewing::auth::{SessionKey, Share};
use crate::wallclock::UnixMs;
use serde::Deserialize;
use serde_json::json;

/// Longest window a link shares.
const SHARE_MAX_WINDOW_MS: i64 = 86_400_000;
/// Longest a link lives, and how long by default.
const SHARE_MAX_TTL_S: u64 = 7 * 86_400;
const SHARE_DEFAULT_TTL_S: u64 = 86_400;

impl Host {
    /// `share`: a URL playing `camera` over `from..to`, valid `ttl_s` seconds.
    pub async fn share(&self, request: &Request) -> Outcome {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            camera: String,
            from: String,
            to: String,
            ttl_s: Option<u64>,
        }
        let args: Args = request::args(request)?;
        let config = self.config.borrow().clone();
        let Some(http) = config.config.http.clone() else {
            return Err(CommandError::new(ErrorCode::Failed, "the viewing surface is off: add [http] to the config"));
        };
        cameras(&config, std::slice::from_ref(&args.camera))?;
        let (from, to) = window(&args.from, &args.to)?;
        if to.0 - from.0 > SHARE_MAX_WINDOW_MS {
            return Err(bad_request("a link shares at most one day"));
        }
        let ttl_s = args.ttl_s.unwrap_or(SHARE_DEFAULT_TTL_S);
        if !(1..=SHARE_MAX_TTL_S).contains(&ttl_s) {
            return Err(bad_request(format!("ttl_s: 1..={SHARE_MAX_TTL_S}")));
        }
        let data_dir = config.data_dir.clone();
        let secret = tokio::task::spawn_blocking(move || crate::viewing::secrets::session_secret(&data_dir))
            .await
            .map_err(|e| failed(e.into()))?
            .map_err(failed)?;
        let expires = UnixMs(UnixMs::now().0 + ttl_s as i64 * 1000);
        let share = Share { camera: args.camera.clone(), from, to, expires };
        let token = SessionKey::new(secret).share(&share);
        let path = format!("/cameras/{}/recorded.m3u8?share={token}", args.camera);
        Ok(json!({
            "url": format!("{}{path}", base_url(&http, &config)),
            "path": path,
            "clip": format!("{}/cameras/{}/clip.mp4?share={token}", base_url(&http, &config), args.camera),
            "camera": args.camera,
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
            "expires": expires.to_rfc3339(),
        }))
    }
}

/// Where viewers reach the surface: `public_url`, else the listen address (the host name
/// when it listens on every address).
fn base_url(http: &HttpConfig, config: &LoadedConfig) -> String {
    if let Some(url) = &http.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let scheme = if http.cert_file.is_some() { "https" } else { "http" };
    match http.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let host = crate::config::hostname().unwrap_or_else(|| config.node_id.clone());
            format!("{scheme}://{host}:{}", addr.port())
        }
        _ => format!("{scheme}://{}", http.listen),
    }
}
