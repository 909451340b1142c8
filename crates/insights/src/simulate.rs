//! What-if simulation: the stored contexts of past requests replayed through a candidate policy
//! beside the live one, both planned as at each request's submission with today's directory.
//! What routes differently (auto-approval gained or lost, steps added, removed or reordered,
//! other approvers, a context the candidate refuses), the change in each person's and group's
//! load, and the expected change in time to decision from the observed step durations.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use signoff_engine::machine::{self, Submission};
use signoff_engine::state::StepStatus;
use signoff_engine::{Directory, EventKind, Policy, RequestId};

use crate::facts::{Millis, RequestFacts};
use crate::stats::{Rate, Window, median};

/// How a request is routed: what the planner makes of its context.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    auto: bool,
    /// Why the policy would refuse the submission (its error code), if it would.
    refused: Option<String>,
    /// The steps not skipped, in policy order.
    steps: Vec<Planned>,
}

/// A step a route takes: the planned steps it waits for, whom it asks, how many must approve.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    id: String,
    after: Vec<String>,
    approvers: Vec<String>,
    quorum: signoff_engine::policy::Quorum,
}

fn route(policy: &Policy, dir: &Directory, r: &RequestFacts) -> Route {
    let at = jiff::Timestamp::from_millisecond(r.submitted).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let sub = Submission {
        id: RequestId::from(r.id.as_str()),
        requester: r.requester.clone(),
        title: None,
        subject: None,
        context: r.context.clone(),
        evidence: Vec::new(),
        lineage: None,
        resubmits: None,
    };
    let (events, state) = match machine::submit(policy, dir, sub, at) {
        Ok(made) => made,
        Err(e) => return Route { auto: false, refused: Some(e.code().as_str().to_string()), steps: Vec::new() },
    };
    let auto = events.iter().any(|e| matches!(e.kind, EventKind::AutoApproved { .. }));
    if auto {
        return Route { auto, refused: None, steps: Vec::new() };
    }
    let planned: Vec<&str> = state.steps.iter().filter(|s| s.status != StepStatus::Skipped).map(|s| s.id.as_str()).collect();
    let mut vars = signoff_engine::planner::request_vars(dir, &r.context, &r.requester);
    let steps = policy
        .steps
        .iter()
        .filter(|s| planned.contains(&s.id.as_str()))
        .map(|s| {
            let approvers = signoff_engine::planner::eligible(policy.separation, s, &s.approvers, dir, &state, &mut vars, at).map(|(a, _)| a).unwrap_or_default();
            let after = s.after.iter().filter(|a| planned.contains(&a.as_str())).cloned().collect();
            Planned { id: s.id.clone(), after, approvers, quorum: s.quorum }
        })
        .collect();
    Route { auto, refused: None, steps }
}

/// One kind of difference, how often, and some requests that show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Difference {
    pub count: usize,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub request: String,
    pub detail: String,
}

/// A person's or group's share of the work, before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Load {
    /// `user` or `group`.
    pub kind: &'static str,
    pub id: String,
    /// Steps they would be asked to decide, over the requests replayed.
    pub before: usize,
    pub after: usize,
    pub change: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionTime {
    /// The median of the expected time to decision, in seconds, under each policy.
    pub before_median: Option<f64>,
    pub after_median: Option<f64>,
    /// The mean of the per-request change, in seconds (negative: faster).
    pub mean_change: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub policy: String,
    pub candidate_hash: String,
    /// Past requests replayed.
    pub requests: usize,
    /// Of those, routed differently in some way.
    pub differ: usize,
    /// By kind: `auto_approved`, `no_longer_auto_approved`, `refused`, `steps_added`,
    /// `steps_removed`, `steps_reordered`, `approvers_changed`, `quorum_changed`.
    pub differences: BTreeMap<&'static str, Difference>,
    pub auto_approval_before: Rate,
    pub auto_approval_after: Rate,
    /// People and groups whose load changes, largest change first.
    pub load: Vec<Load>,
    pub decision_time: DecisionTime,
}

/// The step durations observed: each step's median time to decide, and the policy's.
struct Durations {
    by_step: HashMap<String, Millis>,
    overall: Millis,
}

impl Durations {
    fn of(facts: &[&RequestFacts]) -> Durations {
        let mut by: HashMap<String, Vec<Millis>> = HashMap::new();
        let mut all = Vec::new();
        for r in facts {
            for s in &r.steps {
                if let (Some(a), Some(d)) = (s.activated, s.decided) {
                    by.entry(s.id.clone()).or_default().push(d - a);
                    all.push(d - a);
                }
            }
        }
        let ms = |v: Vec<Millis>| median(v).map_or(0, |m| (m * 1000.0) as Millis);
        Durations { by_step: by.into_iter().map(|(k, v)| (k, ms(v))).collect(), overall: ms(all) }
    }

    /// The expected time to decision of a route: its longest chain of steps.
    fn of_route(&self, r: &Route) -> Option<Millis> {
        if r.refused.is_some() {
            return None;
        }
        let mut finish: HashMap<&str, Millis> = HashMap::new();
        for p in &r.steps {
            let start = p.after.iter().filter_map(|a| finish.get(a.as_str())).copied().max().unwrap_or(0);
            finish.insert(&p.id, start + self.by_step.get(&p.id).copied().unwrap_or(self.overall));
        }
        Some(finish.values().copied().max().unwrap_or(0))
    }
}

/// Replays the requests of `live`'s policy that `window` covers through `candidate`; keeps up
/// to `examples` requests per kind of difference.
pub fn simulate(live: &Policy, candidate: &Policy, dir: &Directory, facts: &[&RequestFacts], window: &Window, examples: usize) -> Report {
    let replayed: Vec<&RequestFacts> = facts.iter().copied().filter(|r| r.policy == live.id && r.submitted >= window.from && r.submitted < window.to).collect();
    let durations = Durations::of(&replayed);
    let mut differences: BTreeMap<&'static str, Difference> = BTreeMap::new();
    let mut note = |kind: &'static str, request: &str, detail: String| {
        let d = differences.entry(kind).or_default();
        d.count += 1;
        if d.examples.len() < examples {
            d.examples.push(Example { request: request.to_string(), detail });
        }
    };
    let (mut differ, mut auto_before, mut auto_after) = (0, 0, 0);
    let mut load: BTreeMap<(&'static str, String), (usize, usize)> = BTreeMap::new();
    let (mut before_times, mut after_times, mut change) = (Vec::new(), Vec::new(), 0i128);
    let mut changes = 0usize;
    for r in &replayed {
        let (a, b) = (route(live, dir, r), route(candidate, dir, r));
        auto_before += usize::from(a.auto);
        auto_after += usize::from(b.auto);
        for (route, after) in [(&a, false), (&b, true)] {
            for p in &route.steps {
                for who in &p.approvers {
                    let e = load.entry(("user", who.clone())).or_default();
                    if after { e.1 += 1 } else { e.0 += 1 }
                    for g in dir.groups_of(who) {
                        let e = load.entry(("group", g.clone())).or_default();
                        if after { e.1 += 1 } else { e.0 += 1 }
                    }
                }
            }
        }
        if let (Some(x), Some(y)) = (durations.of_route(&a), durations.of_route(&b)) {
            before_times.push(x);
            after_times.push(y);
            change += i128::from(y - x);
            changes += 1;
        }
        if a == b {
            continue;
        }
        differ += 1;
        match (a.auto, b.auto) {
            (false, true) => note("auto_approved", &r.id, "auto-approved at submission".into()),
            (true, false) if b.refused.is_none() => note("no_longer_auto_approved", &r.id, format!("needs {}", ids(&b.steps).join(", "))),
            _ => {}
        }
        if let Some(code) = &b.refused
            && a.refused.is_none()
        {
            note("refused", &r.id, format!("the candidate refuses its context ({code})"));
        }
        if a.auto || b.auto || b.refused.is_some() {
            continue;
        }
        let (sa, sb) = (ids(&a.steps), ids(&b.steps));
        let added: Vec<&str> = sb.iter().filter(|s| !sa.contains(s)).copied().collect();
        let removed: Vec<&str> = sa.iter().filter(|s| !sb.contains(s)).copied().collect();
        if !added.is_empty() {
            note("steps_added", &r.id, format!("adds {}", added.join(", ")));
        }
        if !removed.is_empty() {
            note("steps_removed", &r.id, format!("drops {}", removed.join(", ")));
        }
        let common: Vec<&str> = sa.iter().filter(|s| sb.contains(s)).copied().collect();
        let order = |steps: &[Planned]| -> Vec<(String, Vec<String>)> {
            steps.iter().filter(|s| common.contains(&s.id.as_str())).map(|s| (s.id.clone(), s.after.iter().filter(|x| common.contains(&x.as_str())).cloned().collect())).collect()
        };
        if order(&a.steps) != order(&b.steps) {
            note("steps_reordered", &r.id, format!("{} in another order", common.join(", ")));
        }
        let step = |steps: &'_ [Planned], id: &str| steps.iter().find(|s| s.id == id).cloned();
        let pairs: Vec<(Planned, Planned)> = common.iter().filter_map(|id| step(&a.steps, id).zip(step(&b.steps, id))).collect();
        if let Some((x, y)) = pairs.iter().find(|(x, y)| x.approvers != y.approvers) {
            note("approvers_changed", &r.id, format!("{}: {} instead of {}", x.id, y.approvers.join(", "), x.approvers.join(", ")));
        }
        if let Some((x, y)) = pairs.iter().find(|(x, y)| x.quorum != y.quorum) {
            note("quorum_changed", &r.id, format!("{}: {} to approve instead of {}", x.id, quorum(y.quorum), quorum(x.quorum)));
        }
    }
    let mut load: Vec<Load> = load
        .into_iter()
        .filter(|(_, (b, a))| a != b)
        .map(|((kind, id), (before, after))| Load { kind, id, before, after, change: after as i64 - before as i64 })
        .collect();
    load.sort_by_key(|l| (std::cmp::Reverse(l.change.abs()), l.kind, l.id.clone()));
    let n = replayed.len();
    Report {
        policy: live.id.clone(),
        candidate_hash: candidate.hash.clone(),
        requests: n,
        differ,
        differences,
        auto_approval_before: Rate::new(auto_before, n),
        auto_approval_after: Rate::new(auto_after, n),
        load,
        decision_time: DecisionTime {
            before_median: median(before_times),
            after_median: median(after_times),
            mean_change: if changes == 0 { 0.0 } else { change as f64 / changes as f64 / 1000.0 },
        },
    }
}

fn ids(steps: &[Planned]) -> Vec<&str> {
    steps.iter().map(|s| s.id.as_str()).collect()
}

fn quorum(q: signoff_engine::policy::Quorum) -> String {
    match q {
        signoff_engine::policy::Quorum::Count(n) => n.to_string(),
        signoff_engine::policy::Quorum::All => "all".into(),
    }
}
