//! Who may run a command: HMAC-SHA256 signatures per key, the ±30 s window,
//! and each key's allow list (DESIGN §4). Pure but for reading the secrets;
//! nonces are remembered by the shell, in the index, so a replay is refused
//! across restarts too.

use super::reply::CommandError;
use super::request::Request;
use crate::config::LoadedConfig;
use crate::config::schema::AuthMode;
use crate::protocol::ErrorCode;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's `ts` may be from the node's clock.
pub const MAX_SKEW_MS: i64 = 30_000;

/// One `[[commands.key]]` with its secret.
#[derive(Clone)]
pub struct Key {
    /// Its id.
    pub id: String,
    /// The content of `secret_file`, whitespace trimmed.
    secret: Vec<u8>,
    /// Commands it may run.
    pub allow: Vec<String>,
}

impl Key {
    /// Key `id` with `secret`, allowed `allow`.
    pub fn new(id: &str, secret: &str, allow: Vec<String>) -> Self {
        Self { id: id.to_string(), secret: secret.as_bytes().to_vec(), allow }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Key").field("id", &self.id).field("allow", &self.allow).finish_non_exhaustive()
    }
}

/// Decides whether a request may run.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The node's topic root `P`: a signature covers it, so it is worthless on another node.
    root: String,
    mode: AuthMode,
    keys: Vec<Key>,
    open_allow: Vec<String>,
    unsigned: Vec<String>,
}

/// A request that passed: by which key, and the nonce to record before running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The key that signed it; `None` with `auth = "none"`.
    pub key: Option<String>,
    /// (key, nonce, ts) to remember; a second use is a replay.
    pub nonce: Option<(String, String, UnixMs)>,
}

/// What a signature names besides `args`: the node's topic root `P`, the command, the
/// request id, its time and its nonce.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    /// The node's topic root `P` (`<topic_prefix>/<node_id>`).
    pub root: &'a str,
    /// The command name.
    pub name: &'a str,
    /// The request id.
    pub id: &'a str,
    /// `auth.ts` as sent.
    pub ts: &'a str,
    /// `auth.nonce`.
    pub nonce: &'a str,
}

/// The bytes a signature covers: `v2\n<P>\n<name>\n<id>\n<ts>\n<nonce>\n<args as sent>`.
pub fn signing_input(signed: Signed<'_>, args: &[u8]) -> Vec<u8> {
    let Signed { root, name, id, ts, nonce } = signed;
    let mut input = format!("v2\n{root}\n{name}\n{id}\n{ts}\n{nonce}\n").into_bytes();
    input.extend_from_slice(args);
    input
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Lowercase hex HMAC-SHA256 of the signing input with `secret`.
pub fn sign(secret: &[u8], signed: Signed<'_>, args: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(&signing_input(signed, args));
    format!("{:x}", mac.finalize().into_bytes())
}

impl Verifier {
    /// A verifier for `[commands]` of the node whose topic root is `root`, with these keys.
    pub fn new(root: &str, mode: AuthMode, keys: Vec<Key>, open_allow: Vec<String>) -> Self {
        Self { root: root.to_string(), mode, keys, open_allow, unsigned: Vec::new() }
    }

    /// Also takes these commands unsigned (Home Assistant's switches and buttons, which
    /// cannot sign: the broker's ACL is then what protects them).
    pub fn with_unsigned(mut self, commands: &[&str]) -> Self {
        self.unsigned = commands.iter().map(|c| c.to_string()).collect();
        self
    }

    /// The verifier of `config`, reading every key's `secret_file`.
    pub fn from_config(config: &LoadedConfig) -> Result<Self> {
        let base = config.config_dir();
        let commands = &config.config.commands;
        let mut keys = Vec::new();
        for (i, key) in commands.keys.iter().enumerate() {
            let secret = crate::config::secret::read_secret(&base.join(&key.secret_file))
                .with_context(|| format!("commands.key[{i}].secret_file"))?;
            keys.push(Key::new(&key.id, &secret, key.allow.clone()));
        }
        let verifier = Self::new(&config.topic_root(), commands.auth, keys, commands.allow.clone());
        Ok(match config.config.homeassistant.switches {
            true => verifier.with_unsigned(&["record", "snapshot"]),
            false => verifier,
        })
    }

    /// Checks `request` at `now`: signature, time window, allow list.
    pub fn check(&self, request: &Request, now: UnixMs) -> Result<Authorized, CommandError> {
        let refuse = |code, message: String| Err(CommandError::new(code, message));
        if self.mode == AuthMode::None {
            if !self.open_allow.contains(&request.name) {
                return refuse(
                    ErrorCode::Forbidden,
                    format!("{} is not in [commands] allow (auth = \"none\")", request.name),
                );
            }
            return Ok(Authorized { key: None, nonce: None });
        }
        let Some(auth) = &request.auth else {
            if self.unsigned.contains(&request.name) {
                return Ok(Authorized { key: None, nonce: None });
            }
            return refuse(ErrorCode::Unauthorized, "this node takes signed commands only: add auth".into());
        };
        let Some(key) = self.keys.iter().find(|k| k.id == auth.key) else {
            return refuse(ErrorCode::Unauthorized, format!("unknown key {:?}", auth.key));
        };
        let Some(sig) = crate::protocol::rules::unhex_sha256(&auth.sig) else {
            return refuse(ErrorCode::Unauthorized, "sig must be 64 lowercase hex digits".into());
        };
        let mut mac = mac(&key.secret);
        let signed =
            Signed { root: &self.root, name: &request.name, id: &request.id, ts: &auth.ts, nonce: &auth.nonce };
        mac.update(&signing_input(signed, request.signed_args()));
        if mac.verify_slice(&sig).is_err() {
            return refuse(ErrorCode::Unauthorized, "bad signature".into());
        }
        let Some(ts) = UnixMs::parse_rfc3339(&auth.ts) else {
            return refuse(ErrorCode::BadRequest, format!("auth.ts {:?} is not an RFC 3339 time", auth.ts));
        };
        let skew = now.0 - ts.0;
        if skew.abs() > MAX_SKEW_MS {
            return refuse(
                ErrorCode::Stale,
                format!("auth.ts is {:.0} s from the node's clock (at most 30 s)", skew as f64 / 1000.0),
            );
        }
        if !key.allow.contains(&request.name) {
            return refuse(ErrorCode::Forbidden, format!("key {:?} may not run {}", key.id, request.name));
        }
        Ok(Authorized { key: Some(key.id.clone()), nonce: Some((key.id.clone(), auth.nonce.clone(), ts)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::request::parse;

    const NOW: &str = "2026-11-24T14:00:00.000Z";

    const ROOT: &str = "heldar/nvr-01";

    fn verifier() -> Verifier {
        let ops = Key::new("ops", "s3cret", vec!["status".into(), "lock".into()]);
        Verifier::new(ROOT, AuthMode::Hmac, vec![ops], Vec::new())
    }

    fn signed_for(root: &str, name: &str, ts: &str, secret: &[u8], args: &str) -> Request {
        let sig = sign(secret, Signed { root, name, id: "r1", ts, nonce: "nonce-0001" }, args.as_bytes());
        let payload = format!(
            r#"{{"v":2,"id":"r1","args":{args},"auth":{{"key":"ops","ts":"{ts}","nonce":"nonce-0001","sig":"{sig}"}}}}"#
        );
        parse(name, payload.as_bytes()).expect("parses")
    }

    fn signed(name: &str, ts: &str, secret: &[u8], args: &str) -> Request {
        signed_for(ROOT, name, ts, secret, args)
    }

    fn code(result: Result<Authorized, CommandError>) -> ErrorCode {
        result.expect_err("refused").code
    }

    #[test]
    fn the_signing_input_is_the_documented_bytes() {
        let signed = Signed { root: "heldar/a", name: "lock", id: "r1", ts: "T", nonce: "n" };
        assert_eq!(signing_input(signed, b"{}"), b"v2\nheldar/a\nlock\nr1\nT\nn\n{}");
        // RFC 4231 test case 2: HMAC-SHA256 with key "Jefe".
        let mut mac = mac(b"Jefe");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            format!("{:x}", mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_worked_example_of_docs_commands_md_verifies() {
        let args =
            br#"{"cameras":["front"],"from":"2026-11-24T13:55:00Z","to":"2026-11-24T14:05:00Z","reason":"break-in"}"#;
        let signed = Signed {
            root: "heldar/nvr-01",
            name: "lock",
            id: "op-20261124-01",
            ts: "2026-11-24T14:05:00.000Z",
            nonce: "4b8e2f6a1c9d3e7f",
        };
        let sig = sign(b"6f1c0e3b9a7d4e21", signed, args);
        assert_eq!(sig, "20daa099bcb6127c842c649feb18f9e191384b6d223393f957cfbc70d4ee0dee");
        let docs = include_str!("../../docs/commands.md");
        assert!(
            docs.contains(&sig) && docs.contains(std::str::from_utf8(args).unwrap()),
            "docs/commands.md shows this example"
        );
    }

    #[test]
    fn a_good_signature_within_the_window_passes_with_its_nonce() {
        let now = UnixMs::parse_rfc3339(NOW).unwrap();
        let ok = verifier().check(&signed("lock", "2026-11-24T13:59:40.000Z", b"s3cret", r#"{"a": 1}"#), now);
        let ok = ok.expect("authorized");
        assert_eq!(ok.key.as_deref(), Some("ops"));
        assert_eq!(ok.nonce.as_ref().map(|n| n.1.as_str()), Some("nonce-0001"));
    }

    #[test]
    fn refusals_name_their_reason() {
        let v = verifier();
        let now = UnixMs::parse_rfc3339(NOW).unwrap();
        assert_eq!(code(v.check(&signed("status", NOW, b"wrong", "{}"), now)), ErrorCode::Unauthorized);
        assert_eq!(
            code(v.check(&signed("status", "2026-11-24T13:59:29.000Z", b"s3cret", "{}"), now)),
            ErrorCode::Stale
        );
        assert_eq!(
            code(v.check(&signed("status", "2026-11-24T14:00:31.000Z", b"s3cret", "{}"), now)),
            ErrorCode::Stale
        );
        assert_eq!(code(v.check(&signed("sweep", NOW, b"s3cret", "{}"), now)), ErrorCode::Forbidden);
        let unsigned = parse("status", br#"{"v":2,"id":"r1"}"#).unwrap();
        assert_eq!(code(v.check(&unsigned, now)), ErrorCode::Unauthorized);
        // Args changed after signing: the signature no longer matches.
        let mut tampered = signed("lock", NOW, b"s3cret", r#"{"a":1}"#);
        tampered.args = r#"{"a":2}"#.into();
        assert_eq!(code(v.check(&tampered, now)), ErrorCode::Unauthorized);
        // Signed for another node that shares the key: worthless here.
        assert_eq!(
            code(v.check(&signed_for("heldar/nvr-02", "status", NOW, b"s3cret", "{}"), now)),
            ErrorCode::Unauthorized
        );
        let mut other_key = signed("status", NOW, b"s3cret", "{}");
        other_key.auth.as_mut().unwrap().key = "nobody".into();
        assert_eq!(code(v.check(&other_key, now)), ErrorCode::Unauthorized);
    }

    #[test]
    fn home_assistant_switches_may_run_record_unsigned_and_nothing_else() {
        let v = verifier().with_unsigned(&["record"]);
        let record = parse("record", br#"{"v":2,"id":"ha-front-on","args":{"camera":"front","mode":"on"}}"#).unwrap();
        assert_eq!(v.check(&record, UnixMs(0)), Ok(Authorized { key: None, nonce: None }));
        let sweep = parse("sweep", br#"{"v":2,"id":"x"}"#).unwrap();
        assert_eq!(code(v.check(&sweep, UnixMs(0))), ErrorCode::Unauthorized);
    }

    #[test]
    fn without_auth_the_allow_list_decides() {
        let open = Verifier::new(ROOT, AuthMode::None, Vec::new(), vec!["status".into()]);
        let now = UnixMs(0);
        let status = parse("status", br#"{"v":2,"id":"r1"}"#).unwrap();
        assert_eq!(open.check(&status, now), Ok(Authorized { key: None, nonce: None }));
        let sweep = parse("sweep", br#"{"v":2,"id":"r1"}"#).unwrap();
        assert_eq!(code(open.check(&sweep, now)), ErrorCode::Forbidden);
    }
}
