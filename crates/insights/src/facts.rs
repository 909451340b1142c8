//! A request's facts: what analytics keeps of it, folded from its events in log order. Times
//! are Unix milliseconds, so that a hundred thousand requests stay small in memory and cheap to
//! scan; a fact never changes once its event is in the log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use signoff_engine::{Event, RequestStatus, event::EventKind, state::StepStatus};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn millis(t: jiff::Timestamp) -> Millis {
    t.as_millisecond()
}

/// What a person did with an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
    /// Handed the assignment to someone else.
    Delegated,
}

/// One person asked to decide one step, from when they were asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub approver: String,
    /// When they were asked: the step's activation, an escalation that added them, or a
    /// delegation to them.
    pub from: Millis,
    /// When they acted (approved, rejected or delegated), if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// When the step closed without them acting (others decided it, it timed out, the
    /// request ended): the end of their wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Millis>,
}

impl Assignment {
    /// Still waiting on this person.
    pub fn is_open(&self) -> bool {
        self.acted.is_none() && self.released.is_none()
    }

    /// How long they were (or have been, as of `now`) waited on.
    pub fn waited(&self, now: Millis) -> Millis {
        (self.acted.or(self.released).unwrap_or(now) - self.from).max(0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFacts {
    pub id: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated: Option<Millis>,
    /// The step's first due time (its SLA), before any escalation moved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Millis>,
    /// When it is due now (a timeout that escalates moves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Millis>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalations: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<Assignment>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StepFacts {
    pub fn is_open(&self) -> bool {
        self.status.is_open()
    }

    /// Met its SLA: decided by its first due time, and not by the timeout itself. `None`
    /// without an SLA, or while it is open and not yet late.
    pub fn met_sla(&self, now: Millis) -> Option<bool> {
        let due = self.due?;
        match self.decided {
            Some(d) => Some(d <= due && !self.timed_out),
            None if now > due => Some(false),
            None => None,
        }
    }

    /// From activation to decision (or to `now` while active).
    pub fn deciding(&self, now: Millis) -> Option<Millis> {
        let from = self.activated?;
        Some((self.decided.unwrap_or(now) - from).max(0))
    }

    /// The approvers of its activation, in order, then those added later.
    pub fn approvers(&self) -> impl Iterator<Item = &str> {
        self.assignments.iter().map(|a| a.approver.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    pub id: String,
    pub policy: String,
    pub version: u64,
    pub requester: String,
    pub submitted: Millis,
    pub status: RequestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Millis>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approved: bool,
    /// The request this one re-submits, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resubmits: Option<String>,
    /// The context as submitted: what a what-if simulation replays.
    pub context: Value,
    pub steps: Vec<StepFacts>,
}

impl RequestFacts {
    /// The facts of a request right after its `submitted` event; `None` for any other event.
    pub fn start(event: &Event) -> Option<RequestFacts> {
        let EventKind::Submitted { id, policy, requester, context, resubmits, expires_at, steps, .. } = &event.kind else {
            return None;
        };
        Some(RequestFacts {
            id: id.to_string(),
            policy: policy.id.clone(),
            version: policy.version,
            requester: requester.clone(),
            submitted: millis(event.at),
            status: RequestStatus::Pending,
            decided: None,
            expires: expires_at.map(millis),
            auto_approved: false,
            resubmits: resubmits.as_ref().map(|r| r.to_string()),
            context: context.clone(),
            steps: steps
                .iter()
                .map(|s| StepFacts {
                    id: s.id.clone(),
                    status: StepStatus::Waiting,
                    activated: None,
                    due: None,
                    deadline: None,
                    decided: None,
                    escalations: 0,
                    timed_out: false,
                    assignments: Vec::new(),
                })
                .collect(),
        })
    }

    /// Takes in one later event of this request. Events of unknown steps are ignored: facts
    /// describe, they do not validate (the fold of the state does).
    pub fn apply(&mut self, event: &Event) {
        let at = millis(event.at);
        let step = event.step.as_deref().and_then(|id| self.steps.iter().position(|s| s.id == id));
        match (&event.kind, step) {
            (EventKind::AutoApproved { .. }, _) => self.auto_approved = true,
            (EventKind::StepSkipped { .. }, Some(i)) => self.steps[i].status = StepStatus::Skipped,
            (EventKind::StepActivated { approvers, due_at, .. }, Some(i)) => {
                let s = &mut self.steps[i];
                s.status = StepStatus::Active;
                s.activated = Some(at);
                s.due = due_at.map(millis);
                s.deadline = s.due;
                s.assignments = approvers.iter().map(|a| assignment(a, at)).collect();
            }
            (EventKind::Approved { .. }, Some(i)) => self.steps[i].act(&event.actor, at, Verdict::Approved),
            (EventKind::Rejected { .. }, Some(i)) => self.steps[i].act(&event.actor, at, Verdict::Rejected),
            (EventKind::Delegated { from, to }, Some(i)) => {
                let s = &mut self.steps[i];
                s.act(from, at, Verdict::Delegated);
                if !s.assignments.iter().any(|a| a.approver == *to && a.is_open()) {
                    s.assignments.push(assignment(to, at));
                }
            }
            (EventKind::Escalated { added, .. }, Some(i)) => {
                let s = &mut self.steps[i];
                s.escalations += 1;
                for a in added {
                    if !s.assignments.iter().any(|x| x.approver == *a) {
                        s.assignments.push(assignment(a, at));
                    }
                }
            }
            (EventKind::StepTimedOut { next_due, .. }, Some(i)) => {
                let s = &mut self.steps[i];
                s.timed_out = true;
                s.deadline = next_due.map(millis);
            }
            (EventKind::StepDecided { outcome, .. }, Some(i)) => self.steps[i].close(*outcome, at),
            (EventKind::Cancelled { .. }, _) => self.close(RequestStatus::Cancelled, StepStatus::Cancelled, at),
            (EventKind::Expired { .. }, _) => self.close(RequestStatus::Expired, StepStatus::Expired, at),
            (EventKind::Completed { status, .. }, _) => self.close(*status, StepStatus::Cancelled, at),
            _ => {}
        }
    }

    fn close(&mut self, status: RequestStatus, open_steps_become: StepStatus, at: Millis) {
        self.status = status;
        self.decided = Some(at);
        for s in self.steps.iter_mut().filter(|s| s.is_open()) {
            s.close(open_steps_become, at);
        }
    }

    /// From submission to decision (or to `now` while pending).
    pub fn deciding(&self, now: Millis) -> Millis {
        (self.decided.unwrap_or(now) - self.submitted).max(0)
    }

    pub fn escalated(&self) -> bool {
        self.steps.iter().any(|s| s.escalations > 0)
    }

    pub fn timed_out(&self) -> bool {
        self.steps.iter().any(|s| s.timed_out)
    }

    /// Met every SLA it had; `None` when it had none (or none has come due yet).
    pub fn met_sla(&self, now: Millis) -> Option<bool> {
        self.steps.iter().filter_map(|s| s.met_sla(now)).reduce(|a, b| a && b)
    }
}

fn assignment(approver: &str, at: Millis) -> Assignment {
    Assignment { approver: approver.to_string(), from: at, acted: None, verdict: None, released: None }
}

impl StepFacts {
    fn act(&mut self, who: &str, at: Millis, verdict: Verdict) {
        if let Some(a) = self.assignments.iter_mut().find(|a| a.approver == who && a.is_open()) {
            a.acted = Some(at);
            a.verdict = Some(verdict);
        }
    }

    fn close(&mut self, status: StepStatus, at: Millis) {
        if self.status == StepStatus::Waiting && status != StepStatus::Skipped && self.activated.is_none() {
            // Closed before it ever started: nobody waited on it.
            self.status = status;
            return;
        }
        self.status = status;
        self.decided = Some(at);
        for a in self.assignments.iter_mut().filter(|a| a.is_open()) {
            a.released = Some(at);
        }
    }
}
