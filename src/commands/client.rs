//! `heldar-edge call`: the operator's side of a command. Builds the request
//! (signed when given a key), publishes it on the node's broker, waits for the
//! one reply and returns it.

use super::auth;
use crate::config::LoadedConfig;
use crate::mqtt::settings::{self, SessionSettings};
use crate::outbox::random_u64;
use crate::protocol::Topics;
use crate::protocol::rules::is_token;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::time::Duration;

/// A command to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Command name.
    pub name: String,
    /// Its args (an object).
    pub args: Value,
    /// Key id and secret to sign with.
    pub key: Option<(String, String)>,
    /// How long to wait for the reply.
    pub timeout: Duration,
}

/// Parses `key=value` words into args: a value that is JSON (number, bool, array, object,
/// null, quoted string) is taken as such, anything else as a string.
pub fn args_from_words(words: &[String], json: Option<&str>) -> Result<Value, String> {
    let mut args = match json {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("--json must be a JSON object".into()),
            Err(e) => return Err(format!("--json: {e}")),
        },
        None => serde_json::Map::new(),
    };
    for word in words {
        let (key, value) = word.split_once('=').ok_or(format!("{word:?}: arguments are key=value"))?;
        if key.is_empty() {
            return Err(format!("{word:?}: empty key"));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        args.insert(key.to_string(), value);
    }
    Ok(Value::Object(args))
}

/// The request payload for `call` to the node of topic root `root`, as request `id` at `now`
/// with `nonce`: args are written once and the signature covers exactly those bytes.
pub fn request_payload(root: &str, call: &Call, id: &str, now: UnixMs, nonce: &str) -> String {
    let args = call.args.to_string();
    let auth = call.key.as_ref().map(|(key, secret)| {
        let ts = now.to_rfc3339();
        let signed = auth::Signed { root, name: &call.name, id, ts: &ts, nonce };
        let sig = auth::sign(secret.as_bytes(), signed, args.as_bytes());
        format!(r#","auth":{{"key":"{key}","ts":"{ts}","nonce":"{nonce}","sig":"{sig}"}}"#)
    });
    format!(r#"{{"v":2,"id":"{id}","args":{args}{}}}"#, auth.unwrap_or_default())
}

/// Sends `call` to the node of `config` and returns its reply.
pub async fn call(config: &LoadedConfig, call: &Call) -> Result<Value> {
    if let Some((key, _)) = &call.key
        && !is_token(key, 1, 64)
    {
        bail!("--key {key:?} must be 1..64 of [A-Za-z0-9_-]");
    }
    let settings = SessionSettings::of_node(config)?;
    let id = format!("call-{:016x}", random_u64());
    let nonce = format!("{:016x}{:016x}", random_u64(), random_u64());
    let payload = request_payload(&config.topic_root(), call, &id, UnixMs::now(), &nonce);
    let topics = Topics::new(config.topic_root());
    let (request_topic, reply_topic) = (topics.command(&call.name), topics.reply(&id));
    let mut options =
        MqttOptions::new(format!("heldar-call-{:08x}", random_u64() as u32), &settings.url.host, settings.url.port);
    options.set_keep_alive(settings.keepalive).set_clean_session(true).set_max_packet_size(16 << 20, 16 << 20);
    settings::authenticate(&mut options, &settings)?;
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    settings::no_delay(&mut eventloop);
    let broker = config.config.mqtt.url.clone();
    let exchange = async {
        loop {
            match eventloop.poll().await.with_context(|| format!("talking to the broker {broker}"))? {
                Event::Incoming(Packet::ConnAck(_)) => client.subscribe(&reply_topic, QoS::AtLeastOnce).await?,
                Event::Incoming(Packet::SubAck(_)) => {
                    client.publish(&request_topic, QoS::AtLeastOnce, false, payload.clone()).await?;
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == reply_topic => {
                    let _ = client.disconnect().await;
                    return serde_json::from_slice::<Value>(&p.payload).context("the reply is not JSON");
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(call.timeout, exchange).await.with_context(|| {
        format!("no reply on {reply_topic} within {} s: is the node online?", call.timeout.as_secs())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::request::parse;

    #[test]
    fn words_become_typed_args() {
        let words: Vec<String> = ["camera=front", "duration_s=60", "cut=true", "cameras=[\"a\",\"b\"]", "mode=on"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let args = args_from_words(&words, Some(r#"{"reason": "x"}"#)).expect("args");
        assert_eq!(
            args,
            serde_json::json!({"camera": "front", "duration_s": 60, "cut": true, "cameras": ["a", "b"], "mode": "on", "reason": "x"})
        );
        assert!(args_from_words(&["nokey".to_string()], None).is_err());
        assert!(args_from_words(&[], Some("[1]")).is_err());
    }

    fn verifier_keys() -> Vec<auth::Key> {
        vec![auth::Key::new("ops", "s3cret", vec!["lock".into()])]
    }

    #[test]
    fn a_signed_request_verifies_on_the_node() {
        let call = Call {
            name: "lock".into(),
            args: serde_json::json!({"from": "2026-11-24T14:00:00Z", "to": "2026-11-24T14:10:00Z"}),
            key: Some(("ops".into(), "s3cret".into())),
            timeout: Duration::from_secs(1),
        };
        let now = UnixMs::parse_rfc3339("2026-11-24T14:20:00Z").unwrap();
        let payload = request_payload("heldar/n1", &call, "call-1", now, "nonce-123456");
        let request = parse("lock", payload.as_bytes()).expect("parses");
        let key = auth::Key::new("ops", "s3cret", vec!["lock".into()]);
        let verifier = auth::Verifier::new("heldar/n1", crate::config::schema::AuthMode::Hmac, vec![key], Vec::new());
        assert!(verifier.check(&request, now).is_ok(), "{payload}");
        let other =
            auth::Verifier::new("heldar/n2", crate::config::schema::AuthMode::Hmac, verifier_keys(), Vec::new());
        assert!(other.check(&request, now).is_err(), "signed for another node");
    }
}
