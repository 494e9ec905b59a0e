//! Who is asking: users and their scope, signed session cookies, and the login
//! rate limit. Pure: the clock is passed in; password checks and secrets on disk
//! are the shell's (`secrets.rs`).

use crate::config::schema::{HttpRight, HttpUserConfig};
use crate::wallclock::UnixMs;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

/// The session cookie's name.
pub const COOKIE: &str = "heldar_session";

/// A user allowed in: what they may see and do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// Login name.
    pub name: String,
    /// Camera ids, or `None` for every camera.
    pub cameras: Option<Vec<String>>,
    /// What they may do.
    pub allow: Vec<HttpRight>,
}

impl Viewer {
    /// The viewer a `[[http.user]]` describes.
    pub fn of(user: &HttpUserConfig) -> Self {
        let all = user.cameras.iter().any(|c| c == "*");
        Self { name: user.name.clone(), cameras: (!all).then(|| user.cameras.clone()), allow: user.allow.clone() }
    }

    /// Whether they may see `camera`'s footage and state.
    pub fn sees(&self, camera: &str) -> bool {
        self.cameras.as_ref().is_none_or(|cameras| cameras.iter().any(|c| c == camera))
    }

    /// Whether they may do `right`.
    pub fn may(&self, right: HttpRight) -> bool {
        self.allow.contains(&right)
    }
}

/// Signs and checks session cookies with the node's secret.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl SessionKey {
    /// A key from the node secret's bytes.
    pub fn new(secret: Vec<u8>) -> Self {
        Self(secret)
    }

    /// The HMAC of `payload` for `purpose` (sessions and share links never verify each other).
    fn mac(&self, purpose: &str, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        mac
    }

    fn signed(&self, purpose: &str, payload: String) -> String {
        let sig = self.mac(purpose, &payload).finalize().into_bytes();
        format!("{payload}:{sig:x}")
    }

    /// The payload of `value` (`payload:hmac`) when it is signed with this key for `purpose`.
    fn verified<'a>(&self, purpose: &str, value: &'a str) -> Option<&'a str> {
        let (payload, sig) = value.rsplit_once(':')?;
        let sig = crate::protocol::rules::unhex_sha256(sig)?;
        self.mac(purpose, payload).verify_slice(&sig).ok()?;
        Some(payload)
    }

    /// The cookie value naming `user` until `expires`: `user:expires_ms:hmac`.
    pub fn issue(&self, user: &str, expires: UnixMs) -> String {
        self.signed("heldar-session", format!("{user}:{}", expires.0))
    }

    /// The user a cookie value names, if it is signed with this key and not expired at `now`.
    pub fn check(&self, value: &str, now: UnixMs) -> Option<String> {
        let (user, expires) = self.verified("heldar-session", value)?.split_once(':')?;
        let expires: i64 = expires.parse().ok()?;
        (now.0 < expires).then(|| user.to_string())
    }

    /// A share link's token: `camera`'s footage over `[from, to)` until `expires`
    /// (`camera:from_ms:to_ms:expires_ms:hmac`).
    pub fn share(&self, share: &Share) -> String {
        self.signed("heldar-share", format!("{}:{}:{}:{}", share.camera, share.from.0, share.to.0, share.expires.0))
    }

    /// What a share token grants at `now`.
    pub fn check_share(&self, token: &str, now: UnixMs) -> Result<Share, &'static str> {
        let payload = self.verified("heldar-share", token).ok_or("this share link is not valid")?;
        let fields: Vec<&str> = payload.split(':').collect();
        let [camera, from, to, expires] = fields[..] else { return Err("this share link is not valid") };
        let ms = |text: &str| text.parse::<i64>().map(UnixMs).map_err(|_| "this share link is not valid");
        let share = Share { camera: camera.to_string(), from: ms(from)?, to: ms(to)?, expires: ms(expires)? };
        if now >= share.expires {
            return Err("this share link has expired");
        }
        Ok(share)
    }
}

/// What a share link grants: one camera's footage over a window, until it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The camera.
    pub camera: String,
    /// Window start.
    pub from: UnixMs,
    /// Window end.
    pub to: UnixMs,
    /// No longer valid from then on.
    pub expires: UnixMs,
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Failed logins allowed per client address within `LOGIN_WINDOW_MS`.
pub const LOGIN_FAILURES: usize = 5;
/// The window failed logins are counted over.
pub const LOGIN_WINDOW_MS: i64 = 60_000;
/// Client addresses remembered; beyond it the one seen longest ago is forgotten.
const LOGIN_CLIENTS: usize = 1024;

/// Failed logins per client address: a client over the limit waits.
#[derive(Default)]
pub struct LoginLimiter {
    failures: BTreeMap<IpAddr, VecDeque<i64>>,
}

impl LoginLimiter {
    /// Milliseconds `client` must wait before trying again at `now` (monotonic ms); 0 when it may.
    pub fn wait_ms(&mut self, client: IpAddr, now: i64) -> i64 {
        let Some(times) = self.failures.get_mut(&client) else { return 0 };
        while times.front().is_some_and(|t| now - t >= LOGIN_WINDOW_MS) {
            times.pop_front();
        }
        match times.len() >= LOGIN_FAILURES {
            true => times.front().map_or(0, |first| first + LOGIN_WINDOW_MS - now),
            false => 0,
        }
    }

    /// Counts a failed login of `client` at `now`.
    pub fn failed(&mut self, client: IpAddr, now: i64) {
        if !self.failures.contains_key(&client) && self.failures.len() >= LOGIN_CLIENTS {
            let stalest = self.failures.iter().min_by_key(|(_, t)| t.back().copied()).map(|(ip, _)| *ip);
            stalest.map(|ip| self.failures.remove(&ip));
        }
        let times = self.failures.entry(client).or_default();
        times.push_back(now);
        if times.len() > LOGIN_FAILURES {
            times.pop_front();
        }
    }

    /// Forgets `client`'s failures after a good login.
    pub fn succeeded(&mut self, client: IpAddr) {
        self.failures.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(vec![7; 32])
    }

    #[test]
    fn a_cookie_names_its_user_until_it_expires() {
        let cookie = key().issue("alice", UnixMs(2_000));
        assert_eq!(key().check(&cookie, UnixMs(1_999)).as_deref(), Some("alice"));
        assert_eq!(key().check(&cookie, UnixMs(2_000)), None, "expired");
    }

    #[test]
    fn a_forged_or_altered_cookie_names_nobody() {
        let cookie = key().issue("alice", UnixMs(2_000));
        assert_eq!(SessionKey::new(vec![8; 32]).check(&cookie, UnixMs(0)), None, "another node's key");
        let longer = cookie.replacen(":2000:", ":9999:", 1);
        assert_eq!(key().check(&longer, UnixMs(0)), None, "expiry changed");
        let other = cookie.replacen("alice", "admin", 1);
        assert_eq!(key().check(&other, UnixMs(0)), None, "user changed");
        for junk in ["", "alice", "alice:1", "alice:x:00", ":::"] {
            assert_eq!(key().check(junk, UnixMs(0)), None, "{junk:?}");
        }
    }

    #[test]
    fn a_share_token_grants_its_window_until_it_expires_and_nothing_once_altered() {
        let share = Share { camera: "front".into(), from: UnixMs(1_000), to: UnixMs(2_000), expires: UnixMs(9_000) };
        let token = key().share(&share);
        assert_eq!(key().check_share(&token, UnixMs(8_999)), Ok(share));
        assert_eq!(key().check_share(&token, UnixMs(9_000)), Err("this share link has expired"));
        let wider = token.replacen(":2000:", ":99999:", 1);
        assert_eq!(key().check_share(&wider, UnixMs(0)), Err("this share link is not valid"));
        assert_eq!(key().check(&token, UnixMs(0)), None, "a share token is no session");
        let session = key().issue("front", UnixMs(9_000));
        assert!(key().check_share(&session, UnixMs(0)).is_err(), "a session is no share token");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; heldar_session=x:1:f; b=2", COOKIE), Some("x:1:f"));
        assert_eq!(cookie_value("a=1", COOKIE), None);
    }

    #[test]
    fn a_scoped_user_sees_only_their_cameras() {
        let user = HttpUserConfig {
            name: "guard".into(),
            password_hash: String::new(),
            cameras: vec!["front".into()],
            allow: vec![HttpRight::View],
        };
        let viewer = Viewer::of(&user);
        assert!(viewer.sees("front") && !viewer.sees("back"));
        assert!(viewer.may(HttpRight::View) && !viewer.may(HttpRight::Lock));
        assert!(Viewer::of(&HttpUserConfig { cameras: vec!["*".into()], ..user }).sees("back"));
    }

    #[test]
    fn a_client_failing_too_often_waits_out_the_window() {
        let (mut limiter, ip) = (LoginLimiter::default(), IpAddr::from([10, 0, 0, 1]));
        for n in 0..LOGIN_FAILURES as i64 {
            assert_eq!(limiter.wait_ms(ip, n * 1000), 0);
            limiter.failed(ip, n * 1000);
        }
        assert_eq!(limiter.wait_ms(ip, 5_000), 55_000);
        assert_eq!(limiter.wait_ms(IpAddr::from([10, 0, 0, 2]), 5_000), 0, "another client may");
        assert_eq!(limiter.wait_ms(ip, 60_000), 0, "the first failure left the window");
        limiter.succeeded(ip);
        assert_eq!(limiter.wait_ms(ip, 60_001), 0);
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_clients() {
        let mut limiter = LoginLimiter::default();
        for n in 0..(LOGIN_CLIENTS as u32 + 10) {
            limiter.failed(IpAddr::from(n.to_be_bytes()), i64::from(n));
        }
        assert_eq!(limiter.failures.len(), LOGIN_CLIENTS);
    }
}
