//! How the session reaches the broker: its settings, credentials and TLS.

use crate::config::schema::MqttConfig;
use crate::config::secret::{MAX_CREDENTIAL_BYTES, read_limited, read_secret};
use crate::protocol::BrokerUrl;
use anyhow::{Context, Result};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the broker and who the node is on it.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// Broker address.
    pub url: BrokerUrl,
    /// MQTT client id.
    pub client_id: String,
    /// User name and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
    /// PEM CA bundle for TLS; system roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// Largest packet sent (a frame with its header).
    pub max_packet_bytes: usize,
    /// Largest packet read; anything larger costs the connection, so the broker must refuse
    /// larger ones itself (mosquitto's `max_packet_size`); each subscription then refuses
    /// what is over its own, smaller, limit.
    pub max_incoming_bytes: usize,
    /// Reconnect backoff floor and cap.
    pub backoff: (Duration, Duration),
}

/// The largest MQTT packet the node sends or reads: a sampled frame with its header and topic.
pub fn packet_limit(max_frame_bytes: usize) -> usize {
    (max_frame_bytes + 4096).max(256 * 1024)
}

impl SessionSettings {
    /// The settings of the node of `config` (the service's session and `heldar-edge call`):
    /// its `[mqtt]` table, files beside the config, its client id and frame size.
    pub fn of_node(config: &crate::config::LoadedConfig) -> Result<Self> {
        Self::from_config(&config.config.mqtt, config.config_dir(), config.client_id(), config.max_frame_bytes())
    }

    /// The settings of the `[mqtt]` table `mqtt`, its files resolved against `config_dir`;
    /// packets up to `max_frame_bytes` (a frame and its header) can be sent.
    pub fn from_config(
        mqtt: &MqttConfig,
        config_dir: &Path,
        client_id: String,
        max_frame_bytes: usize,
    ) -> Result<Self> {
        let url = BrokerUrl::parse(&mqtt.url).map_err(anyhow::Error::msg)?;
        let credentials = match &mqtt.username {
            Some(user) => {
                let password = match &mqtt.password_file {
                    Some(file) => read_secret(&config_dir.join(file)).context("mqtt.password_file")?,
                    None => String::new(),
                };
                Some((user.clone(), password))
            }
            None => None,
        };
        let ca_pem = match &mqtt.ca_file {
            Some(file) => Some(read_limited(&config_dir.join(file), MAX_CREDENTIAL_BYTES).context("mqtt.ca_file")?),
            None => None,
        };
        Ok(Self {
            url,
            client_id,
            credentials,
            ca_pem,
            keepalive: Duration::from_secs(mqtt.keepalive_s),
            max_packet_bytes: packet_limit(max_frame_bytes),
            // The broker's `max_packet_size` should be this same number (docs/mqtt.md): then
            // no client can send the node a packet that costs it its connection.
            max_incoming_bytes: packet_limit(max_frame_bytes),
            backoff: (Duration::from_millis(500), Duration::from_secs(10)),
        })
    }
}

/// Sends small packets (PUBACKs, replies, events) at once: with Nagle's algorithm a reply
/// waited for the broker's delayed ACK, about 40 ms twice per command round trip.
pub fn no_delay(eventloop: &mut rumqttc::EventLoop) {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
}

/// Sets the credentials and, for `mqtts://`, the TLS transport of `settings` on `options`.
pub fn authenticate(options: &mut MqttOptions, settings: &SessionSettings) -> Result<()> {
    if let Some((user, password)) = &settings.credentials {
        options.set_credentials(user, password);
    }
    if settings.url.tls {
        let transport = match &settings.ca_pem {
            Some(ca) => Transport::Tls(TlsConfiguration::Simple { ca: ca.clone(), alpn: None, client_auth: None }),
            None => Transport::Tls(TlsConfiguration::Rustls(system_roots()?)),
        };
        options.set_transport(transport);
    }
    Ok(())
}

/// A TLS client trusting the system's CA certificates. (rumqttc's own default panics when one
/// system certificate fails to load; here a bad one is skipped and logged.)
fn system_roots() -> Result<Arc<rustls::ClientConfig>> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(error = %error, "a system CA certificate could not be loaded");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::warn!(ignored, "system CA certificates skipped as unparsable");
    }
    if roots.is_empty() {
        anyhow::bail!("no usable system CA certificates for mqtts://: set mqtt.ca_file");
    }
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}
