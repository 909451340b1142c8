//! Statistics over a window of requests (totals by outcome, decision times, SLA compliance,
//! escalation, timeout and auto-approval rates, and per step the time waiting and the time to
//! decide) and one person's summary. Percentiles are nearest-rank: the p-th percentile of n
//! sorted values is the value at rank ⌈p·n/100⌉, so every number can be checked by hand.

use std::collections::BTreeMap;

use serde::Serialize;
use signoff_engine::RequestStatus;

use crate::facts::{Millis, RequestFacts, Verdict};

/// Which requests a statistic covers: those submitted in `[from, to)`, of one policy or all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub from: Millis,
    pub to: Millis,
    pub policy: Option<String>,
}

impl Window {
    /// `[from, to)` of `policy` (every policy when none).
    pub fn between(from: jiff::Timestamp, to: jiff::Timestamp, policy: Option<String>) -> Window {
        Window { from: from.as_millisecond(), to: to.as_millisecond(), policy }
    }

    pub fn covers(&self, r: &RequestFacts) -> bool {
        r.submitted >= self.from && r.submitted < self.to && self.policy.as_ref().is_none_or(|p| *p == r.policy)
    }
}

/// Durations in seconds at three percentiles, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Of durations in milliseconds (sorted here); `None` when there are none.
    pub fn of(mut ms: Vec<Millis>) -> Option<Percentiles> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_unstable();
        Some(Percentiles { count: ms.len(), p50: seconds(rank(&ms, 50)), p90: seconds(rank(&ms, 90)), p99: seconds(rank(&ms, 99)) })
    }
}

/// The nearest-rank `p`-th percentile of sorted, non-empty `values`.
pub fn rank(values: &[Millis], p: usize) -> Millis {
    let r = (p * values.len()).div_ceil(100).max(1);
    values[r - 1]
}

/// The median (nearest-rank) of durations in milliseconds, in seconds.
pub fn median(mut ms: Vec<Millis>) -> Option<f64> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_unstable();
    Some(seconds(rank(&ms, 50)))
}

pub fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// A share of a whole: how many of how many, and the fraction (none of none is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub count: usize,
    pub of: usize,
    pub rate: f64,
}

impl Rate {
    pub fn new(count: usize, of: usize) -> Rate {
        Rate { count, of, rate: if of == 0 { 0.0 } else { count as f64 / of as f64 } }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub requests: usize,
    /// Requests by status now: pending, approved, rejected, expired, cancelled.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// From submission to decision, of the decided requests.
    pub decision_time: Option<Percentiles>,
    /// Requests that met every SLA they had, of those whose SLAs have been settled.
    pub sla_compliance: Rate,
    pub escalation_rate: Rate,
    pub timeout_rate: Rate,
    pub auto_approval_rate: Rate,
    pub steps: Vec<StepStats>,
}

/// One step of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepStats {
    pub policy: String,
    pub step: String,
    /// Times it was activated.
    pub activated: usize,
    pub skipped: usize,
    /// Active now.
    pub open: usize,
    /// From the request's submission to the step's activation (waiting on earlier steps).
    pub waiting: Option<Percentiles>,
    /// From activation to decision, of the decided activations.
    pub deciding: Option<Percentiles>,
    pub sla_compliance: Rate,
}

/// Statistics of the requests `window` covers, as of `now`.
pub fn stats<'a>(facts: impl IntoIterator<Item = &'a RequestFacts>, window: &Window, now: Millis) -> Stats {
    let mut outcomes: BTreeMap<&'static str, usize> =
        ["pending", "approved", "rejected", "expired", "cancelled"].into_iter().map(|s| (s, 0)).collect();
    let (mut decided, mut requests) = (Vec::new(), 0);
    let (mut sla_met, mut sla_settled, mut escalated, mut timed_out, mut auto) = (0, 0, 0, 0, 0);
    #[derive(Default)]
    struct StepAcc {
        activated: usize,
        skipped: usize,
        open: usize,
        waiting: Vec<Millis>,
        deciding: Vec<Millis>,
        sla_met: usize,
        sla_settled: usize,
    }
    let mut steps: BTreeMap<(&str, &str), StepAcc> = BTreeMap::new();
    for r in facts.into_iter().filter(|r| window.covers(r)) {
        requests += 1;
        *outcomes.entry(r.status.as_str()).or_default() += 1;
        if r.status != RequestStatus::Pending {
            decided.push(r.deciding(now));
        }
        if let Some(met) = r.met_sla(now) {
            sla_settled += 1;
            sla_met += usize::from(met);
        }
        escalated += usize::from(r.escalated());
        timed_out += usize::from(r.timed_out());
        auto += usize::from(r.auto_approved);
        for s in &r.steps {
            let acc = steps.entry((&r.policy, &s.id)).or_default();
            if s.status == signoff_engine::state::StepStatus::Skipped {
                acc.skipped += 1;
            }
            let Some(activated) = s.activated else { continue };
            acc.activated += 1;
            acc.waiting.push(activated - r.submitted);
            match s.decided {
                Some(d) => acc.deciding.push(d - activated),
                None => acc.open += 1,
            }
            if let Some(met) = s.met_sla(now) {
                acc.sla_settled += 1;
                acc.sla_met += usize::from(met);
            }
        }
    }
    Stats {
        requests,
        outcomes,
        decision_time: Percentiles::of(decided),
        sla_compliance: Rate::new(sla_met, sla_settled),
        escalation_rate: Rate::new(escalated, requests),
        timeout_rate: Rate::new(timed_out, requests),
        auto_approval_rate: Rate::new(auto, requests),
        steps: steps
            .into_iter()
            .map(|((policy, step), a)| StepStats {
                policy: policy.to_string(),
                step: step.to_string(),
                activated: a.activated,
                skipped: a.skipped,
                open: a.open,
                waiting: Percentiles::of(a.waiting),
                deciding: Percentiles::of(a.deciding),
                sla_compliance: Rate::new(a.sla_met, a.sla_settled),
            })
            .collect(),
    }
}

/// How soon a pending assignment counts as urgent.
pub const URGENT_WITHIN: Millis = 15 * 60 * 1000;
/// How soon a request's expiry counts as near.
pub const EXPIRING_WITHIN: Millis = 60 * 60 * 1000;

/// One person's load and habits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub user: String,
    /// Steps waiting on them now.
    pub pending: usize,
    /// Of those, due within 15 minutes (or overdue).
    pub urgent: usize,
    /// Of those, on requests that expire within the hour.
    pub expiring: usize,
    /// Decisions in the window (by when they were made).
    pub approved: usize,
    pub rejected: usize,
    pub delegated: usize,
    /// From being asked to deciding, over the decisions in the window, in seconds.
    pub median_response: Option<f64>,
}

/// `user`'s summary as of `now`; decisions count when they were made in `[window.from,
/// window.to)` (of `window.policy`, if set), pending work counts whenever it arrived.
pub fn summary<'a>(facts: impl IntoIterator<Item = &'a RequestFacts>, user: &str, window: &Window, now: Millis) -> Summary {
    let mut out = Summary { user: user.to_string(), pending: 0, urgent: 0, expiring: 0, approved: 0, rejected: 0, delegated: 0, median_response: None };
    let mut responses = Vec::new();
    for r in facts {
        if window.policy.as_ref().is_some_and(|p| *p != r.policy) {
            continue;
        }
        for s in &r.steps {
            for a in s.assignments.iter().filter(|a| a.approver == user) {
                if a.is_open() && s.is_open() {
                    out.pending += 1;
                    out.urgent += usize::from(s.deadline.is_some_and(|d| d <= now + URGENT_WITHIN));
                    out.expiring += usize::from(r.expires.is_some_and(|e| e <= now + EXPIRING_WITHIN));
                    continue;
                }
                let (Some(at), Some(verdict)) = (a.acted, a.verdict) else { continue };
                if at < window.from || at >= window.to {
                    continue;
                }
                match verdict {
                    Verdict::Approved => out.approved += 1,
                    Verdict::Rejected => out.rejected += 1,
                    Verdict::Delegated => out.delegated += 1,
                }
                if verdict != Verdict::Delegated {
                    responses.push(at - a.from);
                }
            }
        }
    }
    out.median_response = median(responses);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Millis> = (1..=10).map(|s| s * 1000).collect();
        let p = Percentiles::of(v).unwrap();
        assert_eq!((p.count, p.p50, p.p90, p.p99), (10, 5.0, 9.0, 10.0));
        assert_eq!(Percentiles::of(vec![7000]).unwrap().p50, 7.0);
        assert!(Percentiles::of(vec![]).is_none());
        assert_eq!(median(vec![4000, 1000, 3000, 2000]), Some(2.0));
        assert_eq!(Rate::new(0, 0).rate, 0.0);
    }
}
