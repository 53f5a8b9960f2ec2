//! The one scheduler every fan-out goes through (deploy's executor, `exec`, `status` and its
//! central services, `consul prune` and the managed-service listing, `alert test`). It owns three things and nothing else:
//! - **forks**: at most `forks` items run at once; items start in the order given (the
//!   permits are taken one item after another, so hosts start in inventory order);
//! - **cancellation**: once the cancel token fires (first Ctrl-C / SIGTERM, see
//!   `listen_for_signals`) no item starts; items already running finish. The abort token
//!   (second signal) is for the work itself to give up steps in flight (`or_abort`): only
//!   the work knows how to record an abandoned step;
//! - **progress events**: `Started`, then `Finished`, for every item that runs; `Skipped` for
//!   every item cancellation kept from starting. Each item gets exactly one of
//!   `Finished`/`Skipped`, so a progress bar always completes.
//!
//! It knows nothing about hosts, plans or output: callers label items and turn `Done` into
//! their own reports.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::report::{Progress, Reporter};

/// What became of one item.
#[derive(Debug)]
pub enum Done<R> {
    /// It ran; the work's result.
    Ran(R),
    /// The run was cancelled before it could start.
    NotStarted,
}

/// Where progress events go (a reporter, or a test's recorder).
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Forks, cancellation and progress for fan-outs. Cheap to clone: clones share the forks
/// (so a rollback started from a run stays within the run's limit) and the tokens.
#[derive(Clone)]
pub struct Scheduler {
    forks: Arc<Semaphore>,
    cancel: CancellationToken,
    abort: CancellationToken,
    progress: Option<ProgressSink>,
}

impl Scheduler {
    /// At most `forks` items at once (at least one).
    pub fn new(forks: usize, cancel: CancellationToken, abort: CancellationToken) -> Scheduler {
        Scheduler {
            forks: Arc::new(Semaphore::new(forks.max(1))),
            cancel,
            abort,
            progress: None,
        }
    }

    /// Send progress events to `sink`.
    pub fn with_progress(mut self, sink: ProgressSink) -> Scheduler {
        self.progress = Some(sink);
        self
    }

    /// The same forks and tokens, sending no progress events (work that is not counted on
    /// the progress of the items it runs beside).
    pub fn without_progress(&self) -> Scheduler {
        Scheduler {
            progress: None,
            ..self.clone()
        }
    }

    /// Send progress events to `reporter` (`Reporter::progress`).
    pub fn reporting_to(self, reporter: Arc<dyn Reporter>) -> Scheduler {
        self.with_progress(Arc::new(move |p: &Progress| reporter.progress(p)))
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn abort_token(&self) -> &CancellationToken {
        &self.abort
    }

    /// `f`, unless the run is aborted first (`None`).
    pub async fn or_abort<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        or_abort(&self.abort, f).await
    }

    /// Start `work` on every item (labelled for progress events) under the forks limit.
    /// Results come back from `Running::next` as items finish.
    pub fn run<T, R, F, Fut>(&self, items: Vec<(String, T)>, work: F) -> Running<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = self.clone();
        let work = Arc::new(work);
        let total = items.len();
        let mut driver = JoinSet::new();
        driver.spawn(async move {
            // Workers live in this set: dropping `Running` aborts the driver, which drops
            // the set, which aborts the workers.
            let mut workers = JoinSet::new();
            for (index, (label, item)) in items.into_iter().enumerate() {
                let permit = tokio::select! {
                    biased;
                    _ = me.cancel.cancelled() => None,
                    p = me.forks.clone().acquire_owned() => p.ok(),
                };
                let Some(permit) = permit else {
                    me.emit(&Progress::Skipped { index, label });
                    let _ = tx.send((index, Done::NotStarted));
                    continue;
                };
                me.emit(&Progress::Started {
                    index,
                    label: label.clone(),
                });
                let (me, work, tx) = (me.clone(), work.clone(), tx.clone());
                workers.spawn(async move {
                    let r = work(item).await;
                    drop(permit);
                    me.emit(&Progress::Finished { index, label });
                    let _ = tx.send((index, Done::Ran(r)));
                });
            }
            // A worker that panicked sent nothing: its item is missing from the results,
            // as a panicked host task always was.
            while workers.join_next().await.is_some() {}
        });
        Running {
            rx,
            _driver: driver,
            total,
        }
    }

    fn emit(&self, p: &Progress) {
        if let Some(sink) = &self.progress {
            sink(p);
        }
    }
}

/// `f`, unless `abort` fires first (`None`): how work gives up a step in flight.
pub async fn or_abort<T>(abort: &CancellationToken, f: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = abort.cancelled() => None,
        v = f => Some(v),
    }
}

/// A fan-out in progress.
pub struct Running<R> {
    rx: mpsc::UnboundedReceiver<(usize, Done<R>)>,
    _driver: JoinSet<()>,
    total: usize,
}

impl<R> Running<R> {
    /// The next item to finish or be skipped (its index in the input); `None` when all are.
    pub async fn next(&mut self) -> Option<(usize, Done<R>)> {
        self.rx.recv().await
    }

    /// Every item's result in input order (`None`: not started, or its work panicked).
    pub async fn in_order(mut self) -> Vec<Option<R>> {
        let mut out: Vec<Option<R>> = (0..self.total).map(|_| None).collect();
        while let Some((i, d)) = self.next().await {
            if let (Done::Ran(r), Some(slot)) = (d, out.get_mut(i)) {
                *slot = Some(r);
            }
        }
        out
    }
}

/// First SIGINT/SIGTERM: cancel (start nothing new, let in-flight work finish). Second:
/// abort (abandon the work in flight; the command still ends normally, so its report and
/// state are written). Third: exit at once with `ExitCode::Interrupted`. Each step is
/// announced through `reporter`. The handlers are in place when this returns (not later, in
/// the listening task): from then on a signal never gets the default action, which kills the
/// process where it stands.
pub fn listen_for_signals(
    cancel: CancellationToken,
    abort: CancellationToken,
    reporter: Arc<dyn Reporter>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        reporter.notice(
            "interrupted: finishing steps in flight, starting nothing new (again to abandon them)",
        );
        cancel.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        reporter.notice(
            "aborting: abandoning steps in flight, writing the run state (again to exit at once)",
        );
        abort.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(crate::report::ExitCode::Interrupted.code());
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::fixtures::host;
    use crate::transport::Connect;
    use crate::transport::fake::FakeFleet;

    fn recorder() -> (ProgressSink, Arc<Mutex<Vec<Progress>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: ProgressSink = Arc::new(move |p: &Progress| s.lock().unwrap().push(p.clone()));
        (sink, seen)
    }

    /// Connect to each host, run one command, hold the connection a moment, drop it.
    async fn touch(fleet: Arc<FakeFleet>, name: String) -> String {
        let h = host(&name);
        let target = fleet.target(&h).await.unwrap();
        let conn = fleet.connect(&target).await.unwrap();
        conn.exec("true", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(conn);
        name
    }

    fn names(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("h{i}"), format!("h{i}"))).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn forks_bound_the_connections_open_at_once() {
        for forks in [1, 3, 8] {
            let fleet = Arc::new(FakeFleet::new());
            let s = Scheduler::new(forks, CancellationToken::new(), CancellationToken::new());
            let f = fleet.clone();
            let done = s
                .run(names(20), move |n| touch(f.clone(), n))
                .in_order()
                .await;
            assert_eq!(done.iter().flatten().count(), 20, "forks {forks}");
            assert!(
                fleet.peak_open() <= forks,
                "forks {forks}: {} open at once",
                fleet.peak_open()
            );
            // The limit is used, not just respected (20 items of 5 ms each overlap).
            if forks > 1 {
                assert!(fleet.peak_open() > 1, "forks {forks}: ran one at a time");
            }
        }
    }

    #[tokio::test]
    async fn cancellation_stops_new_work_and_lets_running_work_finish() {
        let fleet = Arc::new(FakeFleet::new());
        let cancel = CancellationToken::new();
        let (sink, seen) = recorder();
        let s = Scheduler::new(2, cancel.clone(), CancellationToken::new()).with_progress(sink);
        let f = fleet.clone();
        let c = cancel.clone();
        // The second item cancels the run while the first two are in flight.
        let done = s
            .run(names(6), move |n| {
                let (f, c) = (f.clone(), c.clone());
                async move {
                    if n == "h1" {
                        c.cancel();
                    }
                    touch(f, n).await
                }
            })
            .in_order()
            .await;
        let ran: Vec<&str> = done.iter().flatten().map(String::as_str).collect();
        assert_eq!(
            ran,
            ["h0", "h1"],
            "only the items started before the cancel ran"
        );
        for n in ["h2", "h3", "h4", "h5"] {
            assert_eq!(
                fleet.attempts(n),
                0,
                "{n} was connected to after the cancel"
            );
        }
        let seen = seen.lock().unwrap();
        let skipped: Vec<usize> = seen
            .iter()
            .filter_map(|p| match p {
                Progress::Skipped { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(skipped, [2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn progress_events_come_in_order() {
        let fleet = Arc::new(FakeFleet::new());
        let (sink, seen) = recorder();
        let s = Scheduler::new(1, CancellationToken::new(), CancellationToken::new())
            .with_progress(sink);
        let f = fleet.clone();
        s.run(names(3), move |n| touch(f.clone(), n))
            .in_order()
            .await;
        let ev = |started: bool, index: usize| {
            let label = format!("h{index}");
            if started {
                Progress::Started { index, label }
            } else {
                Progress::Finished { index, label }
            }
        };
        // One fork: each item starts after the previous one finished, in input order.
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ev(true, 0),
                ev(false, 0),
                ev(true, 1),
                ev(false, 1),
                ev(true, 2),
                ev(false, 2)
            ]
        );

        // Many forks: still one Started before one Finished per item, starts in input order.
        let (sink, seen) = recorder();
        let s = Scheduler::new(4, CancellationToken::new(), CancellationToken::new())
            .with_progress(sink);
        let f = fleet.clone();
        s.run(names(10), move |n| touch(f.clone(), n))
            .in_order()
            .await;
        let seen = seen.lock().unwrap();
        let starts: Vec<usize> = seen
            .iter()
            .filter_map(|p| match p {
                Progress::Started { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(starts, (0..10).collect::<Vec<_>>());
        for i in 0..10 {
            let at = |want: bool| {
                seen.iter().position(|p| match p {
                    Progress::Started { index, .. } => want && *index == i,
                    Progress::Finished { index, .. } => !want && *index == i,
                    Progress::Skipped { .. } => false,
                })
            };
            let (s, f) = (at(true).unwrap(), at(false).unwrap());
            assert!(s < f, "item {i}: finished before it started");
        }
        assert_eq!(seen.len(), 20);
    }

    #[tokio::test]
    async fn abort_gives_up_work_in_flight() {
        let abort = CancellationToken::new();
        let s = Scheduler::new(2, CancellationToken::new(), abort.clone());
        abort.cancel();
        let never = std::future::pending::<()>();
        assert!(s.or_abort(never).await.is_none());
    }
}
