//! The node's tasks: those started once and stopped at the end, and those
//! started anew when the config changes.

use tokio::task::JoinHandle;

/// Tasks that are started anew when the config changes.
#[derive(Default)]
pub struct ConfigTasks {
    /// The sampling planner.
    pub planner: Option<JoinHandle<()>>,
    /// The retention sweeper.
    pub sweeper: Option<JoinHandle<()>>,
    /// The backup scheduler.
    pub backups: Option<JoinHandle<()>>,
    /// Scheduled snapshots and their retention.
    pub stills: Option<JoinHandle<()>>,
}

/// Puts `task` in `slot`, aborting what was there.
pub fn replace(slot: &mut Option<JoinHandle<()>>, task: Option<JoinHandle<()>>) {
    if let Some(old) = std::mem::replace(slot, task) {
        old.abort();
    }
}

impl ConfigTasks {
    /// Aborts them all and waits until they are gone.
    pub async fn abort_all(&mut self) {
        let tasks = [self.planner.take(), self.sweeper.take(), self.backups.take(), self.stills.take()];
        abort_all(tasks.into_iter().flatten()).await;
    }
}

/// Aborts `tasks` and waits until they are gone.
pub async fn abort_all(tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
}
