//! What each URL answers: login and logout, then, for a signed-in viewer, the
//! API, the playlists and the segment files, each camera only for a viewer whose
//! scope holds it.

use super::auth::{COOKIE, LoginLimiter, SessionKey, Viewer, cookie_value};
use super::live::LiveFiles;
use super::{api, footage, secrets};
use crate::capture::CameraStates;
use crate::config::LoadedConfig;
use crate::config::schema::{HttpRight, HttpUserConfig};
use crate::recording::sweeper::ReadLocks;
use crate::store::Store;
use crate::wallclock::UnixMs;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Semaphore, watch};

/// A response with any body.
pub type Reply = Response<BoxBody<Bytes, std::io::Error>>;

/// Largest login form read.
const MAX_FORM_BYTES: usize = 4096;

/// Everything the routes read: the config in force (users, cameras), the index and
/// what is being recorded now.
pub struct App {
    /// The config in force; a reload changes users and cameras.
    pub config: watch::Receiver<Arc<LoadedConfig>>,
    /// The index.
    pub store: Store,
    /// Segments being read: retention keeps them.
    pub reads: ReadLocks,
    /// Camera states.
    pub cameras: CameraStates,
    /// Signs session cookies.
    pub key: SessionKey,
    /// The generated `admin` when the config named no user at start.
    pub admin: Option<HttpUserConfig>,
    /// Failed logins per client.
    pub limiter: Mutex<LoginLimiter>,
    /// Password checks run one at a time.
    pub password_checks: Semaphore,
    /// Media streams served at once (`max_viewers`).
    pub viewers: Arc<Semaphore>,
    /// The files live playlists follow.
    pub live: LiveFiles,
    /// The ffmpeg that joins clips.
    pub ffmpeg: std::path::PathBuf,
    /// Decodes the latest frame.
    pub snapshots: crate::capture::snapshot::Snapshots,
    /// Cookies carry `Secure` (served over TLS).
    pub secure: bool,
    /// Monotonic origin of the login limiter's clock.
    pub started: Instant,
}

impl App {
    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// The users who may log in now: the config's, or the generated admin.
    fn user(&self, name: &str) -> Option<HttpUserConfig> {
        let config = self.config.borrow().clone();
        let configured = config.config.http.as_ref().map(|h| h.users.as_slice()).unwrap_or_default();
        match configured.is_empty() {
            true => self.admin.iter().find(|u| u.name == name).cloned(),
            false => configured.iter().find(|u| u.name == name).cloned(),
        }
    }

    /// The viewer a request's session cookie names, if it is valid and the user still exists.
    fn viewer(&self, request: &Request<Incoming>) -> Option<Viewer> {
        let cookies = request.headers().get_all(header::COOKIE);
        let value = cookies.iter().filter_map(|h| h.to_str().ok()).find_map(|h| cookie_value(h, COOKIE))?;
        let name = self.key.check(value, UnixMs::now())?;
        self.user(&name).map(|user| Viewer::of(&user))
    }

    fn session_hours(&self) -> u64 {
        self.config.borrow().config.http.as_ref().map_or(12, |h| h.session_hours)
    }
}

/// Answers one request from `client`.
pub async fn handle(app: &App, request: Request<Incoming>, client: IpAddr) -> Reply {
    let path = request.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let share = share_token(&request);
    match (request.method().clone(), parts.as_slice()) {
        (Method::GET, ["login"]) => html(StatusCode::OK, LOGIN_PAGE),
        (Method::POST, ["login"]) => login(app, request, client).await,
        (Method::POST, ["logout"]) => logout(app),
        (Method::GET, ["assets", HLS_JS_NAME]) => asset(HLS_JS, "text/javascript"),
        (Method::GET | Method::HEAD, ["cameras", camera, rest @ ..]) if share.is_some() => {
            shared(app, &request, camera, rest, share.as_deref().unwrap_or_default()).await
        }
        _ => match app.viewer(&request) {
            Some(viewer) if request.method() == Method::POST => posted(app, request, &viewer, &parts).await,
            Some(viewer) => signed_in(app, &request, &viewer, &parts).await,
            None if parts == [""] => redirect("/login", None),
            None => text(StatusCode::UNAUTHORIZED, "log in first: POST /login"),
        },
    }
}

/// The `share` parameter of a request's query.
fn share_token(request: &Request<Incoming>) -> Option<String> {
    let query = request.uri().query()?;
    api::field(query.as_bytes(), "share")
}

/// What a share link may fetch without an account: its camera's recorded playlist, the
/// segments in its window, and a clip of it.
async fn shared(app: &App, request: &Request<Incoming>, camera: &str, rest: &[&str], token: &str) -> Reply {
    let share = match app.key.check_share(token, UnixMs::now()) {
        Ok(share) if share.camera == camera => share,
        Ok(_) => return text(StatusCode::FORBIDDEN, "this share link is for another camera"),
        Err(why) => return text(StatusCode::FORBIDDEN, why),
    };
    let window = (share.from, share.to);
    let uri_query = format!("?share={}", form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>());
    match rest {
        ["recorded.m3u8"] => footage::recorded(app, camera, window, &uri_query).await,
        ["segments", id, part] => footage::segment(app, camera, (id, part), range(request), Some(window)).await,
        ["clip.mp4"] => super::clip::clip(app, camera, window).await,
        _ => text(StatusCode::FORBIDDEN, "a share link opens its recorded footage only"),
    }
}

/// The forms a signed-in viewer posts: evidence locks.
async fn posted(app: &App, request: Request<Incoming>, viewer: &Viewer, parts: &[&str]) -> Reply {
    match parts {
        ["api", "v1", "cameras", camera, "locks"] if viewer.sees(camera) && viewer.may(HttpRight::Lock) => {
            let Ok(form) = Limited::new(request.into_body(), MAX_FORM_BYTES).collect().await.map(|b| b.to_bytes())
            else {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "a form is at most 4 KiB");
            };
            api::lock(app, viewer, camera, &form).await
        }
        ["api", "v1", "cameras", _, "locks"] => {
            text(StatusCode::FORBIDDEN, "this user may not lock this camera's footage")
        }
        _ => text(StatusCode::NOT_FOUND, "nothing to post here"),
    }
}

async fn signed_in(app: &App, request: &Request<Incoming>, viewer: &Viewer, parts: &[&str]) -> Reply {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET here");
    }
    let query = request.uri().query().unwrap_or_default();
    if parts != [""] && !viewer.may(HttpRight::View) {
        return text(StatusCode::FORBIDDEN, "this user may not view footage");
    }
    match parts {
        [""] => html(StatusCode::OK, INDEX_PAGE),
        ["api", "v1", "me"] => api::me(viewer),
        ["api", "v1", "cameras"] => api::cameras(app, viewer),
        ["api", "v1", "events"] => api::events(app, viewer, query).await,
        ["api", "v1", "cameras", camera, "timeline"] if viewer.sees(camera) => api::timeline(app, camera, query).await,
        ["cameras", camera, "recorded.m3u8"] if viewer.sees(camera) => match api::window(query, UnixMs::now()) {
            Ok(window) => footage::recorded(app, camera, window, "").await,
            Err(why) => text(StatusCode::BAD_REQUEST, &why),
        },
        ["cameras", camera, "live.m3u8"] if viewer.sees(camera) => footage::live(app, camera).await,
        ["cameras", camera, "snapshot.jpg"] if viewer.sees(camera) => footage::snapshot(app, camera).await,
        ["cameras", camera, "clip.mp4"] if viewer.sees(camera) && viewer.may(HttpRight::Export) => {
            match api::window(query, UnixMs::now()) {
                Ok(window) => super::clip::clip(app, camera, window).await,
                Err(why) => text(StatusCode::BAD_REQUEST, &why),
            }
        }
        ["cameras", camera, "segments", id, part] if viewer.sees(camera) => {
            footage::segment(app, camera, (id, part), range(request), None).await
        }
        ["cameras", camera, "live", name] if viewer.sees(camera) => {
            footage::live_file(app, camera, name, range(request)).await
        }
        ["api", "v1", "cameras", _, _] | ["cameras", _, ..] => text(StatusCode::FORBIDDEN, "not your camera"),
        _ => text(StatusCode::NOT_FOUND, "no such page"),
    }
}

async fn login(app: &App, request: Request<Incoming>, client: IpAddr) -> Reply {
    let wait = app.limiter.lock().unwrap_or_else(|p| p.into_inner()).wait_ms(client, app.now_ms());
    if wait > 0 {
        let mut reply = text(StatusCode::TOO_MANY_REQUESTS, "too many failed logins: wait");
        let seconds = HeaderValue::from((wait + 999) / 1000);
        reply.headers_mut().insert(header::RETRY_AFTER, seconds);
        return reply;
    }
    let Ok(form) = Limited::new(request.into_body(), MAX_FORM_BYTES).collect().await.map(|b| b.to_bytes()) else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "the login form is at most 4 KiB");
    };
    let field = |name: &str| api::field(&form, name);
    let (name, password) = (field("name").unwrap_or_default(), field("password").unwrap_or_default());
    let hash = app.user(&name).map(|u| u.password_hash);
    // One check at a time: each takes the hash's memory (7 MiB for ours) for a moment.
    let Ok(_checking) = app.password_checks.acquire().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "stopping");
    };
    let matches =
        tokio::task::spawn_blocking(move || hash.is_some_and(|hash| secrets::password_matches(&hash, &password)))
            .await
            .unwrap_or(false);
    let mut limiter = app.limiter.lock().unwrap_or_else(|p| p.into_inner());
    if !matches {
        limiter.failed(client, app.now_ms());
        tracing::warn!(client = %client, user = %name, "login refused: wrong name or password");
        return text(StatusCode::UNAUTHORIZED, "wrong name or password");
    }
    limiter.succeeded(client);
    tracing::info!(client = %client, user = %name, "logged in");
    let max_age = app.session_hours() * 3600;
    let value = app.key.issue(&name, UnixMs(UnixMs::now().0 + max_age as i64 * 1000));
    let secure = if app.secure { "; Secure" } else { "" };
    redirect("/", Some(format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")))
}

fn logout(app: &App) -> Reply {
    let secure = if app.secure { "; Secure" } else { "" };
    redirect("/login", Some(format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")))
}

fn range(request: &Request<Incoming>) -> Option<&str> {
    request.headers().get(header::RANGE).and_then(|r| r.to_str().ok())
}

/// Sets a header from a value known to be valid.
pub fn set(reply: &mut Reply, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        reply.headers_mut().insert(name, value);
    }
}

/// A response with `body`.
pub fn full(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *reply.status_mut() = status;
    reply
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Reply {
    let mut reply = full(status, format!("{body}\n"));
    set(&mut reply, header::CONTENT_TYPE, "text/plain; charset=utf-8");
    reply
}

/// A JSON response.
pub fn json(value: &serde_json::Value) -> Reply {
    let mut reply = full(StatusCode::OK, value.to_string());
    set(&mut reply, header::CONTENT_TYPE, "application/json");
    set(&mut reply, header::CACHE_CONTROL, "no-store");
    reply
}

/// A `500` that logs what went wrong and tells the client nothing more.
pub fn internal(error: &anyhow::Error) -> Reply {
    tracing::error!(error = format!("{error:#}"), "http request failed");
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error: see the service log")
}

fn html(status: StatusCode, body: &'static str) -> Reply {
    let mut reply = full(status, body);
    set(&mut reply, header::CONTENT_TYPE, "text/html; charset=utf-8");
    reply
}

fn redirect(to: &str, cookie: Option<String>) -> Reply {
    let mut reply = full(StatusCode::SEE_OTHER, Bytes::new());
    set(&mut reply, header::LOCATION, to);
    if let Some(cookie) = cookie {
        set(&mut reply, header::SET_COOKIE, &cookie);
    }
    reply
}

fn asset(body: &'static str, kind: &str) -> Reply {
    let mut reply = full(StatusCode::OK, body);
    set(&mut reply, header::CONTENT_TYPE, kind);
    set(&mut reply, header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    reply
}

/// The player library the page loads, vendored from npm (see assets/README.md); its
/// version is in its URL, so browsers may keep it.
const HLS_JS: &str = include_str!("assets/hls.light.min.js");
const HLS_JS_NAME: &str = "hls-1.7.4.light.min.js";
const LOGIN_PAGE: &str = include_str!("login.html");
const INDEX_PAGE: &str = include_str!("index.html");
