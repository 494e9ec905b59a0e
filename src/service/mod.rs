//! `heldar-edge run`: the node built from its parts (`Node`), serving signals,
//! reloads and the systemd watchdog until SIGINT or SIGTERM, then stopped in
//! order.

mod apply;
pub mod cameras;
mod node;
pub mod notify;
mod parts;
pub mod reload;
mod signals;
mod tasks;

pub use node::Node;

use crate::commands::exec::ReloadRequest;
use crate::config::LoadedConfig;
use anyhow::Result;
use signals::{Signal, Signals};
use std::time::Duration;
use tokio::sync::mpsc;

/// Options of `run` beyond the config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Test hook: emit this many `test` events at start.
    pub emit_test_events: u64,
    /// Test hook: after this long the store thread hangs (the watchdog pings must stop).
    pub stall_store_after: Option<Duration>,
}

/// Runs the service until SIGINT or SIGTERM; SIGHUP (or the `reload` command) re-reads the config.
pub async fn run(config: LoadedConfig, options: RunOptions) -> Result<()> {
    // rumqttc leaves the TLS crypto backend to us; ring cross-compiles with a plain C toolchain.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut signals = Signals::new()?;
    let (mut node, reloads) = Node::start(config, &options).await?;
    let notifier = notify::Notifier::from_env();
    notifier.send("READY=1\nSTATUS=running");
    node.log_started();
    serve(&mut node, &mut signals, reloads, &notifier).await;
    tracing::info!("stopping");
    notifier.send("STOPPING=1\nSTATUS=stopping: closing segments");
    node.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Answers signals, `reload` commands and the watchdog until a stop is asked for.
async fn serve(
    node: &mut Node,
    signals: &mut Signals,
    mut reloads: mpsc::Receiver<ReloadRequest>,
    notifier: &notify::Notifier,
) {
    let every = notifier.watchdog_every;
    let mut watchdog = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => return,
                Signal::Reload => {
                    tracing::info!("SIGHUP: reloading the config");
                    let _ = node.reload().await;
                }
            },
            Some(reply) = reloads.recv() => {
                notifier.send("RELOADING=1");
                let outcome = node.reload().await;
                let _ = reply.send(outcome);
                notifier.send("READY=1");
            }
            _ = watchdog.tick(), if every.is_some() => {
                match node.health(every.unwrap_or_default()).await {
                    Ok(status) => notifier.send(&format!("WATCHDOG=1\nSTATUS={status}")),
                    Err(why) => {
                        tracing::error!(problem = %why, "a part of the node does not answer: no watchdog ping");
                        notifier.send(&format!("STATUS=not answering: {why}"));
                    }
                }
            }
        }
    }
}
