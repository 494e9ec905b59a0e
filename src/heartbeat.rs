//! Signs of life of the node's parts, for the systemd watchdog: a part that
//! stops beating stops the pings, and systemd restarts the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A part's last sign of life, in ms on a monotonic clock; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as i64
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new() -> Self {
        let beat = Self::default();
        beat.beat();
        beat
    }

    /// Records a sign of life now.
    pub fn beat(&self) {
        self.0.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        Duration::from_millis((monotonic_ms() - self.0.load(Ordering::Relaxed)).max(0) as u64)
    }
}

/// Runs `future` to its end, beating `heartbeat` every second meanwhile: an idle part
/// (waiting to retry, say) is alive as long as its task is scheduled.
pub async fn beating<F: std::future::Future>(heartbeat: &Heartbeat, future: F) -> F::Output {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(future);
    loop {
        tokio::select! {
            output = &mut future => return output,
            _ = tick.tick() => heartbeat.beat(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_wait_keeps_beating() {
        let beat = Heartbeat::new();
        assert!(beat.age() < Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(300));
        assert!(beat.age() >= Duration::from_millis(300));
        beating(&beat, tokio::time::sleep(Duration::from_millis(10))).await;
        assert!(beat.age() < Duration::from_millis(100));
    }
}
