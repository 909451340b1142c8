//! The one source of time. Production reads the system clock; tests inject a `ManualClock`
//! and move it forward explicitly, so nothing in signoff's tests waits on real time. Anything
//! that waits for a moment (the timer scheduler) waits through the clock too.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Resolves once `now()` has reached `at` (or earlier: callers re-read `now()`).
    fn sleep_until(&self, at: Timestamp) -> Sleep<'_>;
}

pub struct SystemClock;

/// Longest single sleep: a wall-clock jump is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // Milliseconds are precise enough for approvals and keep timestamps readable.
        Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| Timestamp::now())
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep<'_> {
        let wait = at.duration_since(Timestamp::now());
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO).min(MAX_SLEEP);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(watch::Sender<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(watch::Sender::new(start))
    }

    pub fn advance(&self, by: SignedDuration) {
        self.0.send_modify(|t| *t = t.checked_add(by).unwrap_or(*t));
    }

    /// How many `sleep_until`s are waiting on this clock now: a test can wait for a task to
    /// reach its sleep before moving time, instead of guessing with real time.
    pub fn sleepers(&self) -> usize {
        self.0.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep<'_> {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|t| *t >= at).await;
        })
    }
}
