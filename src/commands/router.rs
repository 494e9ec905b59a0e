//! The command router: takes requests off `P/cmd/+`, authorizes each at once
//! (refusing what is not signed right before it takes a queue slot), runs the
//! authorized ones a few at a time, each key in turn, answers each once on
//! `P/replies/<id>` (or on `P/errors` when no id can be read) and audits the
//! ones that change something. A key's share of the queue is bounded; beyond
//! it the answer is `busy` at once, so a flood never holds up anything else.

use super::auth::{Authorized, Verifier};
use super::exec::Host;
use super::journal::{self, AuditEntry, Nonce};
use super::queue::{FairQueue, PER_KEY};
use super::reply::{self, CommandError, Outcome};
use super::request::{self, Refusal, Request};
use crate::mqtt::{IncomingMessage, MqttHandle};
use crate::protocol::{COMMAND_NAMES, ErrorCode};
use crate::sys::rate::TokenBucket;
use crate::wallclock::UnixMs;
use crate::workers::Rejection;
use crate::workers::errors::ErrorReporter;
use rumqttc::QoS;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

/// Commands running at once.
const RUNNING: usize = 4;
/// Refusals (and `busy` answers) answered at once, at most, in a burst…
const REFUSALS_BURST: u32 = 2_000;
/// …and per second after it: a flood of unauthorized requests costs the node a bounded
/// share of its link; beyond it they go unanswered, counted as `unanswered`.
const REFUSALS_PER_SECOND: u32 = 1_000;

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

/// Publishes replies: those of authorized commands ahead of everything, refusals within a
/// rate.
#[derive(Clone)]
struct Replier {
    mqtt: MqttHandle,
    refusals: Arc<Mutex<TokenBucket>>,
    errors: ErrorReporter,
}

impl Replier {
    /// The reply to an authorized command: never dropped while the session lives.
    async fn answer(&self, id: &str, outcome: &Outcome) {
        if let Err(e) = outcome {
            tracing::info!(id, code = e.code.as_str(), message = %e.message, "command failed");
        }
        let topic = self.mqtt.topics().reply(id);
        if !self.mqtt.publish_urgent(topic, reply::payload(id, outcome).to_string()).await {
            tracing::error!(id, "reply not sent: the MQTT session is gone or stuck");
        }
    }

    /// A refusal, answered at once unless refusals come faster than the rate allows.
    fn refuse(&self, id: &str, error: CommandError) {
        tracing::debug!(id, code = error.code.as_str(), message = %error.message, "command refused");
        if !self.refusals.lock().unwrap_or_else(|p| p.into_inner()).take(std::time::Instant::now()) {
            self.errors.count("unanswered");
            return;
        }
        let topic = self.mqtt.topics().reply(id);
        // At QoS 0: a refusal takes no place among the publishes awaiting the broker's ack, so a
        // flood of them never holds up the reply to an authorized command.
        self.mqtt.publish(topic, reply::payload(id, &Err(error)).to_string(), QoS::AtMostOnce, false);
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An authorized request waiting to run.
type Waiting = (Request, Authorized);

impl CommandRouter {
    /// Runs until the subscription closes.
    pub async fn run(mut self) {
        let bucket = TokenBucket::new(REFUSALS_BURST, REFUSALS_PER_SECOND, std::time::Instant::now());
        let replier = Replier {
            mqtt: self.host.mqtt.clone(),
            refusals: Arc::new(Mutex::new(bucket)),
            errors: self.errors.clone(),
        };
        let queue: Arc<Mutex<FairQueue<Waiting>>> = Arc::default();
        let wake = Arc::new(Notify::new());
        // Ends with the router, also when the router's task is aborted at a stop.
        let executor =
            AbortOnDrop(tokio::spawn(execute(queue.clone(), wake.clone(), self.host.clone(), replier.clone())));
        while let Some(message) = self.incoming.recv().await {
            let Some(request) = self.admit(&message, &replier) else { continue };
            // Signatures are checked before a request takes a queue slot: a flood of unsigned
            // or forged requests never delays a signed one.
            let verifier = self.verifier.borrow().clone();
            let authorized = match verifier.check(&request, UnixMs::now()) {
                Ok(authorized) => authorized,
                Err(refused) => {
                    replier.refuse(&request.id, refused);
                    continue;
                }
            };
            let key = authorized.key.clone().unwrap_or_default();
            let pushed = queue.lock().unwrap_or_else(|p| p.into_inner()).push(&key, (request, authorized));
            match pushed {
                Ok(()) => wake.notify_one(),
                Err((request, _)) => {
                    let message = format!("{PER_KEY} commands of this key are waiting: try again");
                    replier.refuse(&request.id, CommandError::new(ErrorCode::Busy, message));
                }
            }
        }
        drop(executor);
    }

    /// Reads one message into a request, answering at once what cannot run.
    fn admit(&self, message: &IncomingMessage, replier: &Replier) -> Option<Request> {
        let topic = message.topic.as_str();
        if message.oversize().is_some() || message.size > self.max_bytes {
            let why = format!("{} bytes, over the board's max_message_bytes of {}", message.size, self.max_bytes);
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
                replier.refuse(&request.id, error);
                None
            }
            Err(Refusal::Unanswerable(rejection)) => {
                self.errors.reject(topic, &rejection);
                None
            }
            Err(Refusal::Reply(id, error)) => {
                replier.refuse(&id, error);
                None
            }
        }
    }
}

/// Takes authorized requests off the queue, key by key, and runs up to `RUNNING` at once.
async fn execute(queue: Arc<Mutex<FairQueue<Waiting>>>, wake: Arc<Notify>, host: Host, replier: Replier) {
    let running = Arc::new(Semaphore::new(RUNNING));
    loop {
        let Ok(permit) = running.clone().acquire_owned().await else { return };
        let (request, authorized) = loop {
            if let Some(next) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                break next;
            }
            wake.notified().await;
        };
        let (host, replier) = (host.clone(), replier.clone());
        tokio::spawn(async move {
            let outcome = handle(&request, authorized, &host).await;
            replier.answer(&request.id, &outcome).await;
            drop(permit);
        });
    }
}

/// Runs one authorized request once its nonce is new; audits it when it changes something.
async fn handle(request: &Request, authorized: Authorized, host: &Host) -> Outcome {
    let now = UnixMs::now();
    if let Some((key, nonce, ts)) = authorized.nonce.clone() {
        let seen = host.store.call(move |conn| journal::remember_nonce(conn, &key, &nonce, ts)).await;
        match seen.map_err(|e| CommandError::failed(&e))? {
            Nonce::New => {}
            Nonce::Replayed => return Err(CommandError::new(ErrorCode::Replayed, "this nonce was used before")),
            Nonce::TooOld => {
                let message = "auth.ts is older than every nonce remembered for this key: sign it anew";
                return Err(CommandError::new(ErrorCode::Stale, message));
            }
        }
    }
    tracing::info!(id = %request.id, command = %request.name, key = authorized.key.as_deref().unwrap_or("-"), "command");
    let audit = changes_something(&request.name).then(|| AuditEntry {
        ts: now,
        key: authorized.key,
        command: request.name.clone(),
        request_id: request.id.clone(),
        args_sha256: format!("{:x}", Sha256::digest(request.args.as_bytes())),
        result: Ok(()),
    });
    let outcome = run(request, host, audit.clone()).await;
    // `lock` and `unlock` audit their success in the transaction of their effect.
    let audited = outcome.is_ok() && matches!(request.name.as_str(), "lock" | "unlock");
    if let Some(mut entry) = audit.filter(|_| !audited) {
        entry.result = outcome.as_ref().map(|_| ()).map_err(|e| format!("{}: {}", e.code.as_str(), e.message));
        if let Err(e) = host.store.call(move |conn| journal::audit(conn, &entry)).await {
            tracing::error!(error = %e, "command not audited");
        }
    }
    outcome
}

async fn run(request: &Request, host: &Host, audit: Option<AuditEntry>) -> Outcome {
    match request.name.as_str() {
        "status" => host.status().await,
        "lock" => host.lock(request, audit).await,
        "unlock" => host.unlock(request, audit).await,
        "export" => host.export(request).await,
        "backup" => host.backup(request).await,
        "sweep" => host.sweep().await,
        "reload" => host.reload().await,
        "record" => host.record(request).await,
        "snapshot" => host.snapshot(request).await,
        "share" => host.share(request).await,
        other => Err(CommandError::new(ErrorCode::UnknownCommand, format!("no command {other:?}"))),
    }
}
