//! Seeded history: `signoff seed` fills a database with realistic requests by driving the real
//! engine (the pure machine, committed through the store as the service commits) under a
//! simulated clock. Each scenario has its policy, its requesters and approvers with their own
//! speed, working hours, holidays and habit of not answering, so escalations, timeouts, expiries,
//! rejections and re-submissions happen as they would. The same seed makes the same history.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};
use signoff_engine::machine::{self, Action, Command, Outcome, Submission};
use signoff_engine::{LineageId, Policy, RequestId, RequestState, RequestStatus, StepStatus};
use signoff_store::{Commit, CommitOutcome, Store};

use crate::catalog::Catalog;

/// The kinds of history `signoff seed` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Quotes under `quote-discount`: a manager, two finance approvers of unequal speed, legal.
    DealDesk,
    /// Deploys under `prod-deploy`: two of three SREs within 30 minutes, around the clock.
    DeployGuard,
    /// Expense claims under `expenses`: the manager, and finance for large ones.
    Expenses,
}

impl Scenario {
    pub const NAMES: &[&str] = &["deal-desk", "deploy-guard", "expenses", "all"];

    /// The scenarios a name stands for (`all` is every one).
    pub fn parse(name: &str) -> Option<Vec<Scenario>> {
        Some(match name {
            "deal-desk" => vec![Scenario::DealDesk],
            "deploy-guard" => vec![Scenario::DeployGuard],
            "expenses" => vec![Scenario::Expenses],
            "all" => vec![Scenario::DealDesk, Scenario::DeployGuard, Scenario::Expenses],
            _ => return None,
        })
    }

    pub fn policy(self) -> &'static str {
        match self {
            Scenario::DealDesk => "quote-discount",
            Scenario::DeployGuard => "prod-deploy",
            Scenario::Expenses => "expenses",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::DealDesk => "deal-desk",
            Scenario::DeployGuard => "deploy-guard",
            Scenario::Expenses => "expenses",
        }
    }
}

/// What to seed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    /// First submissions (re-submissions come on top), split evenly between the scenarios.
    pub requests: usize,
    pub days: u32,
    /// The simulated present: history runs from `days` before it up to it, and what is still
    /// open then stays pending.
    pub until: Timestamp,
    pub seed: u64,
}

/// What a seeding made.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Requests stored, re-submissions included.
    pub requests: usize,
    pub resubmissions: usize,
    pub events: usize,
    /// Requests by status at the end.
    pub statuses: BTreeMap<String, usize>,
}

/// When a person works.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hours {
    /// 08:00 to 18:00 UTC, Monday to Friday.
    Office,
    /// On call: any time, slower at night.
    OnCall,
}

/// How one person answers.
#[derive(Debug, Clone)]
struct Habit {
    /// Median time to answer once asked, in minutes of their time.
    median: f64,
    /// Spread of the log-normal answer time.
    sigma: f64,
    /// Chance they never answer a given assignment.
    silent: f64,
    hours: Hours,
    /// Holidays, [from, to) in Unix milliseconds: answers wait until they are back.
    holidays: Vec<(i64, i64)>,
}

fn habits(scenario: Scenario) -> Vec<(&'static str, f64, f64, f64, Hours)> {
    use Hours::*;
    match scenario {
        Scenario::DealDesk => vec![
            ("mark", 90.0, 1.0, 0.04, Office),
            ("fiona", 40.0, 0.8, 0.03, Office),
            ("frank", 240.0, 0.9, 0.12, Office),
            ("lena", 360.0, 1.0, 0.03, Office),
            ("vp-sales", 60.0, 0.7, 0.05, Office),
        ],
        Scenario::DeployGuard => vec![
            ("sam", 6.0, 0.6, 0.05, OnCall),
            ("sue", 10.0, 0.7, 0.10, OnCall),
            ("sid", 25.0, 0.9, 0.20, OnCall),
            ("oncall-lead", 4.0, 0.5, 0.03, OnCall),
        ],
        Scenario::Expenses => vec![
            ("mark", 180.0, 1.0, 0.03, Office),
            ("fiona", 180.0, 0.8, 0.03, Office),
            ("frank", 600.0, 0.9, 0.10, Office),
            ("vp-sales", 120.0, 0.7, 0.05, Office),
        ],
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A small deterministic generator on top of `fastrand`, with the draws the simulation needs.
struct Dice(fastrand::Rng);

impl Dice {
    fn chance(&mut self, p: f64) -> bool {
        self.0.f64() < p
    }

    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.f64()
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.0.f64().max(f64::MIN_POSITIVE);
        let v = self.0.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.0.usize(..items.len())]
    }
}

/// Office hours as the insights see them: 08:00 to 18:00 UTC, Monday to Friday.
fn is_office(t: i64) -> bool {
    signoff_insights::predict::time_class(t) == 0
}

/// The next moment at or after `t` within office hours.
fn next_office(t: i64, dice: &mut Dice) -> i64 {
    if is_office(t) {
        return t;
    }
    let mut day = t.div_euclid(DAY) * DAY;
    loop {
        let start = day + 8 * HOUR;
        if start >= t && is_office(start) {
            // People pick up the night's work over their first hour or two.
            return start + (dice.between(0.0, 90.0) * MINUTE as f64) as i64;
        }
        day += DAY;
    }
}

impl Habit {
    /// When someone asked at `at` answers, if they do.
    fn answer(&self, at: i64, dice: &mut Dice) -> Option<i64> {
        if dice.chance(self.silent) {
            return None;
        }
        let mut minutes = dice.lognormal(self.median, self.sigma);
        let mut t = at;
        // One answer in four comes off hours, from a phone.
        let phone = self.hours == Hours::Office && dice.chance(0.25);
        match self.hours {
            Hours::Office if phone => {}
            Hours::Office => t = next_office(t, dice),
            Hours::OnCall => {
                if !(7..22).contains(&(signoff_insights::heatmap::hour_of_week(t) % 24)) {
                    minutes *= 2.5;
                }
            }
        }
        t += (minutes * MINUTE as f64) as i64;
        if self.hours == Hours::Office && !phone && !is_office(t) {
            t = next_office(t, dice);
        }
        for (from, to) in &self.holidays {
            if (*from..*to).contains(&t) {
                t = next_office(*to, dice) + (dice.lognormal(self.median, self.sigma) * MINUTE as f64) as i64;
            }
        }
        Some(t)
    }
}

/// A scenario's request: who asks, with what context.
fn request(scenario: Scenario, dice: &mut Dice, n: usize) -> (&'static str, Value) {
    match scenario {
        Scenario::DealDesk => {
            let total = if dice.chance(0.1) { dice.between(200.0, 999.0) } else { dice.lognormal(15_000.0, 0.9) };
            let customers = ["Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Acme", "Soylent", "Cyberdyne", "Tyrell"];
            let context = json!({"quote": {
                "id": format!("Q-2026-{n:05}"),
                "customer": dice.pick(&customers),
                "total": total.round(),
                "discount": (dice.between(0.0, 0.35) * 100.0).round() / 100.0,
                "margin": (dice.between(0.10, 0.45) * 100.0).round() / 100.0,
                "nonstandard_clause": dice.chance(0.12),
            }});
            ("alice", context)
        }
        Scenario::DeployGuard => {
            let services = ["billing", "checkout", "search", "auth", "catalog", "ledger"];
            let service = *dice.pick(&services);
            let context = json!({
                "service": service,
                "image": format!("registry.example.com/{service}:1.{}.{}", n / 100 % 50, n % 100),
                "replicas": 2 + dice.0.i64(0..9),
                "canary_percent": *dice.pick(&[5, 10, 25, 50]),
            });
            (*dice.pick(&["alice", "mark", "dana", "frank"]), context)
        }
        Scenario::Expenses => {
            let categories = ["travel", "meals", "equipment", "training", "other"];
            let amount = (dice.lognormal(300.0, 1.1) * 100.0).round() / 100.0;
            let context = json!({"amount": amount, "category": dice.pick(&categories), "description": format!("claim {n}")});
            ("alice", context)
        }
    }
}

/// Whether `who` approves `step` of a request with `context`.
fn approves(scenario: Scenario, who: &str, step: &str, context: &Value, dice: &mut Dice) -> bool {
    let number = |path: &[&str]| path.iter().fold(context, |v, k| &v[*k]).as_f64().unwrap_or(0.0);
    let reject = match (scenario, step) {
        (Scenario::DealDesk, "manager") if who == "vp-sales" => 0.10,
        (Scenario::DealDesk, "manager") => 0.05 + if number(&["quote", "discount"]) > 0.25 { 0.35 } else { 0.0 },
        (Scenario::DealDesk, "finance") => 0.05 + if number(&["quote", "margin"]) < 0.15 { 0.40 } else { 0.0 },
        (Scenario::DealDesk, _) => 0.08,
        (Scenario::DeployGuard, _) => 0.04,
        (Scenario::Expenses, "finance") => 0.10 + if number(&["amount"]) > 5000.0 { 0.20 } else { 0.0 },
        (Scenario::Expenses, _) => 0.06,
    };
    !dice.chance(reject)
}

/// Whether a closed request is re-submitted, when, and with what context.
fn resubmission(scenario: Scenario, state: &RequestState, dice: &mut Dice) -> Option<(i64, Value)> {
    let mut context = state.context.clone();
    match (scenario, state.status) {
        (Scenario::DealDesk, RequestStatus::Rejected) if dice.chance(0.5) => {
            let q = &mut context["quote"];
            q["discount"] = json!(((q["discount"].as_f64().unwrap_or(0.0) - 0.05).max(0.0) * 100.0).round() / 100.0);
            q["margin"] = json!(((q["margin"].as_f64().unwrap_or(0.2) + 0.03).min(1.0) * 100.0).round() / 100.0);
            Some(((dice.between(1.0, 4.0) * HOUR as f64) as i64, context))
        }
        (Scenario::DeployGuard, RequestStatus::Rejected | RequestStatus::Expired) if dice.chance(0.6) => {
            Some(((dice.between(6.0, 40.0) * MINUTE as f64) as i64, context))
        }
        (Scenario::Expenses, RequestStatus::Rejected) if dice.chance(0.2) => Some((DAY, context)),
        _ => None,
    }
}

/// Something that happens at a moment of the simulation.
#[derive(Debug, Clone)]
enum Happening {
    Submit { scenario: Scenario, requester: String, context: Value, resubmits: Option<RequestId> },
    Answer { scenario: Scenario, id: RequestId, step: String, who: String },
    /// The request's earliest timer, as the scheduler would fire it.
    Timer { scenario: Scenario, id: RequestId },
}

/// A request's changes since the last flush.
struct Pending {
    base: Option<Arc<RequestState>>,
    events: Vec<signoff_engine::Event>,
    state: Arc<RequestState>,
}

/// How many requests' changes go to the store in one commit group.
const FLUSH_AT: usize = 500;

struct Simulation<'a> {
    catalog: &'a Catalog,
    store: &'a dyn Store,
    dice: Dice,
    habits: HashMap<(Scenario, String), Habit>,
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    happenings: HashMap<u64, Happening>,
    next: u64,
    live: HashMap<RequestId, Arc<RequestState>>,
    /// The timer each live request has queued.
    timers: HashMap<RequestId, i64>,
    /// Closed requests kept in memory until the re-submission queued for them links to them.
    awaiting_resubmission: std::collections::HashSet<RequestId>,
    /// Requests of each lineage so far.
    lineages: HashMap<LineageId, u32>,
    pending: HashMap<RequestId, Pending>,
    /// Every request's status as it stands.
    statuses: HashMap<RequestId, RequestStatus>,
    report: Report,
}

impl Simulation<'_> {
    fn at(&mut self, t: i64, h: Happening) {
        self.next += 1;
        self.happenings.insert(self.next, h);
        self.queue.push(Reverse((t, self.next)));
    }

    fn policy(&self, scenario: Scenario) -> Arc<Policy> {
        self.catalog.policies[scenario.policy()].clone()
    }

    /// Records `events` and the new `state` of a request (created when it has no `before`).
    fn record(&mut self, before: Option<Arc<RequestState>>, events: Vec<signoff_engine::Event>, state: RequestState) -> Arc<RequestState> {
        self.report.events += events.len();
        let state = Arc::new(state);
        match self.pending.get_mut(&state.id) {
            Some(p) => {
                p.events.extend(events);
                p.state = state.clone();
            }
            None => {
                self.pending.insert(state.id.clone(), Pending { base: before, events, state: state.clone() });
            }
        }
        self.live.insert(state.id.clone(), state.clone());
        self.statuses.insert(state.id.clone(), state.status);
        state
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let commits: Vec<Commit> = self
            .pending
            .drain()
            .map(|(_, p)| match p.base {
                None => Commit::create(p.events, p.state),
                Some(base) => Commit::after(base, p.events, p.state),
            })
            .collect();
        match self.store.commit_all(commits).await.map_err(|e| e.to_string())? {
            CommitOutcome::Committed => {}
            other => return Err(format!("seeding: the store refused a commit ({other:?}); is a server writing to this database?")),
        }
        // Closed requests nobody will re-submit leave memory once stored.
        self.live.retain(|id, s| s.status == RequestStatus::Pending || self.timers.contains_key(id) || self.awaiting_resubmission.contains(id));
        Ok(())
    }

    /// Queues what follows a change from `before` to `after`: answers of people newly asked,
    /// the next timer, a re-submission.
    fn follow(&mut self, scenario: Scenario, before: Option<&RequestState>, after: &Arc<RequestState>, now: i64) {
        for step in after.steps.iter().filter(|s| s.status == StepStatus::Active) {
            let was = before.and_then(|b| b.step(&step.id)).filter(|s| s.status == StepStatus::Active);
            for who in &step.approvers {
                if was.is_some_and(|w| w.approvers.contains(who)) {
                    continue;
                }
                let Some(habit) = self.habits.get(&(scenario, who.clone())) else { continue };
                if let Some(t) = habit.answer(now, &mut self.dice) {
                    self.at(t, Happening::Answer { scenario, id: after.id.clone(), step: step.id.clone(), who: who.clone() });
                }
            }
        }
        match after.next_timer_at {
            Some(t) if self.timers.get(&after.id) != Some(&t.as_millisecond()) => {
                self.timers.insert(after.id.clone(), t.as_millisecond());
                self.at(t.as_millisecond(), Happening::Timer { scenario, id: after.id.clone() });
            }
            Some(_) => {}
            None => {
                self.timers.remove(&after.id);
            }
        }
        if after.status.is_terminal() && before.is_some_and(|b| !b.status.is_terminal()) {
            let lineage = after.lineage.clone().unwrap_or_else(|| LineageId::started_by(&after.id));
            let rules = self.policy(scenario).resubmission.clone();
            let limit = rules.as_ref().and_then(|r| r.max_per_lineage).unwrap_or(u32::MAX);
            if self.lineages.get(&lineage).copied().unwrap_or(1) < limit
                && let Some((delay, context)) = resubmission(scenario, after, &mut self.dice)
            {
                let cooldown = rules.as_ref().and_then(|r| r.cooldown).map_or(0, |c| c.as_millis() as i64);
                let requester = after.requester.clone();
                self.at(now + delay.max(cooldown + MINUTE), Happening::Submit { scenario, requester, context, resubmits: Some(after.id.clone()) });
                self.awaiting_resubmission.insert(after.id.clone());
            }
        }
    }

    async fn run(&mut self, until: i64) -> Result<(), String> {
        while let Some(Reverse((t, n))) = self.queue.pop() {
            if t > until {
                break;
            }
            let Some(happening) = self.happenings.remove(&n) else { continue };
            let now = Timestamp::from_millisecond(t).map_err(|e| e.to_string())?;
            match happening {
                Happening::Submit { scenario, requester, context, resubmits } => self.submit(scenario, &requester, context, resubmits, now)?,
                Happening::Answer { scenario, id, step, who } => self.answer(scenario, &id, &step, &who, now),
                Happening::Timer { scenario, id } => self.timer(scenario, &id, now),
            }
            if self.pending.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    fn submit(&mut self, scenario: Scenario, requester: &str, context: Value, resubmits: Option<RequestId>, now: Timestamp) -> Result<(), String> {
        let policy = self.policy(scenario);
        let dir = &self.catalog.directory;
        let ms = now.as_millisecond();
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, (ms / 1000) as u64, ((ms % 1000) * 1_000_000) as u32);
        let id = RequestId::from_key(&uuid::Uuid::new_v7(ts).simple().to_string());
        let earlier = resubmits.as_ref().and_then(|e| self.live.get(e).cloned());
        let lineage = earlier.as_ref().map_or_else(|| LineageId::started_by(&id), |e| e.lineage.clone().unwrap_or_else(|| LineageId::started_by(&e.id)));
        let sub = Submission {
            id: id.clone(),
            requester: requester.to_string(),
            title: None,
            subject: context["quote"]["id"].as_str().map(str::to_string).or_else(|| context["service"].as_str().map(str::to_string)),
            context,
            evidence: Vec::new(),
            lineage: Some(lineage.clone()),
            resubmits: earlier.as_ref().map(|e| e.id.clone()),
        };
        let (events, state) = match machine::submit(&policy, dir, sub, now) {
            Ok(made) => made,
            // A context this directory cannot plan (no such manager): not part of the history.
            Err(_) => return Ok(()),
        };
        self.report.requests += 1;
        *self.lineages.entry(lineage).or_insert(0) += 1;
        let state = self.record(None, events, state);
        if let Some(e) = earlier {
            self.report.resubmissions += 1;
            let link = Command { actor: signoff_engine::SYSTEM_ACTOR.into(), action: Action::NoteResubmission { by: id } };
            let d = machine::decide(&policy, dir, &e, &link, now);
            self.awaiting_resubmission.remove(&e.id);
            self.record(Some(e), d.events, d.state);
        }
        self.follow(scenario, None, &state, now.as_millisecond());
        Ok(())
    }

    fn answer(&mut self, scenario: Scenario, id: &RequestId, step: &str, who: &str, now: Timestamp) {
        let Some(mut state) = self.live.get(id).cloned() else { return };
        let active = state.step(step).is_some_and(|s| s.status == StepStatus::Active && state.open_approvers(s).any(|a| a == who));
        if state.status != RequestStatus::Pending || !active {
            return;
        }
        let policy = self.policy(scenario);
        let dir = self.catalog.directory.clone();
        let before = state.clone();
        let approve = approves(scenario, who, step, &state.context, &mut self.dice);
        let mut actions: Vec<Action> = Vec::new();
        if approve {
            let items: Vec<String> = state.step(step).map(|s| s.pending_acks().into_iter().map(str::to_string).collect()).unwrap_or_default();
            actions.extend(items.into_iter().map(|item| Action::Acknowledge { step: step.to_string(), item }));
            actions.push(Action::Approve { step: step.to_string(), comment: None, edits: None });
        } else {
            actions.push(Action::Reject { step: step.to_string(), comment: Some("not as it stands".into()) });
        }
        let mut events = Vec::new();
        let mut next = RequestState::clone(&state);
        for action in actions {
            let d = machine::decide(&policy, &dir, &next, &Command { actor: who.to_string(), action }, now);
            if !matches!(d.outcome, Outcome::Applied | Outcome::Unchanged) {
                return;
            }
            events.extend(d.events);
            next = d.state;
        }
        state = self.record(Some(before.clone()), events, next);
        self.follow(scenario, Some(&before), &state, now.as_millisecond());
    }

    fn timer(&mut self, scenario: Scenario, id: &RequestId, now: Timestamp) {
        let Some(state) = self.live.get(id).cloned() else { return };
        if state.next_timer_at.is_none_or(|t| t > now) || self.timers.get(id) != Some(&now.as_millisecond()) {
            return;
        }
        self.timers.remove(id);
        let policy = self.policy(scenario);
        let d = machine::decide(&policy, &self.catalog.directory, &state, &Command { actor: signoff_engine::SYSTEM_ACTOR.into(), action: Action::Tick }, now);
        if d.events.is_empty() {
            return;
        }
        let after = self.record(Some(state.clone()), d.events, d.state);
        self.follow(scenario, Some(&state), &after, now.as_millisecond());
    }
}

/// Seeds `store` with `plan`'s history under `catalog`'s policies and directory.
pub async fn run(store: &dyn Store, catalog: &Catalog, plan: &Plan) -> Result<Report, String> {
    for s in &plan.scenarios {
        if !catalog.policies.contains_key(s.policy()) {
            return Err(format!("scenario {}: no policy `{}` is loaded (it is one of the bundled examples)", s.name(), s.policy()));
        }
    }
    for p in catalog.policies.values() {
        let record = signoff_store::PolicyRecord { hash: p.hash.clone(), id: p.id.clone(), version: p.version, source: p.source.clone() };
        store.put_policy(&record).await.map_err(|e| e.to_string())?;
    }
    let until = plan.until.as_millisecond();
    let from = until - i64::from(plan.days) * DAY;
    let mut dice = Dice(fastrand::Rng::with_seed(plan.seed));
    // A week off in every eight, at a random place, for office workers: one calendar per
    // person, whatever they approve.
    let mut calendars: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    let mut habits = HashMap::new();
    for &scenario in &plan.scenarios {
        for (who, median, sigma, silent, hours) in self::habits(scenario) {
            let holidays = calendars
                .entry(who)
                .or_insert_with(|| {
                    let mut holidays = Vec::new();
                    let mut start = from;
                    while start < until {
                        let off = (start + (dice.between(0.0, 49.0) as i64) * DAY).div_euclid(DAY) * DAY;
                        holidays.push((off, off + 7 * DAY));
                        start += 56 * DAY;
                    }
                    holidays
                })
                .clone();
            let holidays = if hours == Hours::Office { holidays } else { Vec::new() };
            habits.insert((scenario, who.to_string()), Habit { median, sigma, silent, hours, holidays });
        }
    }
    let mut sim = Simulation {
        catalog,
        store,
        dice,
        habits,
        queue: BinaryHeap::new(),
        happenings: HashMap::new(),
        next: 0,
        live: HashMap::new(),
        timers: HashMap::new(),
        awaiting_resubmission: Default::default(),
        lineages: HashMap::new(),
        pending: HashMap::new(),
        statuses: HashMap::new(),
        report: Report::default(),
    };
    // Arrivals: mostly in office hours, a few in the evening and at weekends (deploys more so).
    let per = plan.requests.div_ceil(plan.scenarios.len().max(1));
    let mut made = 0;
    for &scenario in &plan.scenarios {
        for n in 0..per.min(plan.requests - made) {
            let t = loop {
                let t = from + (sim.dice.0.f64() * (until - from) as f64) as i64;
                let weight = match (is_office(t), scenario) {
                    (true, _) => 1.0,
                    (false, Scenario::DeployGuard) => 0.3,
                    (false, _) => 0.05,
                };
                if sim.dice.chance(weight) {
                    break t;
                }
            };
            let (requester, context) = request(scenario, &mut sim.dice, n);
            sim.at(t, Happening::Submit { scenario, requester: requester.to_string(), context, resubmits: None });
            made += 1;
        }
    }
    sim.run(until).await?;
    let mut report = sim.report;
    for status in sim.statuses.values() {
        *report.statuses.entry(status.as_str().to_string()).or_default() += 1;
    }
    Ok(report)
}
