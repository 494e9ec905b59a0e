//! The command router: takes requests off `P/cmd/+`, answers each exactly once
//! on `P/replies/<id>` (or on `P/errors` when no id can be read), authorizes
//! them, runs them a few at a time, and audits the ones that change something.
//! Requests wait in a bounded queue; when it is full the answer is `busy` at
//! once, so a flood of commands never holds up anything else.

use super::auth::Verifier;
use super::exec::Host;
use super::journal::{self, AuditEntry, Nonce};
use super::reply::{self, CommandError, Outcome};
use super::request::{self, Refusal, Request};
use crate::mqtt::{IncomingMessage, MqttHandle};
use crate::protocol::{COMMAND_NAMES, ErrorCode};
use crate::wallclock::UnixMs;
use crate::workers::Rejection;
use crate::workers::errors::ErrorReporter;
use rumqttc::QoS;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, watch};

/// Requests waiting to run; more are answered `busy`.
pub const QUEUE: usize = 16;
/// Commands running at once.
const RUNNING: usize = 4;

/// Commands that change something, and so are audited.
fn changes_something(name: &str) -> bool {
    !matches!(name, "status" | "snapshot")
}

/// The router's parts.
pub struct CommandRouter {
    /// Messages of `P/cmd/+`.
    pub incoming: mpsc::Receiver<IncomingMessage>,
    /// Who may run what (replaced on reload).
    pub verifier: watch::Receiver<Arc<Verifier>>,
    /// What the commands act on.
    pub host: Host,
    /// `P/errors`.
    pub errors: ErrorReporter,
    /// Larger requests are refused unread (the board's `max_message_bytes`).
    pub max_bytes: usize,
}

/// Publishes replies.
#[derive(Clone)]
struct Replier(MqttHandle);

impl Replier {
    fn send(&self, id: &str, outcome: &Outcome) {
        if let Err(e) = outcome {
            tracing::info!(id, code = e.code.as_str(), message = %e.message, "command refused or failed");
        }
        let topic = self.0.topics().reply(id);
        self.0.publish(topic, reply::payload(id, outcome).to_string(), QoS::AtLeastOnce, false);
    }
}

impl CommandRouter {
    /// Runs until the subscription closes.
    pub async fn run(mut self) {
        let replier = Replier(self.host.mqtt.clone());
        let (work_tx, work_rx) = mpsc::channel::<Request>(QUEUE);
        let executor = tokio::spawn(execute(work_rx, self.verifier.clone(), self.host.clone(), replier.clone()));
        while let Some(message) = self.incoming.recv().await {
            let Some(request) = self.admit(&message, &replier) else { continue };
            if let Err(mpsc::error::TrySendError::Full(request)) = work_tx.try_send(request) {
                let busy = CommandError::new(ErrorCode::Busy, format!("{QUEUE} commands are waiting: try again"));
                replier.send(&request.id, &Err(busy));
            }
        }
        drop(work_tx);
        let _ = executor.await;
    }

    /// Reads one message into a request, answering at once what cannot run.
    fn admit(&self, message: &IncomingMessage, replier: &Replier) -> Option<Request> {
        let topic = message.topic.as_str();
        if message.payload.len() > self.max_bytes {
            let why =
                format!("{} bytes, over the board's max_message_bytes of {}", message.payload.len(), self.max_bytes);
            self.errors.reject(topic, &Rejection::new("too_large", why));
            return None;
        }
        let name = topic.rsplit('/').next().unwrap_or_default();
        match request::parse(name, &message.payload) {
            Ok(request) if COMMAND_NAMES.contains(&name) => Some(request),
            Ok(request) => {
                let error = CommandError::new(
                    ErrorCode::UnknownCommand,
                    format!("no command {name:?}: {}", COMMAND_NAMES.join(", ")),
                );
                replier.send(&request.id, &Err(error));
                None
            }
            Err(Refusal::Unanswerable(rejection)) => {
                self.errors.reject(topic, &rejection);
                None
            }
            Err(Refusal::Reply(id, error)) => {
                replier.send(&id, &Err(error));
                None
            }
        }
    }
}

/// Takes requests off the queue and runs up to `RUNNING` of them at once.
async fn execute(
    mut work: mpsc::Receiver<Request>,
    verifier: watch::Receiver<Arc<Verifier>>,
    host: Host,
    replier: Replier,
) {
    let running = Arc::new(Semaphore::new(RUNNING));
    loop {
        let Ok(permit) = running.clone().acquire_owned().await else { return };
        let Some(request) = work.recv().await else { return };
        let verifier = verifier.borrow().clone();
        let (host, replier) = (host.clone(), replier.clone());
        tokio::spawn(async move {
            let outcome = handle(&request, &verifier, &host).await;
            replier.send(&request.id, &outcome);
            drop(permit);
        });
    }
}

/// Authorizes and runs one request; audits it when it was accepted and changes something.
async fn handle(request: &Request, verifier: &Verifier, host: &Host) -> Outcome {
    let now = UnixMs::now();
    let authorized = verifier.check(request, now)?;
    if let Some((key, nonce, ts)) = authorized.nonce.clone() {
        let seen = host.store.call(move |conn| journal::remember_nonce(conn, &key, &nonce, ts, now)).await;
        match seen.map_err(|e| CommandError::failed(&e))? {
            Nonce::New => {}
            Nonce::Replayed => return Err(CommandError::new(ErrorCode::Replayed, "this nonce was used before")),
            Nonce::Full => return Err(CommandError::new(ErrorCode::Busy, "too many recent commands: try again later")),
        }
    }
    tracing::info!(id = %request.id, command = %request.name, key = authorized.key.as_deref().unwrap_or("-"), "command");
    let outcome = run(request, host).await;
    if changes_something(&request.name) {
        let entry = AuditEntry {
            ts: now,
            key: authorized.key,
            command: request.name.clone(),
            request_id: request.id.clone(),
            args_sha256: format!("{:x}", Sha256::digest(request.args.as_bytes())),
            result: outcome.as_ref().map(|_| ()).map_err(|e| format!("{}: {}", e.code.as_str(), e.message)),
        };
        if let Err(e) = host.store.call(move |conn| journal::audit(conn, &entry)).await {
            tracing::error!(error = %e, "command not audited");
        }
    }
    outcome
}

async fn run(request: &Request, host: &Host) -> Outcome {
    match request.name.as_str() {
        "status" => host.status().await,
        "lock" => host.lock(request).await,
        "unlock" => host.unlock(request).await,
        "export" => host.export(request).await,
        "backup" => host.backup(request).await,
        "sweep" => host.sweep().await,
        "reload" => host.reload().await,
        "record" => host.record(request).await,
        "snapshot" => host.snapshot(request).await,
        other => Err(CommandError::new(ErrorCode::UnknownCommand, format!("no command {other:?}"))),
    }
}
