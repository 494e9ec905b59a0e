//! The listener: accepts connections (bounded), speaks TLS when the config names a
//! certificate, and hands each request to the routes through hyper.

use super::routes::{self, App};
use crate::config::schema::HttpConfig;
use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client has this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Binds `http.listen` and reads the TLS files it names (relative to `base`, the config's
    /// directory); an error names the key.
    pub async fn bind(http: &HttpConfig, base: &std::path::Path) -> Result<Self> {
        let tls = match (&http.cert_file, &http.key_file) {
            (Some(cert), Some(key)) => Some(tls_acceptor(&base.join(cert), &base.join(key))?),
            _ => None,
        };
        let tcp =
            TcpListener::bind(&http.listen).await.with_context(|| format!("http.listen: binding {}", http.listen))?;
        Ok(Self { tcp, tls })
    }

    /// The URL the surface answers on, for the log.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.tcp.local_addr().map_or_else(|_| format!("{scheme}://?"), |a| format!("{scheme}://{a}/"))
    }

    /// Serves `app` until aborted.
    pub async fn serve(self, app: App) {
        let (app, slots) = (Arc::new(app), Arc::new(Semaphore::new(MAX_CONNECTIONS)));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "http connection not accepted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (app, tls) = (app.clone(), self.tls.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes::handle(&app, request, peer.ip()).await) }
                });
                let mut builder = http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEAD_BYTES);
                let served = match tls {
                    Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), service).await,
                        Ok(Err(e)) => return tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(client = %peer, "TLS handshake timed out"),
                    },
                    None => builder.serve_connection(TokioIo::new(stream), service).await,
                };
                if let Err(e) = served {
                    tracing::debug!(client = %peer, error = %e, "http connection ended");
                }
            });
        }
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor> {
    use crate::config::secret::{MAX_CREDENTIAL_BYTES, read_limited};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = read_limited(cert, MAX_CREDENTIAL_BYTES).context("http.cert_file")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("http.cert_file: {} holds no PEM certificate", cert.display()))?;
    let key_pem = read_limited(key, MAX_CREDENTIAL_BYTES).context("http.key_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("http.key_file: {} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("http.cert_file and http.key_file do not make a certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
