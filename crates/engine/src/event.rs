//! Events: the only thing signoff stores as truth. Each event is sealed into a per-request
//! hash chain: its `hash` is sha256 over its canonical JSON (without `hash`, with `prev_hash`).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;
use crate::id::{LineageId, RequestId};
use crate::policy::{Quorum, Separation, TimeoutAction};
use crate::status::{RequestStatus, StepStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub seq: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub actor: String,
    pub step: Option<String>,
    /// Where the actor's call came from, when it came through the API: in the chain, so an
    /// auditor can trust it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// `type` (e.g. `approved`) and `data`, the event's own fields.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub kind: EventKind,
    pub prev_hash: String,
    pub hash: String,
}

/// Where a call came from: the client's address (as the server saw it, and as a proxy's
/// `X-Forwarded-For` named it) and its user agent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Identifies the exact policy a request was planned with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub id: String,
    pub version: u64,
    pub hash: String,
}

/// A step as planned at submission; what the fold needs to know without the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub after: Vec<String>,
    pub quorum: Quorum,
    pub rejections: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_acks: Vec<String>,
    #[serde(default)]
    pub on_timeout: TimeoutAction,
    /// With `on_timeout: escalate`: what the timeout does once no level is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_last_timeout: Option<TimeoutAction>,
}

/// An out-of-office substitution applied while resolving approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
// `submitted` is large, and exactly one per request: boxing it would not save memory.
#[allow(clippy::large_enum_variant)]
pub enum EventKind {
    Submitted {
        id: RequestId,
        policy: PolicyRef,
        requester: String,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        subject: Option<String>,
        context: Value,
        #[serde(default)]
        evidence: Vec<Value>,
        #[serde(default)]
        lineage: Option<LineageId>,
        #[serde(default)]
        resubmits: Option<RequestId>,
        #[serde(default)]
        expires_at: Option<Timestamp>,
        #[serde(default)]
        separation: Separation,
        steps: Vec<PlannedStep>,
    },
    AutoApproved {
        conditions: Vec<String>,
    },
    StepSkipped {
        because: String,
    },
    StepActivated {
        approvers: Vec<String>,
        quorum: u32,
        #[serde(default)]
        due_at: Option<Timestamp>,
        /// When each escalation level falls due, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        escalation_at: Vec<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remind_every: Option<SignedDuration>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        substitutions: Vec<Substitution>,
    },
    Approved {
        #[serde(default)]
        comment: Option<String>,
        #[serde(default)]
        edits: Option<Value>,
    },
    Rejected {
        comment: String,
    },
    Acknowledged {
        item: String,
    },
    EditsRefused {
        code: String,
        detail: String,
        edits: Value,
        /// This is the last refusal of the actor that the history records (see
        /// `MAX_RECORDED_REFUSALS`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        limit_reached: bool,
    },
    Delegated {
        from: String,
        to: String,
    },
    Commented {
        comment: String,
    },
    Escalated {
        level: u32,
        /// Approvers this level added (already-present approvers are not repeated).
        added: Vec<String>,
        /// When the level fell due; the event's `at` is when it fired.
        due: Timestamp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        substitutions: Vec<Substitution>,
        /// Why nobody could be added, if resolving the level failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        problem: Option<String>,
    },
    Reminded {
        to: Vec<String>,
        /// The reminder's number since activation (1 = the first `remind_every`).
        round: u32,
        due: Timestamp,
    },
    StepTimedOut {
        action: TimeoutAction,
        due: Timestamp,
        /// With `escalate`: the step's new due time (an `escalated` event follows).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_due: Option<Timestamp>,
    },
    /// On an earlier request: it was re-submitted as request `by` (same lineage).
    Resubmitted {
        by: RequestId,
    },
    StepDecided {
        outcome: StepStatus,
        #[serde(default)]
        reason: Option<String>,
    },
    Cancelled {
        #[serde(default)]
        comment: Option<String>,
    },
    Expired {
        reason: String,
    },
    Completed {
        status: RequestStatus,
        #[serde(default)]
        reason: Option<String>,
    },
    Refused {
        action: String,
        code: String,
        detail: String,
        /// This is the last refusal of the actor that the history records (see
        /// `MAX_RECORDED_REFUSALS`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        limit_reached: bool,
    },
}

impl EventKind {
    /// The wire name of this event's type (`step_activated`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Submitted { .. } => "submitted",
            EventKind::AutoApproved { .. } => "auto_approved",
            EventKind::StepSkipped { .. } => "step_skipped",
            EventKind::StepActivated { .. } => "step_activated",
            EventKind::Approved { .. } => "approved",
            EventKind::Rejected { .. } => "rejected",
            EventKind::Acknowledged { .. } => "acknowledged",
            EventKind::EditsRefused { .. } => "edits_refused",
            EventKind::Delegated { .. } => "delegated",
            EventKind::Commented { .. } => "commented",
            EventKind::Escalated { .. } => "escalated",
            EventKind::Reminded { .. } => "reminded",
            EventKind::StepTimedOut { .. } => "step_timed_out",
            EventKind::Resubmitted { .. } => "resubmitted",
            EventKind::StepDecided { .. } => "step_decided",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Expired { .. } => "expired",
            EventKind::Completed { .. } => "completed",
            EventKind::Refused { .. } => "refused",
        }
    }
}

impl Event {
    /// Builds an event at `seq` after `prev_hash` and computes its hash.
    pub fn sealed(seq: u64, at: Timestamp, actor: &str, step: Option<&str>, kind: EventKind, prev_hash: &str) -> Event {
        let mut event = Event {
            seq,
            at,
            actor: actor.to_string(),
            step: step.map(str::to_string),
            origin: None,
            kind,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event
    }

    /// sha256 over the canonical JSON of this event without its `hash` field.
    pub fn compute_hash(&self) -> String {
        /// The event as hashed: every field but `hash`.
        #[derive(Serialize)]
        struct Unsealed<'a> {
            seq: u64,
            at: Timestamp,
            actor: &'a str,
            step: Option<&'a str>,
            // (Absent when none, so histories from before origins hash as they did.)
            #[serde(skip_serializing_if = "Option::is_none")]
            origin: Option<&'a Origin>,
            #[serde(flatten)]
            kind: &'a EventKind,
            prev_hash: &'a str,
        }
        canonical::digest(&Unsealed {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            step: self.step.as_deref(),
            origin: self.origin.as_ref(),
            kind: &self.kind,
            prev_hash: &self.prev_hash,
        })
    }
}

/// Marks the events `actor` caused in `events` (one decision's new events, in order) as coming
/// from `origin`, and seals them again: the first keeps its `prev_hash`, each later one follows
/// the one before. Answers the new head of the chain.
pub fn stamp_origin(events: &mut [Event], actor: &str, origin: &Origin) -> Option<String> {
    let mut prev: Option<String> = None;
    for e in events.iter_mut() {
        if let Some(p) = prev.take() {
            e.prev_hash = p;
        }
        if e.actor == actor {
            e.origin = Some(origin.clone());
        }
        e.hash = e.compute_hash();
        prev = Some(e.hash.clone());
    }
    prev
}

/// Why a history does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event {seq}: expected seq {expected}")]
    Gap { seq: u64, expected: u64 },
    #[error("event {seq}: prev_hash does not match the previous event's hash")]
    Broken { seq: u64 },
    #[error("event {seq}: hash does not match its content")]
    Tampered { seq: u64 },
}

/// Checks that `events` are numbered 1.., each linked to the one before and hashed correctly.
pub fn verify_chain(events: &[Event]) -> Result<(), ChainError> {
    let mut prev = canonical::GENESIS_HASH.to_string();
    for (i, e) in events.iter().enumerate() {
        let expected = i as u64 + 1;
        if e.seq != expected {
            return Err(ChainError::Gap { seq: e.seq, expected });
        }
        if e.prev_hash != prev {
            return Err(ChainError::Broken { seq: e.seq });
        }
        if e.compute_hash() != e.hash {
            return Err(ChainError::Tampered { seq: e.seq });
        }
        prev = e.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_sealed_into_the_chain_and_none_hashes_as_before() {
        let at: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let first = Event::sealed(1, at, "mark", Some("manager"), EventKind::Approved { comment: None, edits: None }, canonical::GENESIS_HASH);
        let second = Event::sealed(2, at, "system", None, EventKind::Completed { status: RequestStatus::Approved, reason: None }, &first.hash);
        let before = [first.clone(), second.clone()];
        let mut events = before.clone();
        assert!(!serde_json::to_string(&events[0]).unwrap().contains("origin"), "no origin, no field");
        let origin = Origin { address: Some("10.0.0.7".into()), forwarded_for: None, user_agent: Some("curl/8".into()) };
        let head = stamp_origin(&mut events, "mark", &origin).unwrap();
        assert_eq!(events[0].origin.as_ref(), Some(&origin));
        assert_eq!(events[1].origin, None, "only the actor's own events");
        assert_ne!(events[0].hash, before[0].hash, "the origin is part of the hash");
        assert_eq!((events[0].prev_hash.as_str(), events[1].prev_hash.as_str(), head.as_str()), (canonical::GENESIS_HASH, events[0].hash.as_str(), events[1].hash.as_str()));
        verify_chain(&events).unwrap();
        let mut forged = events.clone();
        forged[0].origin.as_mut().unwrap().address = Some("10.0.0.8".into());
        assert!(verify_chain(&forged).is_err(), "an origin changed later breaks the chain");
    }

    #[test]
    fn wire_shape_is_flat_with_type_and_data() {
        let e = Event::sealed(
            1,
            "2026-11-22T10:00:00Z".parse().unwrap(),
            "mark",
            Some("manager"),
            EventKind::Approved { comment: Some("ok".into()), edits: None },
            canonical::GENESIS_HASH,
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "approved");
        assert_eq!(v["data"]["comment"], "ok");
        assert_eq!(v["step"], "manager");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert!(verify_chain(std::slice::from_ref(&e)).is_ok());
        let mut tampered = e;
        tampered.actor = "mallory".into();
        assert_eq!(verify_chain(&[tampered]), Err(ChainError::Tampered { seq: 1 }));
    }
}
