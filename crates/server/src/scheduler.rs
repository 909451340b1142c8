//! The timer scheduler: sleeps until the earliest stored timer falls due (or until a commit
//! brings an earlier one), then fires every due request through the same engine path as a
//! human action. Idle and alone on its store, it does nothing at all: no polling loop scans
//! requests. On a store shared with other instances it also looks every few seconds, for
//! timers an instance that died had set.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;

use signoff_store::Store;

use crate::clock::Clock;
use crate::error::Problem;

/// What fires a request's due timers (the service, through the same engine path as a human
/// action): true if anything happened.
#[async_trait::async_trait]
pub trait Fire: Send + Sync {
    async fn fire(&self, id: &str) -> Result<bool, Problem>;
}

/// Due requests fired per round, concurrently (their commits share group commits).
const BATCH: u32 = 1024;

/// How long a claim on due timers keeps other instances off them. Firing a round normally
/// takes well under a second; if this instance dies meanwhile, another fires them after this.
const CLAIM_LEASE: SignedDuration = SignedDuration::from_secs(15);

/// On a store shared by several instances, the longest the scheduler sleeps without looking at
/// the store: a timer another instance set (and then died before firing) is found this late
/// at most. Alone on its store, an instance hears of every timer from its own commits.
const SHARED_STORE_LOOK: SignedDuration = SignedDuration::from_secs(5);

/// Wakes the scheduler when a commit brings a timer earlier than the one it sleeps for.
#[derive(Default)]
pub struct TimerWake {
    /// Unix ms the scheduler sleeps until; i64::MAX while it is working out its next sleep.
    planned_ms: AtomicI64,
    notify: Notify,
}

impl TimerWake {
    pub fn new() -> Self {
        TimerWake { planned_ms: AtomicI64::new(i64::MAX), notify: Notify::new() }
    }

    /// Called after every commit with the request's next timer.
    pub fn hint(&self, next: Option<Timestamp>) {
        if let Some(t) = next
            && t.as_millisecond() < self.planned_ms.load(Ordering::Acquire) {
                self.notify.notify_one();
            }
    }
}

/// The timer worker: what it uses is what it is given.
pub struct Scheduler {
    timers: Arc<dyn Fire>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<TimerWake>,
}

impl Scheduler {
    pub fn new(timers: Arc<dyn Fire>, store: Arc<dyn Store>, clock: Arc<dyn Clock>, wake: Arc<TimerWake>) -> Self {
        Scheduler { timers, store, clock, wake }
    }

    /// Fires every timer due now; returns how many requests changed.
    pub async fn fire_due(&self) -> Result<usize, Problem> {
        Ok(self.fire_due_counted().await?.1)
    }

    /// Fires every timer due now: (requests found due, requests changed).
    async fn fire_due_counted(&self) -> Result<(usize, usize), Problem> {
        let now = self.clock.now();
        let mut found = 0;
        let mut changed = 0;
        loop {
            let ids = self.store.claim_timers(now, BATCH, now + CLAIM_LEASE).await?;
            let n = ids.len();
            found += n;
            let mut round = tokio::task::JoinSet::new();
            for id in ids {
                let s = self.timers.clone();
                round.spawn(async move { (s.fire(&id).await, id) });
            }
            let mut changed_now = 0;
            while let Some(joined) = round.join_next().await {
                match joined {
                    Ok((Ok(true), _)) => changed_now += 1,
                    Ok((Ok(false), _)) => {}
                    Ok((Err(e), id)) => tracing::error!(request = %id, error = %e.detail, "firing timers failed"),
                    Err(e) => tracing::error!(error = %e, "a timer task failed"),
                }
            }
            changed += changed_now;
            // A short batch was the last.
            if n < BATCH as usize {
                break;
            }
        }
        Ok((found, changed))
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let wake = self.wake.clone();
        let shared = self.store.changes().is_some();
        // Rounds in a row that found a timer due but nothing to claim.
        let mut unclaimable = 0;
        loop {
            wake.planned_ms.store(i64::MAX, Ordering::Release);
            let (found, changed) = match self.fire_due_counted().await {
                Ok(counts) => counts,
                Err(e) => {
                    tracing::error!(error = %e.detail, "timer scheduler: retrying in 1 s");
                    let retry = self.clock.now() + SignedDuration::from_secs(1);
                    self.clock.sleep_until(retry).await;
                    continue;
                }
            };
            let next = match self.store.next_timer_at().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "timer scheduler: retrying in 1 s");
                    Some(self.clock.now() + SignedDuration::from_secs(1))
                }
            };
            let now = self.clock.now();
            let idle = if shared { SHARED_STORE_LOOK } else { SignedDuration::from_hours(1) };
            let mut until = next.unwrap_or(now + idle).min(now + idle);
            if until <= now {
                if changed > 0 || (found == 0 && unclaimable == 0) {
                    // More fell due while this round ran: go again.
                    unclaimable = usize::from(found == 0);
                    continue;
                }
                if found == 0 {
                    // Due, yet nothing to claim twice running: a commit in flight holds the
                    // row (claims skip locked rows). Look again shortly rather than spin.
                    until = now + SignedDuration::from_millis(50);
                } else {
                    // Due timers that fire without effect would spin; that is a bug, not load.
                    tracing::error!(due = %until, "timers are due but firing changed nothing; backing off 1 s");
                    until = now + SignedDuration::from_secs(1);
                }
            }
            unclaimable = 0;
            wake.planned_ms.store(until.as_millisecond(), Ordering::Release);
            tokio::select! {
                _ = self.clock.sleep_until(until) => {}
                _ = wake.notify.notified() => {}
            }
        }
    }
}
