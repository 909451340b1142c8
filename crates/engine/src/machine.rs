//! The state machine: a submission or a command, the current state and the time in; events
//! and the resulting state out. Refusals are decisions too: they are recorded as events so the
//! history shows every attempt, and they never change a request's status or steps.

use jiff::Timestamp;
use serde_json::Value;

use crate::canonical::{self, GENESIS_HASH};
use crate::code::Code;
use crate::id::{LineageId, RequestId};
use crate::condition::Vars;
use crate::directory::Directory;
use crate::event::{Event, EventKind, PlannedStep, PolicyRef};
use crate::planner::{self, ResolveError};
use crate::policy::{EditRules, Policy, TimeoutAction};
use crate::state::{RequestState, RequestStatus, StepStatus, TimerKind};
use crate::SYSTEM_ACTOR;

/// What a requester submits.
#[derive(Debug, Clone)]
pub struct Submission {
    pub id: RequestId,
    pub requester: String,
    pub title: Option<String>,
    pub subject: Option<String>,
    pub context: Value,
    pub evidence: Vec<Value>,
    pub lineage: Option<LineageId>,
    pub resubmits: Option<RequestId>,
}

/// Why a submission was refused; nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the context does not satisfy the policy's context_schema: {}", .0.join("; "))]
    InvalidContext(Vec<String>),
    #[error("{}", .0.detail())]
    Plan(ResolveError),
}

impl SubmitError {
    /// The stable error code of the API.
    pub fn code(&self) -> Code {
        match self {
            SubmitError::InvalidContext(_) => Code::InvalidContext,
            SubmitError::Plan(e) => e.code(),
        }
    }
}

/// A person (or the system) acting on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub actor: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Approve { step: String, comment: Option<String>, edits: Option<Value> },
    Reject { step: String, comment: Option<String> },
    Acknowledge { step: String, item: String },
    Delegate { step: String, to: String },
    Comment { step: Option<String>, comment: String },
    Cancel { comment: Option<String> },
    /// The scheduler: fire every timer due at `now` (escalations, reminders, timeouts, expiry).
    Tick,
    /// On a closed request: it was re-submitted as request `by`.
    NoteResubmission { by: RequestId },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Approve { .. } => "approve",
            Action::Reject { .. } => "reject",
            Action::Acknowledge { .. } => "acknowledge",
            Action::Delegate { .. } => "delegate",
            Action::Comment { .. } => "comment",
            Action::Cancel { .. } => "cancel",
            Action::Tick => "tick",
            Action::NoteResubmission { .. } => "note_resubmission",
        }
    }

    pub fn step(&self) -> Option<&str> {
        match self {
            Action::Approve { step, .. }
            | Action::Reject { step, .. }
            | Action::Acknowledge { step, .. }
            | Action::Delegate { step, .. } => Some(step),
            Action::Comment { step, .. } => step.as_deref(),
            Action::Cancel { .. } | Action::Tick | Action::NoteResubmission { .. } => None,
        }
    }
}

/// A refusal with its stable code (`step_not_active`, `not_an_approver`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command changed the request.
    Applied,
    /// The command repeated something already done (a second approval by the same person).
    Unchanged,
    /// The command was refused; the refusal is recorded as an event.
    Refused(Refusal),
    /// The command was malformed for this request; nothing is recorded.
    Invalid(Refusal),
}

/// The result of deciding a command.
#[derive(Debug, Clone)]
pub struct Decision {
    pub events: Vec<Event>,
    pub state: RequestState,
    pub outcome: Outcome,
}

/// Plans a submission: validates the context, evaluates `auto_approve` and every `when`, and
/// activates the steps that can start at once.
pub fn submit(policy: &Policy, dir: &Directory, sub: Submission, now: Timestamp) -> Result<(Vec<Event>, RequestState), SubmitError> {
    if !sub.context.is_object() {
        return Err(SubmitError::InvalidContext(vec!["the context must be a JSON object".into()]));
    }
    if let Some(schema) = &policy.context_schema {
        schema.check(&sub.context).map_err(SubmitError::InvalidContext)?;
    }
    let vars = planner::request_vars(dir, &sub.context, &sub.requester);
    let planning = |what: String, e: crate::condition::EvalError| {
        SubmitError::Plan(ResolveError::Planning(format!("{what} {e}")))
    };
    let mut auto = !policy.auto_approve.is_empty();
    for cond in &policy.auto_approve {
        auto &= cond.eval_bool(&vars).map_err(|e| planning("auto_approve".into(), e))?;
    }
    let mut skipped = Vec::new();
    if !auto {
        for step in &policy.steps {
            if let Some(when) = &step.when
                && !when.eval_bool(&vars).map_err(|e| planning(format!("step `{}`: when", step.id), e))? {
                    skipped.push((step.id.clone(), format!("`{}` is false", when.source())));
                }
        }
    }
    let submitted = EventKind::Submitted {
        id: sub.id,
        policy: PolicyRef { id: policy.id.clone(), version: policy.version, hash: policy.hash.clone() },
        requester: sub.requester.clone(),
        title: sub.title,
        subject: sub.subject,
        context: sub.context,
        evidence: sub.evidence,
        lineage: sub.lineage,
        resubmits: sub.resubmits,
        expires_at: policy.expires_in.and_then(|d| now.checked_add(d).ok()),
        separation: policy.separation,
        steps: if auto {
            Vec::new()
        } else {
            policy
                .steps
                .iter()
                .map(|s| PlannedStep {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    reason: s.reason.clone(),
                    after: s.after.clone(),
                    quorum: s.quorum,
                    rejections: s.rejections,
                    require_acks: s.require_acks.clone(),
                    on_timeout: s.on_timeout,
                    on_last_timeout: s.on_last_timeout,
                })
                .collect()
        },
    };
    let first = Event::sealed(1, now, &sub.requester, None, submitted, GENESIS_HASH);
    let state = RequestState::start(&first).expect("a submitted event starts a request");
    let mut tx = Tx { policy, dir, now, state, events: vec![first], vars: Some(vars) };
    if auto {
        let conditions = policy.auto_approve.iter().map(|c| c.source().to_string()).collect();
        tx.emit(SYSTEM_ACTOR, None, EventKind::AutoApproved { conditions });
        tx.emit(SYSTEM_ACTOR, None, EventKind::Completed {
            status: RequestStatus::Approved,
            reason: Some("auto-approved".into()),
        });
    } else {
        for (step, because) in skipped {
            tx.emit(SYSTEM_ACTOR, Some(&step), EventKind::StepSkipped { because });
        }
        tx.settle(true).map_err(SubmitError::Plan)?;
    }
    Ok((tx.events, tx.state))
}

/// At most this many refusals (`refused`, `edits_refused`) of one caller are recorded in a
/// request's history; the last one says so (`limit_reached`). Later refusals of that caller are
/// answered the same way but not recorded, so nobody can flood a history with attempts.
pub const MAX_RECORDED_REFUSALS: u32 = 10;

/// Decides a command against the current state.
pub fn decide(policy: &Policy, dir: &Directory, state: &RequestState, cmd: &Command, now: Timestamp) -> Decision {
    let mut tx = Tx { policy, dir, now, state: state.clone(), events: Vec::new(), vars: None };
    let outcome = tx.run(cmd);
    if let Outcome::Refused(r) = &outcome
        && tx.events.is_empty()
        && let Some(limit_reached) = tx.refusal_recordable(&cmd.actor)
    {
        let kind = EventKind::Refused { action: cmd.action.name().into(), code: r.code.as_str().into(), detail: r.detail.clone(), limit_reached };
        tx.emit(&cmd.actor, cmd.action.step(), kind);
    }
    Decision { events: tx.events, state: tx.state, outcome }
}

fn refuse(code: Code, detail: impl Into<String>) -> Outcome {
    Outcome::Refused(Refusal { code, detail: detail.into() })
}

fn invalid(code: Code, detail: impl Into<String>) -> Outcome {
    Outcome::Invalid(Refusal { code, detail: detail.into() })
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|c| c.trim().is_empty())
}

/// One decision in progress: events emitted so far and the state they fold to.
struct Tx<'a> {
    policy: &'a Policy,
    dir: &'a Directory,
    now: Timestamp,
    state: RequestState,
    events: Vec<Event>,
    vars: Option<Vars>,
}

impl Tx<'_> {
    fn emit(&mut self, actor: &str, step: Option<&str>, kind: EventKind) {
        let event = Event::sealed(self.state.version + 1, self.now, actor, step, kind, &self.state.head_hash);
        self.state.apply(&event).expect("the machine only emits events for steps of the request");
        self.events.push(event);
    }

    fn run(&mut self, cmd: &Command) -> Outcome {
        let actor = cmd.actor.as_str();
        // A repeated click is harmless, even after the step or the request was decided.
        let repeated = match &cmd.action {
            Action::Approve { step, .. } => self.state.step(step).is_some_and(|s| s.has_approved(actor)),
            Action::Reject { step, .. } => self.state.step(step).is_some_and(|s| s.has_rejected(actor)),
            _ => false,
        };
        if repeated {
            return Outcome::Unchanged;
        }
        match &cmd.action {
            // Timers of a closed request are void: ticking it changes nothing.
            Action::Tick => return self.fire_due_timers(),
            Action::NoteResubmission { by } => {
                if !self.state.status.is_terminal() {
                    return invalid(Code::NotTerminal, "only a closed request can be re-submitted");
                }
                if !self.state.resubmitted_by.contains(by) {
                    self.emit(SYSTEM_ACTOR, None, EventKind::Resubmitted { by: by.clone() });
                }
                return Outcome::Applied;
            }
            _ => {}
        }
        if self.state.status.is_terminal() {
            return refuse(Code::RequestClosed, format!("the request is {}", self.state.status.as_str()));
        }
        match &cmd.action {
            Action::Cancel { comment } => {
                if actor != self.state.requester && !self.dir.is_admin(actor) {
                    return refuse(Code::Forbidden, "only the requester or an admin may cancel a request");
                }
                self.emit(actor, None, EventKind::Cancelled { comment: comment.clone() });
                Outcome::Applied
            }
            Action::Comment { step, comment } => {
                if comment.trim().is_empty() {
                    return invalid(Code::CommentRequired, "a comment must not be empty");
                }
                if !self.dir.is_admin(actor) && !self.state.participants().contains(&actor) {
                    return refuse(Code::Forbidden, "only the requester, people on the plan and admins may comment");
                }
                if let Some(id) = step
                    && self.state.step(id).is_none() {
                        return invalid(Code::NotFound, self.no_step(id));
                    }
                self.emit(actor, step.as_deref(), EventKind::Commented { comment: comment.clone() });
                Outcome::Applied
            }
            Action::Approve { step, comment, edits } => self.approve(actor, step, comment, edits),
            Action::Reject { step, comment } => self.reject(actor, step, comment),
            Action::Acknowledge { step, item } => self.acknowledge(actor, step, item),
            Action::Delegate { step, to } => self.delegate(actor, step, to),
            Action::Tick | Action::NoteResubmission { .. } => Outcome::Unchanged,
        }
    }

    /// Fires, in order, every timer due at `now`. Each fires once: firing moves the state past
    /// it (the level is reached, the reminder round counted, the step or request decided).
    fn fire_due_timers(&mut self) -> Outcome {
        let before = self.events.len();
        // Bounded: each firing retires its timer, and a request has few.
        for _ in 0..10_000 {
            let Some(timer) = self.state.timers().into_iter().next().filter(|t| t.at <= self.now) else { break };
            let step_id = timer.step.clone().unwrap_or_default();
            match timer.kind {
                TimerKind::Expiry => {
                    self.emit(SYSTEM_ACTOR, None, EventKind::Expired { reason: "the request's deadline (expires_in) passed".into() });
                }
                TimerKind::Escalation => self.escalate(&step_id, timer.level.unwrap_or(1), timer.at),
                TimerKind::Reminder => self.remind(&step_id, timer.at),
                TimerKind::Timeout => self.time_out(&step_id, timer.at),
            }
        }
        if self.events.len() > before { Outcome::Applied } else { Outcome::Unchanged }
    }

    fn escalate(&mut self, step_id: &str, level: u32, due: Timestamp) {
        let spec = self
            .policy
            .step(step_id)
            .and_then(|s| s.escalation.get(level as usize - 1).map(|e| (s, e.to.clone())));
        let mut added = Vec::new();
        let mut substitutions = Vec::new();
        let mut problem = None;
        match spec {
            None => problem = Some(format!("the policy has no escalation level {level} for step `{step_id}`")),
            Some((step, to)) => {
                let vars = self.vars.get_or_insert_with(|| {
                    planner::request_vars(self.dir, &self.state.effective_context, &self.state.requester)
                });
                match planner::eligible(self.policy.separation, step, &to, self.dir, &self.state, vars, self.now) {
                    Ok((people, subs)) => {
                        let current = &self.state.step(step_id).map(|s| s.approvers.clone()).unwrap_or_default();
                        added = people.into_iter().filter(|p| !current.contains(p)).collect();
                        substitutions = subs;
                    }
                    Err(e) => problem = Some(format!("{}: {}", e.code(), e.detail())),
                }
            }
        }
        self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::Escalated { level, added, due, substitutions, problem });
    }

    fn remind(&mut self, step_id: &str, due: Timestamp) {
        let Some(step) = self.state.step(step_id) else { return };
        let (Some(every), Some(start)) = (step.remind_every, step.activated_at) else { return };
        // After downtime, one reminder covers every missed round; the next is the next round.
        let elapsed = self.now.duration_since(start).as_secs();
        let round = (elapsed / every.as_secs().max(1)).clamp(step.reminders_sent as i64 + 1, u32::MAX as i64) as u32;
        let to: Vec<String> = self.state.open_approvers(step).cloned().collect();
        self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::Reminded { to, round, due });
    }

    fn time_out(&mut self, step_id: &str, due: Timestamp) {
        let Some(step) = self.state.step(step_id) else { return };
        let mut action = step.on_timeout;
        if action == TimeoutAction::Escalate {
            let spec = self.policy.step(step_id);
            let next = step.escalation_level + 1;
            if spec.is_some_and(|s| s.escalation.len() >= next as usize) {
                // The next level fires now and the step gets another `sla` to be decided in.
                let next_due = spec.and_then(|s| s.sla).and_then(|sla| self.now.checked_add(sla).ok());
                self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepTimedOut { action, due, next_due });
                self.escalate(step_id, next, due);
                return;
            }
            action = step.on_last_timeout.unwrap_or_default();
        }
        self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepTimedOut { action, due, next_due: None });
        let text = format!("step `{step_id}` timed out");
        let reason = Some(text.clone());
        match action {
            TimeoutAction::Approve => {
                self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepDecided { outcome: StepStatus::Approved, reason });
                let _ = self.settle(false);
            }
            TimeoutAction::Reject => {
                self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepDecided { outcome: StepStatus::Rejected, reason: reason.clone() });
                self.emit(SYSTEM_ACTOR, None, EventKind::Completed { status: RequestStatus::Rejected, reason });
            }
            // `Escalate` never reaches here: `on_last_timeout` cannot be `escalate`, and a step
            // whose levels are spent falls back to expiring.
            TimeoutAction::Expire | TimeoutAction::Escalate => {
                self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepDecided { outcome: StepStatus::Expired, reason: reason.clone() });
                self.emit(SYSTEM_ACTOR, None, EventKind::Expired { reason: text });
            }
        }
    }

    /// "The request has no step `x`", with the steps it has and the nearest one.
    fn no_step(&self, id: &str) -> String {
        crate::suggest::unknown("the request has no step", id, self.state.steps.iter().map(|s| s.id.as_str()))
    }

    /// Whether another refusal of `actor` is recorded (`Some`), and if so whether it is the
    /// last one that will be (`Some(true)`).
    fn refusal_recordable(&self, actor: &str) -> Option<bool> {
        let recorded = self.state.refusals.get(actor).copied().unwrap_or(0);
        (recorded < MAX_RECORDED_REFUSALS).then_some(recorded + 1 == MAX_RECORDED_REFUSALS)
    }

    /// The checks every step action shares, in this order: the step exists (else the command
    /// is malformed), it is active (`step_not_active`), the actor is one of its approvers
    /// (`not_an_approver`), and separation of duties lets them act (`separation_of_duties`,
    /// which only ever concerns someone who would otherwise be eligible).
    fn gate(&mut self, actor: &str, step_id: &str) -> Result<(), Outcome> {
        let step = self
            .state
            .step(step_id)
            .ok_or_else(|| invalid(Code::NotFound, self.no_step(step_id)))?;
        if step.status != StepStatus::Active {
            return Err(refuse(
                Code::StepNotActive,
                format!("step `{step_id}` is {}", serde_json::to_value(step.status).unwrap_or_default().as_str().unwrap_or("")),
            ));
        }
        let sep = self.state.separation;
        let separated = if actor == self.state.requester && !sep.requester_can_approve {
            Some(refuse(Code::SeparationOfDuties, "the requester cannot act on their own request's steps"))
        } else if sep.one_step_per_approver && self.state.decided_other_step(actor, step_id) {
            Some(refuse(Code::SeparationOfDuties, format!("{actor} already decided another step of this request")))
        } else {
            None
        };
        let named = step.approvers.iter().any(|a| a == actor);
        match separated {
            Some(refusal) if named || self.eligible_but_for_separation(actor, step_id) => Err(refusal),
            _ if !named => Err(refuse(Code::NotAnApprover, format!("{actor} is not an approver of step `{step_id}`"))),
            _ => Ok(()),
        }
    }

    /// Whether `actor` would be an approver of the step now (its approvers and the escalation
    /// levels fired so far, with out-of-office delegation and `eligible_if`) if separation of
    /// duties did not apply.
    fn eligible_but_for_separation(&mut self, actor: &str, step_id: &str) -> bool {
        let (Some(spec), Some(step)) = (self.policy.step(step_id), self.state.step(step_id)) else { return false };
        let fired = step.escalation_level as usize;
        let unrestricted = crate::policy::Separation { requester_can_approve: true, one_step_per_approver: false };
        let vars = self
            .vars
            .get_or_insert_with(|| planner::request_vars(self.dir, &self.state.effective_context, &self.state.requester));
        std::iter::once(&spec.approvers).chain(spec.escalation.iter().take(fired).map(|e| &e.to)).any(|who| {
            planner::eligible(unrestricted, spec, who, self.dir, &self.state, vars, self.now)
                .is_ok_and(|(people, _)| people.iter().any(|p| p == actor))
        })
    }

    fn approve(&mut self, actor: &str, step_id: &str, comment: &Option<String>, edits: &Option<Value>) -> Outcome {
        if let Err(o) = self.gate(actor, step_id) {
            return o;
        }
        let step = self.state.step(step_id).expect("the gate checked the step");
        if step.has_rejected(actor) {
            return refuse(Code::AlreadyVoted, format!("{actor} already rejected step `{step_id}`"));
        }
        let pending = step.pending_acks();
        if !pending.is_empty() {
            return refuse(Code::AcksPending, format!("acknowledge first: {}", pending.join(", ")));
        }
        let edits = edits.clone().filter(|e| e.as_object().is_none_or(|m| !m.is_empty()));
        if let Some(edits) = &edits {
            let rules = self.policy.step(step_id).and_then(|s| s.edits.as_ref());
            if let Err(r) = check_edits(rules, edits, &self.state.effective_context) {
                if let Some(limit_reached) = self.refusal_recordable(actor) {
                    self.emit(actor, Some(step_id), EventKind::EditsRefused {
                        code: r.code.as_str().into(),
                        detail: r.detail.clone(),
                        edits: edits.clone(),
                        limit_reached,
                    });
                }
                return Outcome::Refused(r);
            }
            // Later activations see the edited context.
            self.vars = None;
        }
        self.emit(actor, Some(step_id), EventKind::Approved { comment: comment.clone(), edits });
        self.tally(step_id);
        Outcome::Applied
    }

    fn reject(&mut self, actor: &str, step_id: &str, comment: &Option<String>) -> Outcome {
        if blank(comment) {
            return invalid(Code::CommentRequired, "a rejection needs a comment");
        }
        if let Err(o) = self.gate(actor, step_id) {
            return o;
        }
        let step = self.state.step(step_id).expect("the gate checked the step");
        if step.has_approved(actor) {
            return refuse(Code::AlreadyVoted, format!("{actor} already approved step `{step_id}`"));
        }
        let comment = comment.clone().unwrap_or_default();
        self.emit(actor, Some(step_id), EventKind::Rejected { comment });
        self.tally(step_id);
        Outcome::Applied
    }

    fn acknowledge(&mut self, actor: &str, step_id: &str, item: &str) -> Outcome {
        if let Err(o) = self.gate(actor, step_id) {
            return o;
        }
        let step = self.state.step(step_id).expect("the gate checked the step");
        if !step.require_acks.iter().any(|i| i == item) {
            return invalid(
                Code::NotFound,
                format!("step `{step_id}` has no acknowledgement `{item}` (it has: {})", step.require_acks.join(", ")),
            );
        }
        if step.acks.iter().any(|a| a.item == item && a.by == actor) {
            return Outcome::Unchanged;
        }
        self.emit(actor, Some(step_id), EventKind::Acknowledged { item: item.to_string() });
        Outcome::Applied
    }

    fn delegate(&mut self, actor: &str, step_id: &str, to: &str) -> Outcome {
        if let Err(o) = self.gate(actor, step_id) {
            return o;
        }
        let step = self.state.step(step_id).expect("the gate checked the step");
        if self.dir.user(to).is_none() {
            return invalid(Code::UnknownUser, format!("no user `{to}` in the directory"));
        }
        let to = match self.dir.final_delegate(to, self.now) {
            Ok(t) => t,
            Err(c) => return invalid(Code::DelegationCycle, c.to_string()),
        };
        if to == actor {
            return invalid(Code::AlreadyAnApprover, format!("{actor} cannot delegate to themselves"));
        }
        if step.has_approved(actor) || step.has_rejected(actor) {
            return refuse(Code::AlreadyVoted, format!("{actor} already decided step `{step_id}`"));
        }
        let sep = self.state.separation;
        if (to == self.state.requester && !sep.requester_can_approve)
            || (sep.one_step_per_approver && self.state.decided_other_step(&to, step_id))
        {
            return refuse(Code::SeparationOfDuties, format!("{to} may not approve this step (separation of duties)"));
        }
        if step.approvers.contains(&to) {
            return refuse(Code::AlreadyAnApprover, format!("{to} is already an approver of step `{step_id}`"));
        }
        self.emit(actor, Some(step_id), EventKind::Delegated { from: actor.to_string(), to });
        Outcome::Applied
    }

    /// After a vote: decides the voted step if it reached a threshold, then every other active
    /// step whose quorum became unreachable (a vote can use up a shared approver's slot on
    /// another step), then moves the request on.
    fn tally(&mut self, step_id: &str) {
        let mut order = vec![step_id.to_string()];
        order.extend(self.state.current_tasks.iter().filter(|s| *s != step_id).cloned());
        for id in order {
            if self.state.status.is_terminal() {
                return;
            }
            let Some(step) = self.state.step(&id).filter(|s| s.status == StepStatus::Active) else { continue };
            let approvals = step.approvals.len() as u32;
            let rejections = step.rejections.len() as u32;
            let open = self.state.open_approvers(step).count() as u32;
            let quorum = step.quorum_needed();
            let verdict = if approvals >= quorum {
                Some((StepStatus::Approved, None))
            } else if rejections >= step.rejections_needed {
                Some((StepStatus::Rejected, None))
            } else if approvals + open < quorum {
                Some((StepStatus::Rejected, Some("quorum can no longer be reached".to_string())))
            } else {
                None
            };
            match verdict {
                Some((StepStatus::Approved, _)) => {
                    self.emit(SYSTEM_ACTOR, Some(&id), EventKind::StepDecided { outcome: StepStatus::Approved, reason: None });
                }
                Some((outcome, reason)) => {
                    self.emit(SYSTEM_ACTOR, Some(&id), EventKind::StepDecided { outcome, reason: reason.clone() });
                    self.emit(SYSTEM_ACTOR, None, EventKind::Completed {
                        status: RequestStatus::Rejected,
                        reason: Some(reason.unwrap_or_else(|| format!("step `{id}` was rejected"))),
                    });
                }
                None => {}
            }
        }
        // Activation failures after submission reject the request; they are recorded.
        let _ = self.settle(false);
    }

    /// Activates every step that has become ready, repeatedly, and completes the request when
    /// nothing is left open. At submission an activation failure is returned (and nothing is
    /// stored); later it rejects the request.
    fn settle(&mut self, at_submission: bool) -> Result<(), ResolveError> {
        while !self.state.status.is_terminal() {
            let ready = planner::ready_steps(&self.state);
            if ready.is_empty() {
                break;
            }
            for id in ready {
                self.activate(&id, at_submission)?;
                if self.state.status.is_terminal() {
                    return Ok(());
                }
            }
        }
        let all_done = self
            .state
            .steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Approved | StepStatus::Skipped));
        if !self.state.status.is_terminal() && all_done {
            let reason = self.state.steps.is_empty().then(|| "no step applies".to_string()).or_else(|| {
                self.state.steps.iter().all(|s| s.status == StepStatus::Skipped).then(|| "every step was skipped".to_string())
            });
            self.emit(SYSTEM_ACTOR, None, EventKind::Completed { status: RequestStatus::Approved, reason });
        }
        Ok(())
    }

    fn activate(&mut self, step_id: &str, at_submission: bool) -> Result<(), ResolveError> {
        let Some(step) = self.policy.step(step_id) else {
            return Err(ResolveError::Planning(format!("step `{step_id}` is not in policy {}", self.policy.id)));
        };
        let vars = self.vars.get_or_insert_with(|| {
            planner::request_vars(self.dir, &self.state.effective_context, &self.state.requester)
        });
        match planner::resolve(self.policy, step, self.dir, &self.state, vars, self.now) {
            Ok(r) => {
                let at = |d: jiff::SignedDuration| self.now.checked_add(d).ok();
                self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepActivated {
                    approvers: r.approvers,
                    quorum: r.quorum,
                    due_at: step.sla.and_then(at),
                    escalation_at: step.escalation.iter().filter_map(|e| e.after.and_then(at)).collect(),
                    remind_every: step.remind_every,
                    substitutions: r.substitutions,
                });
                Ok(())
            }
            Err(e) if at_submission => Err(e),
            Err(e) => {
                let reason = format!("{}: {}", e.code(), e.detail());
                self.emit(SYSTEM_ACTOR, Some(step_id), EventKind::StepDecided {
                    outcome: StepStatus::Rejected,
                    reason: Some(reason.clone()),
                });
                self.emit(SYSTEM_ACTOR, None, EventKind::Completed { status: RequestStatus::Rejected, reason: Some(reason) });
                Ok(())
            }
        }
    }
}

/// Checks approve-with-edits against a step's rules.
fn check_edits(rules: Option<&EditRules>, edits: &Value, context: &Value) -> Result<(), Refusal> {
    let refusal = |code: Code, detail: String| Refusal { code, detail };
    let Value::Object(map) = edits else {
        return Err(refusal(Code::EditSchemaInvalid, "edits must be an object of top-level context keys".into()));
    };
    let Some(rules) = rules else {
        return Err(refusal(Code::EditKeyNotAllowed, "this step does not allow edits".into()));
    };
    let outside: Vec<&str> = map.keys().filter(|k| !rules.allowed_keys.contains(k)).map(String::as_str).collect();
    if !outside.is_empty() {
        return Err(refusal(
            Code::EditKeyNotAllowed,
            format!("not editable: {} (allowed: {})", outside.join(", "), rules.allowed_keys.join(", ")),
        ));
    }
    if let Some(schema) = &rules.schema {
        schema.check(edits).map_err(|m| refusal(Code::EditSchemaInvalid, m.join("; ")))?;
    }
    if let Some(max) = rules.max_diff_chars {
        let changed: usize = map
            .iter()
            .filter(|(k, v)| context.get(k.as_str()) != Some(v))
            .map(|(_, v)| canonical::to_string(v).chars().count())
            .sum();
        if changed > max {
            return Err(refusal(Code::EditDiffTooLarge, format!("the edits change {changed} characters; at most {max} are allowed")));
        }
    }
    Ok(())
}
