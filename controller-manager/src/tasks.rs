//! Tasks a controller spawns, stopped together: when a controller's `run` future
//! is dropped (leadership lost, shutdown), everything it started stops with it.

use tokio::task::JoinHandle;

pub struct AbortOnDrop(pub Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
