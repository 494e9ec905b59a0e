//! Reading a command request (`P/cmd/<name>`): its id, version, the exact
//! bytes of its `args` (what a signature covers) and its `auth` block. Pure.

use super::reply::CommandError;
use crate::protocol::ErrorCode;
use crate::protocol::rules::is_token;
use crate::workers::Rejection;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The `auth` block of a signed request.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// `[[commands.key]]` id.
    pub key: String,
    /// Request time, RFC 3339.
    pub ts: String,
    /// Single-use token, 8..64 of `[A-Za-z0-9_-]`.
    pub nonce: String,
    /// Lowercase hex HMAC-SHA256.
    pub sig: String,
}

/// A request whose envelope is well formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The command, from the topic.
    pub name: String,
    /// Its id: replies go to `P/replies/<id>`.
    pub id: String,
    /// `args` exactly as sent (`{}` when absent), for the signature and the command.
    pub args: String,
    /// Whether `args` was present: a signature over an absent `args` covers the empty string.
    pub args_sent: bool,
    /// The signature block, when sent.
    pub auth: Option<Auth>,
}

impl Request {
    /// The bytes a signature covers: `args` as sent, or nothing when absent.
    pub fn signed_args(&self) -> &[u8] {
        if self.args_sent { self.args.as_bytes() } else { b"" }
    }
}

/// Why a request cannot be run as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No usable id: answered on `P/errors`.
    Unanswerable(Rejection),
    /// Answered on `P/replies/<id>`.
    Reply(String, CommandError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    v: serde_json::Value,
    id: serde_json::Value,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
    auth: Option<Auth>,
}

/// Reads the request for command `name` from `payload`.
pub fn parse(name: &str, payload: &[u8]) -> Result<Request, Refusal> {
    let value = crate::workers::parse_json(payload).map_err(|rejection| match readable_id(payload) {
        // Broken JSON whose id can still be read is answered where the sender waits.
        Some(id) => Refusal::Reply(id, CommandError::new(ErrorCode::BadRequest, rejection.message)),
        None => Refusal::Unanswerable(rejection),
    })?;
    let id = match value.get("id") {
        Some(serde_json::Value::String(id)) if is_token(id, 1, 64) => id.clone(),
        Some(serde_json::Value::String(id)) => {
            return Err(Refusal::Unanswerable(Rejection::new(
                "bad_id",
                format!("id {id:?} must be 1..64 of [A-Za-z0-9_-]"),
            )));
        }
        Some(_) => return Err(Refusal::Unanswerable(Rejection::new("bad_id", "id must be a string"))),
        None if value.is_object() => return Err(Refusal::Unanswerable(Rejection::new("bad_id", "no id"))),
        None => return Err(Refusal::Unanswerable(Rejection::new("bad_json", "not a JSON object"))),
    };
    let bad = |message: String| Refusal::Reply(id.clone(), CommandError::new(ErrorCode::BadRequest, message));
    // A second pass over the same bytes keeps `args` exactly as sent and refuses duplicate keys.
    let envelope: Envelope<'_> = serde_json::from_slice(payload).map_err(|e| bad(format!("{e}")))?;
    if envelope.v != serde_json::json!(2) {
        return Err(bad(format!(
            "v must be 2, is {}: protocol v2 signs the node's topic root too (docs/commands.md)",
            envelope.v
        )));
    }
    debug_assert_eq!(envelope.id.as_str(), Some(id.as_str()));
    let (args, args_sent) = match envelope.args {
        Some(raw) if raw.get().trim_start().starts_with('{') => (raw.get().to_string(), true),
        Some(_) => return Err(bad("args must be an object".into())),
        None => ("{}".to_string(), false),
    };
    if let Some(auth) = &envelope.auth {
        if !is_token(&auth.key, 1, 64) {
            return Err(bad("auth.key must be 1..64 of [A-Za-z0-9_-]".into()));
        }
        if !is_token(&auth.nonce, 8, 64) {
            return Err(bad("auth.nonce must be 8..64 of [A-Za-z0-9_-]".into()));
        }
    }
    Ok(Request { name: name.to_string(), id, args, args_sent, auth: envelope.auth })
}

/// The id of a payload that is not valid JSON (nor UTF-8, perhaps: a truncated request),
/// when it can still be read: the envelope's own `"id"` key (at the top level, not one
/// inside `args`) followed by a string of `[A-Za-z0-9_-]{1,64}`.
pub fn readable_id(payload: &[u8]) -> Option<String> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < payload.len() {
        match payload[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let end = string_end(payload, i)?;
                if depth == 1 && &payload[i..=end] == b"\"id\"" {
                    let rest = payload[end + 1..].trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
                    if let Some(value) = rest.strip_prefix(b"\"") {
                        let id = std::str::from_utf8(&value[..value.iter().position(|b| *b == b'"')?]).ok()?;
                        return is_token(id, 1, 64).then(|| id.to_string());
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote closing the JSON string that opens at `start`.
fn string_end(payload: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < payload.len() {
        match payload[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Decodes a command's `args` into its typed form; a mismatch is a `bad_request`.
pub fn args<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, CommandError> {
    serde_json::from_str(&request.args).map_err(|e| CommandError::new(ErrorCode::BadRequest, format!("args: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unanswerable(payload: &str) -> &'static str {
        match parse("status", payload.as_bytes()) {
            Err(Refusal::Unanswerable(r)) => r.reason,
            other => panic!("{payload}: {other:?}"),
        }
    }

    fn bad_request(payload: &str) -> String {
        match parse("status", payload.as_bytes()) {
            Err(Refusal::Reply(id, e)) => {
                assert_eq!(e.code, ErrorCode::BadRequest, "{payload}");
                format!("{id}: {}", e.message)
            }
            other => panic!("{payload}: {other:?}"),
        }
    }

    #[test]
    fn keeps_args_exactly_as_sent() {
        let request = parse("lock", br#"{"v":2,"id":"r-1","args": {"to":"b",  "from":"a"},"auth":null}"#).unwrap();
        assert_eq!(request.id, "r-1");
        assert_eq!(request.args, r#"{"to":"b",  "from":"a"}"#);
        assert_eq!(request.signed_args(), br#"{"to":"b",  "from":"a"}"#);
        let bare = parse("status", br#"{"v":2,"id":"x"}"#).unwrap();
        assert_eq!((bare.args.as_str(), bare.signed_args()), ("{}", &b""[..]));
        assert!(bare.auth.is_none());
    }

    #[test]
    fn broken_json_with_a_readable_id_is_answered() {
        assert!(bad_request(r#"{"v":2,"id": "r-7","args":{"camera":}"#).starts_with("r-7: not JSON"));
        assert_eq!(readable_id(br#"{"id":"a b"}"#), None);
        assert!(bad_request(r#"{"v":NaN,"id":"x"}"#).contains("finite"));
        assert_eq!(readable_id(br#"{"v":2 "id"  :  "x_1", oops"#).as_deref(), Some("x_1"));
        let mut truncated = br#"{"v":2,"id":"cut-1","args":{"reason":""#.to_vec();
        truncated.extend([0xe2, 0x82]);
        assert_eq!(readable_id(&truncated).as_deref(), Some("cut-1"), "a cut multi-byte character");
    }

    #[test]
    fn a_request_without_a_readable_id_goes_to_errors() {
        assert_eq!(unanswerable("{nope"), "bad_json");
        assert_eq!(unanswerable("[1]"), "bad_json");
        assert_eq!(unanswerable(r#"{"v":2}"#), "bad_id");
        assert_eq!(unanswerable(r#"{"v":2,"id":7}"#), "bad_id");
        assert_eq!(unanswerable(r#"{"v":2,"id":"has space"}"#), "bad_id");
        assert_eq!(unanswerable(&format!(r#"{{"v":2,"id":"{}"}}"#, "a".repeat(65))), "bad_id");
        assert_eq!(unanswerable(r#"{"v":NaN,"id":7}"#), "not_finite");
    }

    #[test]
    fn a_malformed_envelope_with_an_id_is_a_bad_request() {
        assert!(bad_request(r#"{"v":1,"id":"x"}"#).contains("v must be 2"), "v1 is refused, naming v2");
        assert!(bad_request(r#"{"id":"x"}"#).contains("missing field `v`"));
        assert!(bad_request(r#"{"v":2,"id":"x","args":[1]}"#).contains("args must be an object"));
        assert!(bad_request(r#"{"v":2,"id":"x","extra":1}"#).contains("unknown field"));
        assert!(bad_request(r#"{"v":2,"id":"x","args":{},"args":{"a":1}}"#).contains("duplicate field"));
        assert!(
            bad_request(r#"{"v":2,"id":"x","auth":{"key":"k","ts":"t","nonce":"short","sig":"00"}}"#).contains("nonce")
        );
        assert!(bad_request(r#"{"v":2,"id":"x","auth":{"key":"k"}}"#).contains("missing field"));
    }
}
