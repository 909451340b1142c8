//! Predicted time to decision, learned from this installation's history: for every step of
//! every policy, the Kaplan–Meier estimate of how long activations take to be decided, with the
//! steps still open counted as censored (they took at least as long as they have been open).
//! A prediction for an active step is conditional on how long it has already waited; it uses
//! the step's own approvers' history where there is enough, else the step's, else the policy's,
//! and widens its upper bound when the data is thin.

use std::collections::HashMap;

use serde::Serialize;
use signoff_engine::state::StepStatus;

use crate::facts::{Millis, RequestFacts, StepFacts};

/// Samples a group needs before it is used on its own.
pub const MIN_APPROVERS: usize = 40;
pub const MIN_STEP: usize = 15;
pub const MIN_POLICY: usize = 5;

/// A Kaplan–Meier survival curve: the chance an activation is still undecided after a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Survival {
    /// Times at which decisions happened, ascending, with the survival just after each.
    steps: Vec<(Millis, f64)>,
    pub samples: usize,
}

impl Survival {
    /// From (duration, decided) pairs; undecided ones are censored at their duration.
    pub fn fit(mut samples: Vec<(Millis, bool)>) -> Survival {
        samples.sort_unstable_by_key(|&(t, decided)| (t, !decided));
        let n = samples.len();
        let mut at_risk = n;
        let mut s = 1.0;
        let mut steps = Vec::new();
        let mut i = 0;
        while i < n {
            let t = samples[i].0;
            let (mut decided, mut all) = (0, 0);
            while i < n && samples[i].0 == t {
                decided += usize::from(samples[i].1);
                all += 1;
                i += 1;
            }
            if decided > 0 {
                s *= 1.0 - decided as f64 / at_risk as f64;
                steps.push((t, s));
            }
            at_risk -= all;
        }
        Survival { steps, samples: n }
    }

    /// The chance of being undecided after `t`.
    pub fn at(&self, t: Millis) -> f64 {
        match self.steps.partition_point(|&(x, _)| x <= t) {
            0 => 1.0,
            k => self.steps[k - 1].1,
        }
    }

    /// How much longer than `elapsed` it takes until the chance of a decision, given none by
    /// `elapsed`, reaches `q`; `None` when the history never got that far.
    pub fn remaining(&self, elapsed: Millis, q: f64) -> Option<Millis> {
        let target = self.at(elapsed) * (1.0 - q);
        let from = self.steps.partition_point(|&(x, _)| x <= elapsed);
        self.steps[from..].iter().find(|&&(_, s)| s <= target + 1e-12).map(|&(t, _)| t - elapsed)
    }
}

/// Which history a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// This step with these approvers.
    Approvers,
    /// This step, whoever approved.
    Step,
    /// Every step of the policy (little history of this step).
    Policy,
    /// Recent moments when this step had waited about as long, at the same time of the week,
    /// with its approvers as present or as quiet as now.
    Recent,
}

/// How long a step or request is expected to take from now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Half of such waits ended by then (seconds from now).
    pub p50: Option<f64>,
    /// Nine in ten ended by then; `None` when the history never got that far.
    pub p90: Option<f64>,
    pub basis: Basis,
    /// How many activations the estimate learned from.
    pub samples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepEstimate {
    pub step: String,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// A pending request's prediction: each active step's, and the request's as a whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    #[serde(flatten)]
    pub estimate: Estimate,
    pub steps: Vec<StepEstimate>,
}

/// Survival curves of a history, by policy, step and approvers.
#[derive(Debug, Default)]
pub struct Model {
    by_approvers: HashMap<(String, String, String), Survival>,
    by_step: HashMap<(String, String), Survival>,
    by_policy: HashMap<String, Survival>,
    /// What each step's (policy's, with an empty step) p90 is multiplied by (`calibrate`).
    scale: HashMap<(String, String), f64>,
    /// Recent moments of each step: how long it had been open, what time of the week it was,
    /// whether its approvers had gone quiet, and how much longer it took (`None`: still open).
    recent: HashMap<(String, String), Vec<Moment>>,
    /// When each person acted, ascending.
    activity: HashMap<String, Vec<Millis>>,
    /// What p90s from recent moments are multiplied by, per step and quietness.
    recent_scale: HashMap<(String, String, bool), f64>,
}

/// A step seen open at a past moment.
#[derive(Debug, Clone, Copy)]
struct Moment {
    at: Millis,
    elapsed: Millis,
    class: u8,
    slot: u8,
    quiet: bool,
    /// How much longer it took, or (not decided) how long it has been open since.
    remaining: Millis,
    decided: bool,
}

/// Office hours (08:00–18:00 UTC, Monday to Friday), a weekday's other hours, or the weekend.
pub fn time_class(t: Millis) -> u8 {
    let how = crate::heatmap::hour_of_week(t);
    match (how / 24, how % 24) {
        (5.., _) => 2,
        (_, 8..18) => 0,
        _ => 1,
    }
}

/// Recent moments like these (how long open, time of the week, quiet approvers), before
/// `before`: the p50 and p90 of how much longer they took, and how many there were.
fn neighbours(moments: &[Moment], elapsed: Millis, class: u8, slot: u8, quiet: bool, before: Millis) -> Option<(Option<Millis>, Option<Millis>, usize)> {
    let near = |m: &&Moment| m.at < before && m.elapsed * 2 + 2 * 3_600_000 >= elapsed && m.elapsed <= elapsed * 2 + 2 * 3_600_000;
    // The same three hours of the week; else the same kind of hours; else any.
    let mut chosen: Vec<&Moment> = moments.iter().filter(near).filter(|m| m.slot == slot && m.quiet == quiet).collect();
    if chosen.len() < MIN_MOMENTS {
        chosen = moments.iter().filter(near).filter(|m| m.class == class && m.quiet == quiet).collect();
    }
    if chosen.len() < MIN_MOMENTS {
        chosen = moments.iter().filter(near).filter(|m| m.quiet == quiet).collect();
    }
    if chosen.len() < MIN_MOMENTS {
        return None;
    }
    // Those still open now are censored: they took at least as long as they have been open.
    let n = chosen.len();
    let curve = Survival::fit(chosen.iter().map(|m| (m.remaining, m.decided)).collect());
    Some((curve.remaining(-1, 0.5), curve.remaining(-1, 0.9), n))
}

/// Which three hours of the week a moment is in (0 to 55).
pub fn time_slot(t: Millis) -> u8 {
    (crate::heatmap::hour_of_week(t) / 3) as u8
}

/// How long without acting makes a person count as away.
const QUIET: Millis = 24 * 3_600_000;
/// How far back recent moments reach, and how often.
const RECENT_DAYS: Millis = 60;
const RECENT_EVERY: Millis = 3 * 3_600_000;
/// Recent moments a prediction needs to rest on them.
const MIN_MOMENTS: usize = 25;

const DAY: Millis = 86_400_000;
/// How far back the p90s are calibrated, and how often within that.
const CALIBRATION_DAYS: Millis = 14;
const CALIBRATION_EVERY: Millis = 6 * 3_600_000;
/// Calibration outcomes a step needs before its own scale is used.
const MIN_CALIBRATION: usize = 30;

/// The approvers of a step's activation, as one key.
fn approvers_key(s: &StepFacts) -> String {
    let mut a: Vec<&str> = s.assignments.iter().filter(|a| Some(a.from) == s.activated).map(|a| a.approver.as_str()).collect();
    a.sort_unstable();
    a.join(",")
}

/// What is known at `now` of an activation: how long it has taken, and whether it was decided.
/// A decision by the request closing (expiry, cancellation, another step's rejection) ends the
/// wait as well: that is what the person waiting sees.
fn sample(s: &StepFacts, now: Millis) -> Option<(Millis, bool)> {
    let from = s.activated.filter(|&a| a <= now)?;
    match s.decided {
        Some(d) if d <= now => Some((d - from, true)),
        _ => Some((now - from, false)),
    }
}

impl Model {
    /// Learns from `facts` as they stood at `now` (later decisions unseen, so a backtest can fit
    /// on the past alone).
    pub fn fit<'a>(facts: impl IntoIterator<Item = &'a RequestFacts> + Clone, now: Millis) -> Model {
        let mut by_approvers: HashMap<(String, String, String), Vec<(Millis, bool)>> = HashMap::new();
        let mut by_step: HashMap<(String, String), Vec<(Millis, bool)>> = HashMap::new();
        let mut by_policy: HashMap<String, Vec<(Millis, bool)>> = HashMap::new();
        for r in facts.clone().into_iter().filter(|r| r.submitted <= now) {
            for s in &r.steps {
                let Some(x) = sample(s, now) else { continue };
                by_approvers.entry((r.policy.clone(), s.id.clone(), approvers_key(s))).or_default().push(x);
                by_step.entry((r.policy.clone(), s.id.clone())).or_default().push(x);
                by_policy.entry(r.policy.clone()).or_default().push(x);
            }
        }
        let mut model = Model {
            by_approvers: by_approvers.into_iter().filter(|(_, v)| v.len() >= MIN_APPROVERS).map(|(k, v)| (k, Survival::fit(v))).collect(),
            by_step: by_step.into_iter().filter(|(_, v)| v.len() >= MIN_STEP).map(|(k, v)| (k, Survival::fit(v))).collect(),
            by_policy: by_policy.into_iter().filter(|(_, v)| v.len() >= MIN_POLICY).map(|(k, v)| (k, Survival::fit(v))).collect(),
            scale: HashMap::new(),
            recent: HashMap::new(),
            activity: HashMap::new(),
            recent_scale: HashMap::new(),
        };
        for r in facts.clone() {
            for st in &r.steps {
                for a in &st.assignments {
                    if let Some(t) = a.acted.filter(|&t| t <= now) {
                        model.activity.entry(a.approver.clone()).or_default().push(t);
                    }
                }
            }
        }
        for v in model.activity.values_mut() {
            v.sort_unstable();
        }
        model.remember(facts.clone(), now);
        model.calibrate_recent(now);
        model.calibrate(facts, now);
        model
    }

    fn curve(&self, policy: &str, s: &StepFacts) -> Option<(&Survival, Basis)> {
        let key = (policy.to_string(), s.id.clone());
        if let Some(c) = self.by_approvers.get(&(key.0.clone(), key.1.clone(), approvers_key(s))) {
            return Some((c, Basis::Approvers));
        }
        if let Some(c) = self.by_step.get(&key) {
            return Some((c, Basis::Step));
        }
        self.by_policy.get(policy).map(|c| (c, Basis::Policy))
    }

    /// How much longer an activated step of `policy` is expected to take, having waited
    /// `elapsed` (0 for one not yet active).
    pub fn step(&self, policy: &str, s: &StepFacts, elapsed: Millis) -> Option<Estimate> {
        self.step_at(policy, s, elapsed, None)
    }

    /// As `step`, for an active step at `now`: from recent moments alike when there are
    /// enough, else from the survival curve.
    pub fn step_at(&self, policy: &str, s: &StepFacts, elapsed: Millis, now: Option<Millis>) -> Option<Estimate> {
        if let Some(now) = now
            && let Some((p50 @ Some(_), p90, n)) = self.alike(policy, s, elapsed, now)
        {
            // Calibrated on the recent past; else widened by its uncertainty.
            let scale = self.recent_scale.get(&(policy.to_string(), s.id.clone(), self.quiet(s, now))).copied().unwrap_or(1.0 + 1.0 / (n as f64).sqrt());
            let p90 = p90.map(|t| crate::stats::seconds(t) * scale);
            return Some(Estimate { p50: p50.map(crate::stats::seconds), p90, basis: Basis::Recent, samples: n });
        }
        let (curve, basis) = self.curve(policy, s)?;
        let p50 = curve.remaining(elapsed, 0.5);
        let scale = self.scale.get(&(policy.to_string(), s.id.clone())).or_else(|| self.scale.get(&(policy.to_string(), String::new()))).copied();
        // Uncalibrated (too little recent history): widen the upper bound by its uncertainty.
        let scale = scale.unwrap_or(match basis {
            Basis::Policy => 1.5,
            _ => 1.0 + 1.0 / (curve.samples as f64).sqrt(),
        });
        let p90 = curve.remaining(elapsed, 0.9).map(|t| t as f64 * scale);
        Some(Estimate { p50: p50.map(crate::stats::seconds), p90: p90.map(|t| t / 1000.0), basis, samples: curve.samples })
    }

    /// Whether every approver still waited on at `at` had gone `QUIET` by then.
    fn quiet(&self, s: &StepFacts, at: Millis) -> bool {
        let mut open = s.assignments.iter().filter(|a| a.from <= at && a.acted.or(a.released).is_none_or(|t| t > at)).peekable();
        open.peek().is_some()
            && open.all(|a| {
                let acts = self.activity.get(&a.approver).map_or(&[][..], Vec::as_slice);
                let before = acts.partition_point(|&t| t <= at);
                before == 0 || acts[before - 1] <= at - QUIET
            })
    }

    /// Records every step open at moments over the last `RECENT_DAYS`.
    fn remember<'a>(&mut self, facts: impl IntoIterator<Item = &'a RequestFacts>, now: Millis) {
        let first = (now - RECENT_DAYS * DAY) / RECENT_EVERY * RECENT_EVERY;
        let mut recent: HashMap<(String, String), Vec<Moment>> = HashMap::new();
        for r in facts {
            for s in &r.steps {
                let Some(a) = s.activated.filter(|&a| a <= now) else { continue };
                let end = s.decided.filter(|&d| d <= now);
                if end.is_some_and(|d| d < first) {
                    continue;
                }
                let mut c = first.max((a + RECENT_EVERY - 1) / RECENT_EVERY * RECENT_EVERY);
                while c <= now && end.is_none_or(|d| c < d) {
                    let m = Moment { at: c, elapsed: c - a, class: time_class(c), slot: time_slot(c), quiet: self.quiet(s, c), remaining: end.unwrap_or(now) - c, decided: end.is_some() };
                    recent.entry((r.policy.clone(), s.id.clone())).or_default().push(m);
                    c += RECENT_EVERY;
                }
            }
        }
        self.recent = recent;
    }

    /// The p50 and p90 of how much longer steps like `s` took, from recent moments alike in
    /// time of the week, quiet approvers and how long they had been open.
    fn alike(&self, policy: &str, s: &StepFacts, elapsed: Millis, now: Millis) -> Option<(Option<Millis>, Option<Millis>, usize)> {
        let moments = self.recent.get(&(policy.to_string(), s.id.clone()))?;
        neighbours(moments, elapsed, time_class(now), time_slot(now), self.quiet(s, now), Millis::MAX)
    }

    /// Calibrates the p90s of predictions from recent moments (split conformal, per step and
    /// quietness): each recent moment is predicted from the moments more than a day before
    /// it, and the p90 scaled so that nine in ten outcomes fall within it.
    fn calibrate_recent(&mut self, now: Millis) {
        const MAX_PER_STEP: usize = 300;
        let mut scales = HashMap::new();
        for (key, moments) in &self.recent {
            let mut candidates: Vec<&Moment> = moments.iter().filter(|m| m.at >= now - CALIBRATION_DAYS * DAY && m.at < now - DAY).collect();
            // In a fixed order, so that the sample (and the model) is the same every time.
            candidates.sort_unstable_by_key(|m| (m.at, m.elapsed, m.remaining, m.decided));
            let every = candidates.len().div_ceil(MAX_PER_STEP).max(1);
            let mut ratios: HashMap<bool, Vec<f64>> = HashMap::new();
            for m in candidates.iter().step_by(every) {
                let Some((_, Some(p90), _)) = neighbours(moments, m.elapsed, m.class, m.slot, m.quiet, m.at - DAY) else { continue };
                let ratio = m.remaining as f64 / p90.max(1) as f64;
                match (m.decided, ratio > 1.0) {
                    (true, _) => ratios.entry(m.quiet).or_default().push(ratio),
                    // Open now and already past the bound: a miss; open and within it: unknown.
                    (false, true) => ratios.entry(m.quiet).or_default().push(f64::INFINITY),
                    (false, false) => {}
                }
            }
            for (quiet, mut v) in ratios {
                if v.len() < MIN_CALIBRATION {
                    continue;
                }
                v.sort_unstable_by(f64::total_cmp);
                let rank = ((0.9 * (v.len() + 1) as f64).ceil() as usize).min(v.len());
                if v[rank - 1].is_finite() {
                    scales.insert((key.0.clone(), key.1.clone(), quiet), v[rank - 1].max(0.05));
                }
            }
        }
        self.recent_scale = scales;
    }

    /// Calibrates the p90s on the recent past (split conformal): at moments over the last
    /// `CALIBRATION_DAYS` (up to a day ago), every step open then is predicted from how long it
    /// had waited, and the p90 of each step (or policy) is scaled so that nine in ten of those
    /// outcomes fall within it. A step still open now counts as beyond any bound.
    fn calibrate<'a>(&mut self, facts: impl IntoIterator<Item = &'a RequestFacts>, now: Millis) {
        let mut ratios: HashMap<(String, String), Vec<f64>> = HashMap::new();
        let first = now - CALIBRATION_DAYS * DAY;
        for r in facts.into_iter().filter(|r| r.submitted <= now - DAY) {
            for s in &r.steps {
                let Some(a) = s.activated else { continue };
                let end = s.decided.filter(|&d| d <= now);
                // The calibration moments this activation was open at.
                let mut c = first + ((a - first).max(0) + CALIBRATION_EVERY - 1) / CALIBRATION_EVERY * CALIBRATION_EVERY;
                while c < now - DAY && end.is_none_or(|d| c < d) {
                    if c >= a
                        && let Some((curve, _)) = self.curve(&r.policy, s)
                        && let Some(raw) = curve.remaining(c - a, 0.9)
                    {
                        let ratio = end.map_or(f64::INFINITY, |d| (d - c) as f64 / raw.max(1) as f64);
                        ratios.entry((r.policy.clone(), s.id.clone())).or_default().push(ratio);
                        ratios.entry((r.policy.clone(), String::new())).or_default().push(ratio);
                    }
                    c += CALIBRATION_EVERY;
                }
            }
        }
        for (key, mut v) in ratios {
            if v.len() < MIN_CALIBRATION {
                continue;
            }
            v.sort_unstable_by(f64::total_cmp);
            // The finite-sample conformal rank: ⌈0.9 (n + 1)⌉.
            let rank = ((0.9 * (v.len() + 1) as f64).ceil() as usize).min(v.len());
            let k = v[rank - 1];
            if k.is_finite() {
                self.scale.insert(key, k.max(0.05));
            }
        }
    }

    /// A pending request's prediction at `now`: its active steps from how long each has
    /// waited, then each step still waiting to start, one after another (an upper reading of
    /// steps that may run in parallel).
    pub fn request(&self, r: &RequestFacts, now: Millis) -> Option<Prediction> {
        if r.status.is_terminal() {
            return None;
        }
        let mut steps = Vec::new();
        // Steps still to start, one after another; the active ones, in parallel.
        let (mut p50, mut p90, mut basis, mut samples) = (0.0f64, Some(0.0f64), Basis::Recent, usize::MAX);
        let mut active_p50 = 0.0f64;
        let mut active_p90 = Some(0.0f64);
        for s in &r.steps {
            let e = match s.status {
                StepStatus::Active => self.step_at(&r.policy, s, now - s.activated.unwrap_or(now), Some(now))?,
                StepStatus::Waiting => {
                    let e = self.step(&r.policy, s, 0)?;
                    p50 += e.p50.unwrap_or(0.0);
                    p90 = p90.zip(e.p90).map(|(a, b)| a + b);
                    e
                }
                _ => continue,
            };
            if s.status == StepStatus::Active {
                active_p50 = active_p50.max(e.p50.unwrap_or(0.0));
                active_p90 = active_p90.zip(e.p90).map(|(a, b)| a.max(b));
                steps.push(StepEstimate { step: s.id.clone(), estimate: e.clone() });
            }
            basis = coarser(basis, e.basis);
            samples = samples.min(e.samples);
        }
        if samples == usize::MAX {
            return None;
        }
        Some(Prediction { estimate: Estimate { p50: Some(p50 + active_p50), p90: p90.zip(active_p90).map(|(a, b)| a + b), basis, samples }, steps })
    }
}

fn coarser(a: Basis, b: Basis) -> Basis {
    let rank = |x: Basis| match x {
        Basis::Recent => 0,
        Basis::Approvers => 1,
        Basis::Step => 2,
        Basis::Policy => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// A backtest of step predictions: fit on the history up to each cut, predict every step open
/// at the cut, score against what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    pub cuts: usize,
    /// Predictions scored (steps open at a cut that were decided later).
    pub scored: usize,
    /// Open at a cut, still open at the end and not yet past the predicted p90: not scored.
    /// (Those already past it count as misses of the p90.)
    pub unresolved: usize,
    /// Share of outcomes at or before the predicted p90.
    pub p90_coverage: f64,
    /// Median absolute error of the p50, in seconds.
    pub median_abs_error: f64,
    /// The same for the baseline: each policy's median step duration, whatever the step and
    /// however long it has already waited.
    pub baseline_median_abs_error: f64,
    /// The same by policy and step: (scored, p90 coverage, median absolute error, baseline's).
    pub by_step: std::collections::BTreeMap<String, (usize, f64, f64, f64)>,
}

/// Scores predictions made at `cuts` moments against `facts` (the whole history, as of `end`).
pub fn backtest(facts: &[&RequestFacts], cuts: &[Millis], end: Millis) -> Backtest {
    let (mut covered, mut scored, mut unresolved, mut scored_coverage) = (0usize, 0usize, 0usize, 0usize);
    let (mut errors, mut baseline_errors) = (Vec::new(), Vec::new());
    let mut per: std::collections::BTreeMap<String, (usize, usize, Vec<Millis>, Vec<Millis>)> = Default::default();
    for &cut in cuts {
        let model = Model::fit(facts.iter().copied(), cut);
        // The baseline: each policy's median of the durations decided by the cut.
        let mut decided: HashMap<&str, Vec<Millis>> = HashMap::new();
        for r in facts.iter().filter(|r| r.submitted <= cut) {
            for s in &r.steps {
                if let (Some(a), Some(d)) = (s.activated, s.decided)
                    && d <= cut
                {
                    decided.entry(&r.policy).or_default().push(d - a);
                }
            }
        }
        let baseline: HashMap<&str, f64> = decided.into_iter().filter_map(|(p, v)| crate::stats::median(v).map(|m| (p, m))).collect();
        for r in facts.iter().filter(|r| r.submitted <= cut) {
            for s in &r.steps {
                let Some(a) = s.activated.filter(|&a| a <= cut) else { continue };
                if s.decided.is_some_and(|d| d <= cut) {
                    continue;
                }
                let (Some(e), Some(b)) = (model.step_at(&r.policy, s, cut - a, Some(cut)), baseline.get(r.policy.as_str())) else { continue };
                let Some(d) = s.decided.filter(|&d| d <= end) else {
                    // Still open at the end: a miss if it has already outlasted the p90, else
                    // not known either way.
                    let open = (end - cut) as f64 / 1000.0;
                    if e.p90.is_some_and(|p90| open > p90) {
                        scored_coverage += 1;
                        per.entry(format!("{}/{}", r.policy, s.id)).or_default().0 += 1;
                    } else {
                        unresolved += 1;
                    }
                    continue;
                };
                let actual = (d - cut) as f64 / 1000.0;
                scored += 1;
                scored_coverage += 1;
                covered += usize::from(e.p90.is_none_or(|p90| actual <= p90));
                errors.push(((e.p50.unwrap_or(actual) - actual).abs() * 1000.0) as Millis);
                baseline_errors.push(((b - actual).abs() * 1000.0) as Millis);
                let p = per.entry(format!("{}/{}", r.policy, s.id)).or_default();
                p.0 += 1;
                p.1 += usize::from(e.p90.is_none_or(|p90| actual <= p90));
                p.2.push(*errors.last().unwrap_or(&0));
                p.3.push(*baseline_errors.last().unwrap_or(&0));
            }
        }
    }
    Backtest {
        cuts: cuts.len(),
        scored,
        unresolved,
        p90_coverage: if scored_coverage == 0 { 0.0 } else { covered as f64 / scored_coverage as f64 },
        median_abs_error: crate::stats::median(errors).unwrap_or(0.0),
        baseline_median_abs_error: crate::stats::median(baseline_errors).unwrap_or(0.0),
        by_step: per
            .into_iter()
            .map(|(k, (n, c, e, b))| (k, (n, c as f64 / n.max(1) as f64, crate::stats::median(e).unwrap_or(0.0), crate::stats::median(b).unwrap_or(0.0))))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaplan_meier_by_hand() {
        // Decided at 1, 2, 4; censored at 3 and 5. At risk 5, 4, (3 → censored), 2, 1:
        // S(1) = 4/5, S(2) = 4/5 · 3/4 = 3/5, S(4) = 3/5 · 1/2 = 3/10.
        let s = Survival::fit(vec![(1, true), (2, true), (3, false), (4, true), (5, false)]);
        assert!((s.at(0) - 1.0).abs() < 1e-9);
        assert!((s.at(1) - 0.8).abs() < 1e-9);
        assert!((s.at(3) - 0.6).abs() < 1e-9);
        assert!((s.at(4) - 0.3).abs() < 1e-9);
        // Median: the first time S ≤ 0.5 is 4. Given 2 waited (S = 0.6), half of the rest
        // (S ≤ 0.3) is reached at 4: 2 more.
        assert_eq!(s.remaining(0, 0.5), Some(4));
        assert_eq!(s.remaining(2, 0.5), Some(2));
        // Nine in ten is never reached: the history ends at 0.3.
        assert_eq!(s.remaining(0, 0.9), None);
    }
}
