//! Token buckets for rate limits: the rule a bucket fills by, and the buckets of a store that
//! one process owns, kept in its memory (a shared store keeps them in the database, so that
//! every instance on it draws from the same buckets).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// How a bucket fills: `per_second` tokens flow in, up to `burst` held; a call takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// How long until a bucket holding `tokens` has one whole token.
    pub fn wait(&self, tokens: f64) -> Duration {
        let missing = (1.0 - tokens).max(0.0);
        Duration::from_secs_f64((missing / self.per_second).min(86_400.0))
    }

    /// What a bucket that held `tokens` at `then` holds at `now` (a clock that went back adds
    /// nothing).
    pub fn refill(&self, tokens: f64, then: i64, now: i64) -> f64 {
        let elapsed = (now - then).max(0) as f64 / 1000.0;
        (tokens + elapsed * self.per_second).min(self.burst as f64)
    }
}

/// One bucket: its tokens at a time, and when it will be full again (milliseconds since the
/// epoch).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
    full_at: i64,
}

/// Buckets are forgotten once this many are held and they have filled up again: a full bucket
/// is the same as none, so forgetting it changes no answer.
const PRUNE_ABOVE: usize = 16_384;

/// The buckets of one process, by key.
#[derive(Debug, Default)]
pub struct Buckets {
    held: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Takes up to `want` tokens from the bucket `key` at `now`: how many (at least one), or
    /// how long until there is one.
    pub fn take(&self, key: &str, rate: Rate, now: Timestamp, want: u32) -> Result<u32, Duration> {
        let now = now.as_millisecond();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() > PRUNE_ABOVE {
            held.retain(|_, b| b.full_at > now);
        }
        let bucket = match held.get_mut(key) {
            Some(b) => b,
            None => held.entry(key.to_string()).or_insert(Bucket { tokens: rate.burst as f64, at: now, full_at: now }),
        };
        let tokens = rate.refill(bucket.tokens, bucket.at, now);
        if tokens < 1.0 {
            // Refused: the bucket is left as it was, so it refills from its last grant.
            return Err(rate.wait(tokens));
        }
        let granted = (tokens.floor() as u32).min(want.max(1));
        bucket.at = bucket.at.max(now);
        bucket.tokens = tokens - granted as f64;
        bucket.full_at = bucket.at + ((rate.burst as f64 - bucket.tokens) / rate.per_second * 1000.0).ceil() as i64;
        Ok(granted)
    }
}
