//! A request's state, which is exactly the fold of its events. `apply` is the only place that
//! changes a `RequestState`; the machine decides which events to emit, this module only
//! records what they mean.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::GENESIS_HASH;
use crate::event::{Event, EventKind, PolicyRef};
use crate::id::{LineageId, RequestId};
use crate::policy::{Quorum, Separation, TimeoutAction};
pub use crate::status::{RequestStatus, StepStatus};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub by: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub comment: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub edits: Option<Value>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub item: String,
    pub by: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delegation {
    pub from: String,
    pub to: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub by: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub step: Option<String>,
    pub comment: String,
}

/// What a timer does when it falls due.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    // Declaration order breaks ties between timers due at the same instant.
    Escalation,
    Reminder,
    Timeout,
    Expiry,
}

/// A pending timer of a request, derived from its state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub kind: TimerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The escalation level, for `escalation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub id: String,
    pub title: Option<String>,
    pub status: StepStatus,
    pub reason: Option<String>,
    /// Why a skipped step was skipped (`when` was false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_because: Option<String>,
    pub after: Vec<String>,
    pub approvers: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub quorum: Quorum,
    pub rejections_needed: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_acks: Vec<String>,
    pub approvals: Vec<Vote>,
    pub rejections: Vec<Vote>,
    pub acks: Vec<Ack>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations: Vec<Delegation>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub on_timeout: TimeoutAction,
    /// With `on_timeout: escalate`: what the timeout does once no escalation level is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub on_last_timeout: Option<TimeoutAction>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub activated_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub due_at: Option<Timestamp>,
    pub escalation_level: u32,
    /// When each escalation level falls due (fired levels included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub escalation_at: Vec<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub remind_every: Option<SignedDuration>,
    #[serde(default)]
    pub reminders_sent: u32,
    /// The next timer of this step while it is active.
    #[serde(default)]
    pub next_timer: Option<Timer>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub decided_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
}

impl StepState {
    pub fn has_approved(&self, user: &str) -> bool {
        self.approvals.iter().any(|v| v.by == user)
    }

    pub fn has_rejected(&self, user: &str) -> bool {
        self.rejections.iter().any(|v| v.by == user)
    }

    /// Approvals needed; `all` before activation counts as unknown (u32::MAX).
    pub fn quorum_needed(&self) -> u32 {
        match self.quorum {
            Quorum::Count(n) => n,
            Quorum::All => u32::MAX,
        }
    }

    /// Items of `require_acks` nobody has acknowledged yet.
    pub fn pending_acks(&self) -> Vec<&str> {
        self.require_acks
            .iter()
            .filter(|item| !self.acks.iter().any(|a| &a.item == *item))
            .map(String::as_str)
            .collect()
    }


    fn label(&self) -> String {
        self.reason.clone().or_else(|| self.title.clone()).unwrap_or_else(|| self.id.clone())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestState {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: RequestId,
    pub status: RequestStatus,
    pub policy: PolicyRef,
    pub title: Option<String>,
    pub subject: Option<String>,
    pub requester: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub effective_context: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub evidence: Vec<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub separation: Separation,
    pub steps: Vec<StepState>,
    pub current_tasks: Vec<String>,
    pub pending_reasons: Vec<String>,
    pub comments: Vec<Comment>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub lineage: Option<LineageId>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub resubmits: Option<RequestId>,
    /// Later requests that re-submitted this one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub resubmitted_by: Vec<RequestId>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub decided_at: Option<Timestamp>,
    pub decision_reason: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    pub version: u64,
    /// The hash of the last event: the head of the request's chain.
    pub head_hash: String,
    /// When the request's earliest timer falls due; none once it is closed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub next_timer_at: Option<Timestamp>,
    /// How many refusals (`refused`, `edits_refused`) of each caller the history records; at
    /// `MAX_RECORDED_REFUSALS` further refusals of that caller are answered but not recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refusals: BTreeMap<String, u32>,
}

/// Why a history cannot be folded into a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("the first event must be `submitted`")]
    NotSubmittedFirst,
    #[error("event {0}: `submitted` may only come first")]
    SubmittedAgain(u64),
    #[error("event {seq}: unknown step `{step}`")]
    UnknownStep { seq: u64, step: String },
}

impl RequestState {
    /// Folds a whole history. The first event must be `submitted`.
    pub fn fold(events: &[Event]) -> Result<RequestState, FoldError> {
        let (first, rest) = events.split_first().ok_or(FoldError::NotSubmittedFirst)?;
        let mut state = RequestState::start(first)?;
        for e in rest {
            state.apply(e)?;
        }
        Ok(state)
    }

    /// The state right after a `submitted` event.
    pub fn start(event: &Event) -> Result<RequestState, FoldError> {
        let EventKind::Submitted {
            id, policy, requester, title, subject, context, evidence, lineage, resubmits,
            expires_at, separation, steps,
        } = &event.kind
        else {
            return Err(FoldError::NotSubmittedFirst);
        };
        let mut state = RequestState {
            id: id.clone(),
            status: RequestStatus::Pending,
            policy: policy.clone(),
            title: title.clone(),
            subject: subject.clone(),
            requester: requester.clone(),
            context: context.clone(),
            effective_context: context.clone(),
            evidence: evidence.clone(),
            separation: *separation,
            steps: steps
                .iter()
                .map(|s| StepState {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    status: StepStatus::Waiting,
                    reason: s.reason.clone(),
                    skipped_because: None,
                    after: s.after.clone(),
                    approvers: Vec::new(),
                    quorum: s.quorum,
                    rejections_needed: s.rejections,
                    require_acks: s.require_acks.clone(),
                    approvals: Vec::new(),
                    rejections: Vec::new(),
                    acks: Vec::new(),
                    delegations: Vec::new(),
                    on_timeout: s.on_timeout,
                    on_last_timeout: s.on_last_timeout,
                    activated_at: None,
                    due_at: None,
                    escalation_level: 0,
                    escalation_at: Vec::new(),
                    remind_every: None,
                    reminders_sent: 0,
                    next_timer: None,
                    decided_at: None,
                    decision_reason: None,
                })
                .collect(),
            current_tasks: Vec::new(),
            pending_reasons: Vec::new(),
            comments: Vec::new(),
            lineage: lineage.clone(),
            resubmits: resubmits.clone(),
            resubmitted_by: Vec::new(),
            created_at: event.at,
            updated_at: event.at,
            decided_at: None,
            decision_reason: None,
            expires_at: *expires_at,
            version: 0,
            head_hash: GENESIS_HASH.to_string(),
            next_timer_at: None,
            refusals: BTreeMap::new(),
        };
        state.finish(event);
        Ok(state)
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.id == id)
    }

    fn step_mut(&mut self, event: &Event) -> Result<&mut StepState, FoldError> {
        let id = event.step.as_deref().unwrap_or_default();
        self.steps
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| FoldError::UnknownStep { seq: event.seq, step: id.to_string() })
    }

    /// Applies one event after the first.
    pub fn apply(&mut self, event: &Event) -> Result<(), FoldError> {
        let at = event.at;
        let actor = event.actor.clone();
        match &event.kind {
            EventKind::Submitted { .. } => return Err(FoldError::SubmittedAgain(event.seq)),
            EventKind::AutoApproved { .. } | EventKind::StepTimedOut { next_due: None, .. } => {}
            EventKind::StepTimedOut { next_due: Some(due), .. } => self.step_mut(event)?.due_at = Some(*due),
            EventKind::EditsRefused { .. } | EventKind::Refused { .. } => {
                *self.refusals.entry(actor.clone()).or_default() += 1;
            }
            EventKind::Reminded { round, .. } => {
                let step = self.step_mut(event)?;
                step.reminders_sent = *round;
            }
            EventKind::Resubmitted { by } => self.resubmitted_by.push(by.clone()),
            EventKind::StepSkipped { because } => {
                let step = self.step_mut(event)?;
                step.status = StepStatus::Skipped;
                step.skipped_because = Some(because.clone());
            }
            EventKind::StepActivated { approvers, quorum, due_at, escalation_at, remind_every, .. } => {
                let step = self.step_mut(event)?;
                step.status = StepStatus::Active;
                step.approvers = approvers.clone();
                step.quorum = Quorum::Count(*quorum);
                step.activated_at = Some(at);
                step.due_at = *due_at;
                step.escalation_at = escalation_at.clone();
                step.remind_every = *remind_every;
            }
            EventKind::Approved { comment, edits } => {
                let step = self.step_mut(event)?;
                step.approvals.push(Vote { by: actor, at, comment: comment.clone(), edits: edits.clone() });
                if let (Some(Value::Object(edits)), Value::Object(ctx)) = (edits, &mut self.effective_context) {
                    for (k, v) in edits {
                        ctx.insert(k.clone(), v.clone());
                    }
                }
            }
            EventKind::Rejected { comment } => {
                let step = self.step_mut(event)?;
                step.rejections.push(Vote { by: actor, at, comment: Some(comment.clone()), edits: None });
            }
            EventKind::Acknowledged { item } => {
                let step = self.step_mut(event)?;
                step.acks.push(Ack { item: item.clone(), by: actor, at });
            }
            EventKind::Delegated { from, to } => {
                let step = self.step_mut(event)?;
                for a in step.approvers.iter_mut().filter(|a| *a == from) {
                    *a = to.clone();
                }
                step.delegations.push(Delegation { from: from.clone(), to: to.clone(), at });
            }
            EventKind::Commented { comment } => {
                self.comments.push(Comment { by: actor, at, step: event.step.clone(), comment: comment.clone() });
            }
            EventKind::Escalated { level, added, .. } => {
                let step = self.step_mut(event)?;
                step.escalation_level = *level;
                for a in added {
                    if !step.approvers.contains(a) {
                        step.approvers.push(a.clone());
                    }
                }
            }
            EventKind::StepDecided { outcome, reason } => {
                let step = self.step_mut(event)?;
                step.status = *outcome;
                step.decided_at = Some(at);
                step.decision_reason = reason.clone();
            }
            EventKind::Cancelled { .. } => self.close(RequestStatus::Cancelled, StepStatus::Cancelled, None, at),
            EventKind::Expired { reason } => {
                self.close(RequestStatus::Expired, StepStatus::Expired, Some(reason.clone()), at)
            }
            EventKind::Completed { status, reason } => {
                self.close(*status, StepStatus::Cancelled, reason.clone(), at)
            }
        }
        self.finish(event);
        Ok(())
    }

    fn close(&mut self, status: RequestStatus, open_steps_become: StepStatus, reason: Option<String>, at: Timestamp) {
        self.status = status;
        self.decided_at = Some(at);
        self.decision_reason = reason;
        for step in self.steps.iter_mut().filter(|s| s.status.is_open()) {
            step.status = open_steps_become;
            step.decided_at = Some(at);
        }
    }

    fn finish(&mut self, event: &Event) {
        self.version = event.seq;
        self.updated_at = event.at;
        self.head_hash = event.hash.clone();
        let active = self.steps.iter().filter(|s| s.status == StepStatus::Active);
        self.current_tasks = active.clone().map(|s| s.id.clone()).collect();
        self.pending_reasons = active.map(StepState::label).collect();
        let timers = self.timers();
        self.next_timer_at = timers.first().map(|t| t.at);
        for step in &mut self.steps {
            step.next_timer = timers.iter().find(|t| t.step.as_deref() == Some(step.id.as_str())).cloned();
        }
    }

    /// Every pending timer, earliest first: the request's expiry and, for each active step, its
    /// next escalation level, its next reminder and its timeout. A closed request has none, so
    /// deciding or cancelling a request voids its timers.
    pub fn timers(&self) -> Vec<Timer> {
        let mut out = Vec::new();
        if self.status.is_terminal() {
            return out;
        }
        if let Some(at) = self.expires_at {
            out.push(Timer { at, kind: TimerKind::Expiry, step: None, level: None });
        }
        for s in self.steps.iter().filter(|s| s.status == StepStatus::Active) {
            let step = Some(s.id.clone());
            if let Some(&at) = s.escalation_at.get(s.escalation_level as usize) {
                out.push(Timer { at, kind: TimerKind::Escalation, step: step.clone(), level: Some(s.escalation_level + 1) });
            }
            if let (Some(every), Some(start)) = (s.remind_every, s.activated_at) {
                let next = every.checked_mul(s.reminders_sent as i32 + 1).and_then(|d| start.checked_add(d).ok());
                if let Some(at) = next {
                    out.push(Timer { at, kind: TimerKind::Reminder, step: step.clone(), level: None });
                }
            }
            if let Some(at) = s.due_at {
                out.push(Timer { at, kind: TimerKind::Timeout, step, level: None });
            }
        }
        out.sort_by_key(|t| (t.at, t.kind));
        out
    }

    /// Approvers of `step` who can still vote on it: they have not voted on it, and (with
    /// `one_step_per_approver`) have not decided another step of this request.
    pub fn open_approvers<'a>(&'a self, step: &'a StepState) -> impl Iterator<Item = &'a String> + 'a {
        step.approvers.iter().filter(move |a| {
            !step.has_approved(a)
                && !step.has_rejected(a)
                && (!self.separation.one_step_per_approver || !self.decided_other_step(a, &step.id))
        })
    }

    /// Open tasks: (step, approver) for every approver who may act on an active step now.
    pub fn open_tasks(&self) -> Vec<(&StepState, &str)> {
        if self.status.is_terminal() {
            return Vec::new();
        }
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Active)
            .flat_map(|s| self.open_approvers(s).map(move |a| (s, a.as_str())))
            .collect()
    }

    /// Everyone who may see the request: the requester and everyone on its plan so far.
    pub fn participants(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![self.requester.as_str()];
        for s in &self.steps {
            out.extend(s.approvers.iter().map(String::as_str));
            out.extend(s.delegations.iter().map(|d| d.from.as_str()));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `user` decided (approved or rejected) a step other than `except`.
    pub fn decided_other_step(&self, user: &str, except: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.id != except && (s.has_approved(user) || s.has_rejected(user)))
    }
}
