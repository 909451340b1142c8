//! Rate limits: the class of a call (submissions, actions, reads), the token-bucket rules per
//! caller and per client address for each class and for failed authentication, and taking from
//! the buckets, which the store keeps (in memory for the embedded database, in the database for
//! PostgreSQL, so that every instance draws from the same buckets).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use signoff_engine::Code;
use signoff_store::Store;
use signoff_store::rate::Rate;

use crate::error::Problem;

/// What a call does, for its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `POST /v1/requests`.
    Submissions,
    /// Every other call that changes something: actions, cancellations, Slack clicks, emailed
    /// links, admin calls.
    Actions,
    /// Every call that only reads.
    Reads,
}

impl Class {
    /// The class of a call to `route` (the matched route pattern) with `method`; none for the
    /// probes and the scrape, which are never limited.
    pub fn of(method: &axum::http::Method, route: &str) -> Option<Class> {
        if matches!(route, "/healthz" | "/readyz" | "/metrics") {
            return None;
        }
        Some(if method == axum::http::Method::POST && route == "/v1/requests" {
            Class::Submissions
        } else if method.is_safe() {
            Class::Reads
        } else {
            Class::Actions
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Submissions => "submissions",
            Class::Actions => "actions",
            Class::Reads => "reads",
        }
    }
}

/// The limits of one class: per authenticated caller and per client address (either may be
/// off).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClassLimits {
    pub caller: Option<Rate>,
    pub address: Option<Rate>,
}

/// Every limit in force.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub submissions: ClassLimits,
    pub actions: ClassLimits,
    pub reads: ClassLimits,
    /// Failed authentications (unknown tokens, failed sign-ins) per client address; past it,
    /// calls from the address that try to authenticate are refused without checking.
    pub failed_auth: Option<Rate>,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<Block>,
}

impl Default for RateLimits {
    /// Generous limits, far above what a person or a well-behaved integration sends, that stop
    /// a runaway script and guessing tokens.
    fn default() -> Self {
        let rate = |per_second: f64, burst: u32| Some(Rate { per_second, burst });
        RateLimits {
            submissions: ClassLimits { caller: rate(100.0, 200), address: rate(500.0, 1000) },
            actions: ClassLimits { caller: rate(100.0, 200), address: rate(500.0, 1000) },
            reads: ClassLimits { caller: rate(500.0, 1000), address: rate(2000.0, 4000) },
            failed_auth: rate(1.0, 20),
            trusted_proxies: Vec::new(),
        }
    }
}

/// One class as the file writes it: each rule a rate (`parse_rate`) or `off`; a rule left out
/// keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassFile {
    pub caller: Option<String>,
    pub address: Option<String>,
}

/// `[rate_limits]` in the configuration file (and `--rate-limits` for `enabled`): what it
/// leaves out keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    /// Off, nothing is limited (default on).
    pub enabled: Option<bool>,
    pub submissions: Option<ClassFile>,
    pub actions: Option<ClassFile>,
    pub reads: Option<ClassFile>,
    pub failed_auth: Option<String>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client: a call from
    /// one is limited by the last address in that header that is not itself a trusted proxy.
    pub trusted_proxies: Option<Vec<String>>,
}

impl RateLimitsFile {
    /// The limits this file sets over the defaults, or none when they are off; a bad value is
    /// named by its setting.
    pub fn resolve(&self) -> Result<Option<RateLimits>, String> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let mut limits = RateLimits::default();
        let over = |name: &str, text: &Option<String>, default: Option<Rate>| -> Result<Option<Rate>, String> {
            match text.as_deref() {
                None => Ok(default),
                Some("off") => Ok(None),
                Some(t) => parse_rate(t).map(Some).map_err(|e| format!("rate_limits.{name}: {e}")),
            }
        };
        for (name, file, class) in [
            ("submissions", &self.submissions, &mut limits.submissions),
            ("actions", &self.actions, &mut limits.actions),
            ("reads", &self.reads, &mut limits.reads),
        ] {
            if let Some(f) = file {
                class.caller = over(&format!("{name}.caller"), &f.caller, class.caller)?;
                class.address = over(&format!("{name}.address"), &f.address, class.address)?;
            }
        }
        limits.failed_auth = over("failed_auth", &self.failed_auth, limits.failed_auth)?;
        limits.trusted_proxies = self.trusted_proxies.iter().flatten().map(|p| Block::parse(p)).collect::<Result<_, _>>()?;
        Ok(Some(limits))
    }
}

/// A rule as text: `N/s`, `N/min` or `N/h`, optionally followed by `burst M` (by default N).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("`{text}` is not a rate such as `50/s`, `600/min` or `100/h burst 20` (or `off`)");
    let mut words = text.split_whitespace();
    let (count, unit) = words.next().and_then(|w| w.split_once('/')).ok_or_else(bad)?;
    let count: u32 = count.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(bad()),
    };
    let burst = match (words.next(), words.next(), words.next()) {
        (None, None, None) => count,
        (Some("burst"), Some(b), None) => b.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if count == 0 || burst == 0 {
        return Err(format!("`{text}`: a rate and its burst must be at least 1 (write `off` to turn the limit off)"));
    }
    Ok(Rate { per_second: count as f64 / seconds, burst })
}

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Block {
    net: IpAddr,
    bits: u32,
}

impl Block {
    fn parse(text: &str) -> Result<Block, String> {
        let bad = || format!("rate_limits.trusted_proxies: `{text}` is not an address or a CIDR block such as 10.0.0.0/8");
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u32>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Block { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let shift = |max: u32| max - self.bits;
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => self.bits == 0 || (u32::from(n) >> shift(32)) == (u32::from(i) >> shift(32)),
            (IpAddr::V6(n), IpAddr::V6(i)) => self.bits == 0 || (u128::from(n) >> shift(128)) == (u128::from(i) >> shift(128)),
            _ => false,
        }
    }
}

impl RateLimits {
    fn class(&self, class: Class) -> &ClassLimits {
        match class {
            Class::Submissions => &self.submissions,
            Class::Actions => &self.actions,
            Class::Reads => &self.reads,
        }
    }
}

/// The limits in force, with the addresses refused for failing to authenticate too often.
pub struct Throttle {
    limits: RateLimits,
    store: Arc<dyn Store>,
    /// Addresses whose failed-authentication bucket was empty, until it has a token again: their
    /// calls are refused without a trip to the store (and without checking what they send).
    shut_out: Mutex<HashMap<IpAddr, Timestamp>>,
    /// Tokens this instance took from a bucket ahead of need, by key: a busy bucket is taken
    /// from a tenth of its burst at a time (at most 100), so that it is not one row every call
    /// of every instance waits on.
    leased: Mutex<HashMap<String, u32>>,
}

/// How many tokens to take from a bucket of `rate` at once.
fn batch(rate: Rate) -> u32 {
    (rate.burst / 10).clamp(1, 100)
}

/// Leases are forgotten (their tokens unused) once this many keys hold some.
const LEASED_KEYS: usize = 16_384;

impl Throttle {
    pub fn new(limits: RateLimits, store: Arc<dyn Store>) -> Throttle {
        Throttle { limits, store, shut_out: Mutex::new(HashMap::new()), leased: Mutex::new(HashMap::new()) }
    }

    /// The client a call came from: the peer, or behind a trusted proxy the last address its
    /// `X-Forwarded-For` names that is not a trusted proxy itself.
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        let trusted = |ip: IpAddr| self.limits.trusted_proxies.iter().any(|b| b.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let named = forwarded_for.into_iter().flat_map(|h| h.rsplit(',')).filter_map(|a| a.trim().parse::<IpAddr>().ok());
        let mut last = peer;
        for ip in named {
            last = ip;
            if !trusted(ip) {
                break;
            }
        }
        Some(last)
    }

    /// Takes a token for a call of `class` from `address`.
    pub async fn address(&self, class: Class, address: Option<IpAddr>, now: Timestamp) -> Result<(), Problem> {
        let (Some(rate), Some(ip)) = (self.limits.class(class).address, address) else { return Ok(()) };
        self.take(&format!("address:{ip}:{}", class.as_str()), rate, now, class.as_str(), "address", || {
            format!("too many {} from {ip}", class.as_str())
        })
        .await
    }

    /// Takes a token for a call of `class` by `caller`.
    pub async fn caller(&self, class: Class, caller: &str, now: Timestamp) -> Result<(), Problem> {
        let Some(rate) = self.limits.class(class).caller else { return Ok(()) };
        self.take(&format!("caller:{caller}:{}", class.as_str()), rate, now, class.as_str(), "caller", || {
            format!("too many {} by {caller}", class.as_str())
        })
        .await
    }

    /// Refuses a call from an address shut out for failing to authenticate too often.
    pub fn shut_out(&self, address: Option<IpAddr>, now: Timestamp) -> Result<(), Problem> {
        let Some(ip) = address else { return Ok(()) };
        let mut shut = self.shut_out.lock().unwrap_or_else(|e| e.into_inner());
        match shut.get(&ip) {
            Some(until) if *until > now => Err(shut_out_refusal(ip, until.duration_since(now).unsigned_abs())),
            Some(_) => {
                shut.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `address`; the answer is `refusal` (401), or 429
    /// when the address has failed too often, and then its calls are shut out for a while.
    pub async fn failed_auth(&self, address: Option<IpAddr>, now: Timestamp, refusal: Problem) -> Problem {
        tracing::warn!(address = %address.map_or_else(|| "unknown".to_string(), |a| a.to_string()), detail = %refusal.detail, "failed authentication");
        let (Some(rate), Some(ip)) = (self.limits.failed_auth, address) else { return refusal };
        // (One at a time: every failure counts, on whichever instance.)
        match self.store.take_tokens(&format!("failed_auth:{ip}"), rate, now, 1).await {
            Ok(Ok(_)) => refusal,
            Ok(Err(wait)) => {
                let until = now + jiff::SignedDuration::try_from(wait).unwrap_or_default();
                self.shut_out.lock().unwrap_or_else(|e| e.into_inner()).insert(ip, until);
                shut_out_refusal(ip, wait)
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate limits unavailable; not limiting");
                refusal
            }
        }
    }

    async fn take(&self, key: &str, rate: Rate, now: Timestamp, class: &'static str, by: &'static str, what: impl FnOnce() -> String) -> Result<(), Problem> {
        {
            let mut leased = self.leased.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = leased.get_mut(key).filter(|n| **n > 0) {
                *n -= 1;
                return Ok(());
            }
        }
        match self.store.take_tokens(key, rate, now, batch(rate)).await {
            Ok(Ok(granted)) => {
                if granted > 1 {
                    let mut leased = self.leased.lock().unwrap_or_else(|e| e.into_inner());
                    if leased.len() >= LEASED_KEYS {
                        leased.clear();
                    }
                    *leased.entry(key.to_string()).or_default() += granted - 1;
                }
                Ok(())
            }
            Ok(Err(wait)) => {
                metrics::counter!(crate::telemetry::RATE_LIMITED, "class" => class, "by" => by).increment(1);
                Err(limited(what(), wait))
            }
            // A store that cannot answer fails the call elsewhere if it matters; the limits
            // themselves never stop a call.
            Err(e) => {
                tracing::warn!(error = %e, "rate limits unavailable; not limiting");
                Ok(())
            }
        }
    }
}

/// The 429 of an address shut out for failing to authenticate too often, counted.
fn shut_out_refusal(ip: IpAddr, wait: Duration) -> Problem {
    metrics::counter!(crate::telemetry::RATE_LIMITED, "class" => "failed_auth", "by" => "address").increment(1);
    limited(format!("too many failed authentications from {ip}"), wait)
}

/// 429 `rate_limited`, retry in `wait` (whole seconds, at least one).
fn limited(what: String, wait: Duration) -> Problem {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    Problem::new(Code::RateLimited, format!("{what}; retry in {seconds} s")).retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_written() {
        assert_eq!(parse_rate("50/s").unwrap(), Rate { per_second: 50.0, burst: 50 });
        assert_eq!(parse_rate("600/min burst 20").unwrap(), Rate { per_second: 10.0, burst: 20 });
        assert_eq!(parse_rate("36/h").unwrap(), Rate { per_second: 0.01, burst: 36 });
        for bad in ["", "50", "50/week", "x/s", "0/s", "5/s burst", "5/s burst 0", "5/s size 3"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blocks_hold_their_addresses() {
        let b = Block::parse("10.0.0.0/8").unwrap();
        assert!(b.contains("10.200.1.2".parse().unwrap()) && !b.contains("11.0.0.1".parse().unwrap()));
        let one = Block::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()) && !one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Block::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Block::parse("10.0.0.0/33").is_err() && Block::parse("nope").is_err());
    }

    #[test]
    fn the_file_lays_over_the_defaults() {
        let file: RateLimitsFile = toml::from_str("submissions = { caller = \"5/s\" }\nreads = { address = \"off\" }\nfailed_auth = \"10/min\"\n").unwrap();
        let limits = file.resolve().unwrap().unwrap();
        let defaults = RateLimits::default();
        assert_eq!(limits.submissions.caller, Some(Rate { per_second: 5.0, burst: 5 }));
        assert_eq!(limits.submissions.address, defaults.submissions.address, "left out, kept");
        assert_eq!((limits.reads.address, limits.reads.caller), (None, defaults.reads.caller));
        assert_eq!(limits.failed_auth, Some(Rate { per_second: 10.0 / 60.0, burst: 10 }));
        let off: RateLimitsFile = toml::from_str("enabled = false\n").unwrap();
        assert_eq!(off.resolve().unwrap(), None);
        let bad: RateLimitsFile = toml::from_str("actions = { caller = \"lots\" }\n").unwrap();
        assert!(bad.resolve().unwrap_err().starts_with("rate_limits.actions.caller: `lots`"));
        let proxy: RateLimitsFile = toml::from_str("trusted_proxies = [\"10.0.0.0/8\", \"what\"]\n").unwrap();
        assert!(proxy.resolve().unwrap_err().contains("`what`"));
    }

    #[test]
    fn the_client_is_the_first_untrusted_address_from_the_right() {
        let file: RateLimitsFile = toml::from_str("trusted_proxies = [\"10.0.0.0/8\"]\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(signoff_store_sqlite::SqliteStore::open(dir.path().join("t.db")).unwrap());
        let t = Throttle::new(file.resolve().unwrap().unwrap(), store);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.client(Some(ip("192.0.2.1")), Some("198.51.100.9")), Some(ip("192.0.2.1")), "an untrusted peer is the client");
        assert_eq!(t.client(Some(ip("10.0.0.2")), Some("198.51.100.9, 203.0.113.5, 10.1.1.1")), Some(ip("203.0.113.5")));
        assert_eq!(t.client(Some(ip("10.0.0.2")), None), Some(ip("10.0.0.2")), "no header: the proxy itself");
    }
}
