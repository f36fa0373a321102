//! Every background task of a server, owned by one guard.
//!
//! Tasks are started through [`Background`], report what they do through a
//! [`Status`] (read by `/metrics`, later by the console), and are stopped
//! together: [`Background::stop`] asks each to stop and waits for it to
//! finish what it is doing. Dropping the guard without `stop` (an error
//! path) still cancels and aborts them, so no task outlives its server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a task is doing, as it last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Busy(String),
}

/// A task's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub activity: Activity,
    /// Rounds or jobs done, and how many of them failed.
    pub runs: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl Default for TaskStatus {
    fn default() -> Self {
        TaskStatus {
            activity: Activity::Idle,
            runs: 0,
            failures: 0,
            last_error: None,
        }
    }
}

/// The statuses of every task, by name.
#[derive(Clone, Default)]
pub struct Statuses(Arc<Mutex<BTreeMap<String, TaskStatus>>>);

impl Statuses {
    pub fn snapshot(&self) -> BTreeMap<String, TaskStatus> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut TaskStatus)) {
        if let Ok(mut m) = self.0.lock() {
            f(m.entry(name.to_string()).or_default());
        }
    }
}

/// One task's handle on its status.
#[derive(Clone)]
pub struct Status {
    name: String,
    all: Statuses,
}

impl Status {
    pub fn busy(&self, what: impl Into<String>) {
        let what = what.into();
        self.all
            .update(&self.name, |s| s.activity = Activity::Busy(what));
    }

    /// The end of a round or job: idle again, counted, its error kept.
    pub fn done(&self, error: Option<String>) {
        self.all.update(&self.name, |s| {
            s.activity = Activity::Idle;
            s.runs += 1;
            if error.is_some() {
                s.failures += 1;
                s.last_error = error;
            }
        });
    }
}

/// The guard owning a server's background tasks.
pub struct Background {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    statuses: Statuses,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
            statuses: Statuses::default(),
        }
    }
}

impl Background {
    pub fn statuses(&self) -> Statuses {
        self.statuses.clone()
    }

    /// Starts a long-running task; it must return soon after `stop` is
    /// cancelled, having left its work consistent.
    pub fn spawn<F, Fut>(&mut self, name: &str, task: F)
    where
        F: FnOnce(CancellationToken, Status) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let status = Status {
            name: name.to_string(),
            all: self.statuses.clone(),
        };
        status.all.update(name, |_| {});
        self.tasks.spawn(task(self.stop.clone(), status));
    }

    /// Starts a task that runs `round` at once and then every `every`; a
    /// failed round is logged and counted, and the next one runs as usual.
    /// A round under way when the server stops is finished first.
    pub fn every<F, Fut, E>(&mut self, name: &'static str, every: Duration, mut round: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        self.spawn(name, move |stop, status| async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                status.busy(name);
                let error = round().await.err().map(|e| {
                    tracing::error!(task = name, error = %e, "background round failed");
                    e.to_string()
                });
                status.done(error);
            }
        });
    }

    /// Asks every task to stop and waits until all have.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                tracing::error!(error = %e, "a background task panicked");
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // `stop` not awaited (an error path): the JoinSet aborts what is left.
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn rounds_run_report_and_stop_together() {
        let mut bg = Background::default();
        let rounds = Arc::new(AtomicU32::new(0));
        let counted = rounds.clone();
        bg.every("tick", Duration::from_millis(5), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 1 {
                    Err("second round fails")
                } else {
                    Ok(())
                }
            }
        });
        let finished = Arc::new(AtomicU32::new(0));
        let seen = finished.clone();
        bg.spawn("long", move |stop, status| async move {
            status.busy("waiting");
            stop.cancelled().await;
            seen.fetch_add(1, Ordering::SeqCst);
        });
        let statuses = bg.statuses();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while statuses.snapshot()["tick"].runs < 3 {
            assert!(tokio::time::Instant::now() < deadline, "rounds never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = statuses.snapshot();
        assert!(s["tick"].runs >= 3);
        assert_eq!(s["tick"].failures, 1);
        assert_eq!(s["tick"].last_error.as_deref(), Some("second round fails"));
        assert_eq!(s["long"].activity, Activity::Busy("waiting".into()));
        bg.stop().await;
        assert_eq!(finished.load(Ordering::SeqCst), 1, "stopped, not aborted");
    }
}
