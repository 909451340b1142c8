//! The dispatcher: delivers due outbox rows, records every attempt, and schedules retries with
//! exponential backoff and jitter on svix's schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h),
//! honouring a receiver's `Retry-After`. Delivery is at least once: a row stays pending until an
//! attempt is recorded, so a crash mid-delivery means it is sent again after restart and
//! receivers deduplicate on its id (`webhook-id`).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use signoff_store::{Attempt, AttemptOutcome, Notification};
use tokio::sync::{Notify, Semaphore};

use signoff_store::Store;

use super::Channels;
use super::channel::{Delivery, Outbound, TIMEOUT};
use crate::clock::Clock;

/// Delays after the 1st, 2nd, … failed attempt; after the last, the notification has failed.
pub const RETRY_SCHEDULE: [SignedDuration; 7] = [
    SignedDuration::from_secs(5),
    SignedDuration::from_mins(5),
    SignedDuration::from_mins(30),
    SignedDuration::from_hours(2),
    SignedDuration::from_hours(5),
    SignedDuration::from_hours(10),
    SignedDuration::from_hours(10),
];
/// Deliveries in flight at once.
const CONCURRENCY: usize = 256;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// When to try again after `attempts` failed attempts, or never.
pub fn next_attempt(attempts: u32, now: Timestamp, retry_after: Option<SignedDuration>) -> Option<Timestamp> {
    let base = *RETRY_SCHEDULE.get(attempts.checked_sub(1)? as usize)?;
    let delay = match retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER),
        // ±20% jitter, so that a receiver coming back is not hit by every retry at once.
        None => base.mul_f64(0.8 + 0.4 * fastrand::f64()),
    };
    now.checked_add(delay).ok()
}

/// The outbox worker: what it uses is what it is given.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    channels: Arc<Channels>,
    /// Woken by the service after a commit that wrote notifications.
    wake: Arc<Notify>,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    done: Notify,
}

/// How long a claim on rows being delivered lasts: longer than any delivery can take.
const LEASE: SignedDuration = SignedDuration::from_secs(2 * TIMEOUT.as_secs() as i64 + 30);

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, channels: Arc<Channels>, wake: Arc<Notify>) -> Arc<Dispatcher> {
        let make = || reqwest::Client::builder().timeout(TIMEOUT).pool_max_idle_per_host(CONCURRENCY);
        let (http, trusted) = crate::outgoing_client(make).expect("an HTTP client that trusts no certificate authority always builds");
        if !trusted {
            tracing::warn!("this system has no CA certificates (install ca-certificates): notifications over HTTPS (Slack, webhooks) will fail");
        }
        Arc::new(Dispatcher { store, clock, channels, wake, http, slots: Arc::new(Semaphore::new(CONCURRENCY)), done: Notify::new() })
    }

    /// Delivers everything due now and waits for the attempts to be recorded; how many were
    /// attempted. (Tests drive delivery with this; `run` does the same continuously.)
    pub async fn deliver_due(self: &Arc<Self>) -> usize {
        let mut total = 0;
        loop {
            let started = self.start_due().await;
            if started.is_empty() {
                return total;
            }
            total += started.len();
            for handle in started {
                let _ = handle.await;
            }
        }
    }

    /// Claims due rows for the free delivery slots and starts delivering them.
    async fn start_due(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Vec::new();
        }
        let now = self.clock.now();
        let due = match self.store.claim_notifications(now, free as u32, now + LEASE).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "dispatcher: cannot read the outbox");
                return Vec::new();
            }
        };
        let mut started = Vec::new();
        for n in due {
            let Ok(slot) = self.slots.clone().acquire_owned().await else { break };
            let me = self.clone();
            started.push(tokio::spawn(async move {
                let attempt = me.attempt(&n).await;
                if let Err(e) = me.store.record_attempts(vec![attempt]).await {
                    tracing::error!(notification = %n.outgoing.id, error = %e, "dispatcher: cannot record an attempt; it is retried when its claim runs out");
                }
                drop(slot);
                me.done.notify_one();
            }));
        }
        started
    }

    async fn attempt(&self, n: &Notification) -> Attempt {
        let out = Outbound { http: &self.http, store: &*self.store };
        let span = tracing::info_span!("delivery", otel.name = %n.outgoing.channel, notification = %n.outgoing.id, request = %n.outgoing.request_id);
        if let Some(trace) = &n.outgoing.trace {
            crate::traces::continue_stored(&span, trace);
        }
        let delivery = match self.channels.get(&n.outgoing.channel) {
            Some(channel) => tracing::Instrument::instrument(channel.deliver(&out, n, self.clock.now()), span).await,
            None => Delivery::Failed { status: None, error: format!("unknown channel `{}`", n.outgoing.channel), retry_after: None, permanent: true },
        };
        let now = self.clock.now();
        let (status, outcome) = match delivery {
            Delivery::Delivered { status, result } => (status, AttemptOutcome::Delivered { result }),
            Delivery::NotYet { until } => (None, AttemptOutcome::Deferred { until }),
            Delivery::Failed { status, error, retry_after, permanent } => {
                let next = if permanent { None } else { next_attempt(n.attempts + 1, now, retry_after) };
                metrics::counter!(crate::telemetry::NOTIFICATION_FAILURES, "channel" => n.outgoing.channel.clone()).increment(1);
                (status, AttemptOutcome::Failed { error, next_attempt_at: next })
            }
        };
        metrics::counter!(crate::telemetry::NOTIFICATION_ATTEMPTS, "channel" => n.outgoing.channel.clone()).increment(1);
        Attempt { notification: n.outgoing.id.clone(), revision: n.revision, at: now, status, outcome }
    }

    /// Runs until the task is dropped: delivers what is due, then sleeps until the next row
    /// falls due, a commit adds rows, or a delivery finishes.
    pub async fn run(self: Arc<Self>) {
        let wake = self.wake.clone();
        loop {
            let started = self.start_due().await;
            if !started.is_empty() {
                continue;
            }
            let next = self.store.next_notification_at().await.ok().flatten();
            let now = self.clock.now();
            let until = match next {
                Some(t) if t > now => t,
                // Due rows wait for a free slot: a finishing delivery wakes us.
                _ => now + SignedDuration::from_hours(1),
            };
            tokio::select! {
                _ = self.clock.sleep_until(until) => {}
                _ = wake.notified() => {}
                _ = self.done.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_schedule_with_jitter_and_ends() {
        let now: Timestamp = "2026-11-22T09:00:00Z".parse().unwrap();
        for (i, base) in RETRY_SCHEDULE.iter().enumerate() {
            let next = next_attempt(i as u32 + 1, now, None).unwrap();
            let delay = next.duration_since(now).as_secs_f64();
            let base = base.as_secs_f64();
            assert!(delay >= base * 0.8 && delay <= base * 1.2, "attempt {}: {delay}", i + 1);
        }
        assert_eq!(next_attempt(8, now, None), None, "eight attempts, then it has failed");
    }

    #[test]
    fn retry_after_is_honoured() {
        let now: Timestamp = "2026-11-22T09:00:00Z".parse().unwrap();
        assert_eq!(next_attempt(1, now, Some(SignedDuration::from_secs(120))), Some(now + SignedDuration::from_secs(120)));
    }
}
