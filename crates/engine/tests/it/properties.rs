//! Property tests: any sequence of commands keeps the engine's invariants, and replaying a
//! request's events always rebuilds the same state.

use std::collections::{HashMap, HashSet};

use crate::common::*;
use proptest::prelude::*;
use serde_json::json;
use signoff_engine::event::verify_chain;
use signoff_engine::machine::{self, Action, Command, Submission};
use signoff_engine::{Event, EventKind, Policy, RequestState, RequestStatus, StepStatus};

const POLICIES: &[&str] = &[
    include_str!("../../../../examples/policies/quote-discount.yaml"),
    "id: mixed\nsteps:\n  - {id: a, after: [], approvers: {groups: [sre]}, quorum: 2, rejections: 2, require_acks: [check]}\n  - {id: b, after: [], approvers: {users: [mark, fiona, sam]}}\n  - {id: c, after: [a, b], approvers: {groups: [finance]}, quorum: all}\n",
    "id: timed\nexpires_in: 1d\nsteps:\n  - {id: a, approvers: {groups: [sre]}, quorum: 2, sla: 3h, on_timeout: approve, escalation: [{after: 1h, to: {users: [mark]}}, {after: 2h, to: {groups: [finance]}}], remind_every: 30m}\n  - {id: b, approvers: {users: [lena, fiona]}, sla: 2h, on_timeout: reject, remind_every: 45m}\n  - {id: c, after: [], approvers: {users: [sam, frank]}, sla: 5h}\n",
    "id: seq\nsteps:\n  - {id: a, approvers: {users: [mark, sam]}}\n  - {id: b, when: 'x > 1', approvers: {groups: [finance]}}\n  - {id: c, approvers: {users: [lena, sue, mark]}, quorum: 2}\n",
];

const ACTORS: &[&str] = &["alice", "mark", "fiona", "frank", "lena", "sam", "sue", "sid", "dana", "root"];
const STEPS: &[&str] = &["manager", "finance", "legal", "a", "b", "c", "zz"];

fn action() -> impl Strategy<Value = Action> {
    let step = prop::sample::select(STEPS).prop_map(str::to_string);
    prop_oneof![
        6 => step.clone().prop_map(|step| Action::Approve { step, comment: None, edits: None }),
        2 => (step.clone(), prop::option::of(Just("no".to_string()))).prop_map(|(step, comment)| Action::Reject { step, comment }),
        2 => step.clone().prop_map(|step| Action::Acknowledge { step, item: "check".into() }),
        1 => (step.clone(), prop::sample::select(ACTORS)).prop_map(|(step, to)| Action::Delegate { step, to: to.into() }),
        1 => Just(Action::Comment { step: None, comment: "hm".into() }),
        1 => Just(Action::Cancel { comment: None }),
        4 => Just(Action::Tick),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    (prop::sample::select(ACTORS), action()).prop_map(|(actor, action)| Command { actor: actor.into(), action })
}

/// The parts of a state that a closed request must never change.
fn outcome_of(s: &RequestState) -> serde_json::Value {
    json!({"status": s.status, "steps": s.steps, "decided_at": s.decided_at, "effective_context": s.effective_context})
}

fn check_invariants(events: &[Event], state: &RequestState) {
    // Replay what a store keeps: the events and the state as JSON text, decoded again.
    let stored: Vec<Event> = serde_json::from_str(&serde_json::to_string(events).unwrap()).unwrap();
    let kept: RequestState = serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap();
    verify_chain(&stored).unwrap();
    assert_eq!(RequestState::fold(&stored).unwrap(), kept, "replaying the stored events must rebuild the stored state");
    assert_eq!(&kept, state, "the state survives its JSON form");
    let mut escalations: HashMap<Option<String>, Vec<u32>> = HashMap::new();
    for e in events {
        if let EventKind::Escalated { level, .. } = &e.kind {
            escalations.entry(e.step.clone()).or_default().push(*level);
        }
    }
    for levels in escalations.values() {
        assert!(levels.iter().copied().eq(1..=levels.len() as u32), "each level once, in order: {levels:?}");
    }
    if state.status.is_terminal() {
        assert!(state.timers().is_empty() && state.next_timer_at.is_none(), "a closed request has no timers");
    }
    let mut decided = HashMap::new();
    let mut closings = 0;
    for e in events {
        match &e.kind {
            EventKind::StepDecided { .. } => *decided.entry(e.step.clone()).or_insert(0) += 1,
            EventKind::Completed { .. } | EventKind::Cancelled { .. } | EventKind::Expired { .. } => closings += 1,
            _ => {}
        }
    }
    assert!(decided.values().all(|n| *n == 1), "a step is decided at most once: {decided:?}");
    assert!(closings <= 1, "a request closes at most once");
    for step in &state.steps {
        let voters: HashSet<&str> = step.approvals.iter().chain(&step.rejections).map(|v| v.by.as_str()).collect();
        assert_eq!(voters.len(), step.approvals.len() + step.rejections.len(), "one vote per person per step");
        for v in step.approvals.iter().chain(&step.rejections) {
            assert!(step.approvers.contains(&v.by) || step.delegations.iter().any(|d| d.from == v.by) || v.by == "system");
            assert_ne!(v.by, state.requester, "the requester never votes");
        }
        if step.status == StepStatus::Approved && step.decision_reason.is_none() {
            assert!(step.approvals.len() as u32 >= step.quorum_needed(), "approved steps reached quorum (or timed out)");
        }
    }
    if state.status == RequestStatus::Approved {
        assert!(state.steps.iter().all(|s| matches!(s.status, StepStatus::Approved | StepStatus::Skipped)));
    }
    if state.status.is_terminal() {
        assert!(state.steps.iter().all(|s| !s.status.is_open()), "a closed request has no open step");
        assert!(state.current_tasks.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn commands_keep_the_invariants(
        which in 0..POLICIES.len(),
        discount in 0.0f64..0.3,
        margin in 0.1f64..0.4,
        x in 0i64..3,
        commands in prop::collection::vec(command(), 0..40),
    ) {
        let policy = Policy::from_yaml(POLICIES[which]).unwrap();
        let dir = directory();
        let context = json!({"quote": {"total": 48000, "discount": discount, "margin": margin, "nonstandard_clause": x == 2}, "x": x});
        let sub = Submission { id: "req_p".into(), requester: "alice".into(), title: None, subject: None, context, evidence: vec![], lineage: None, resubmits: None };
        let (mut events, mut state) = machine::submit(&policy, &dir, sub, t0()).unwrap();
        check_invariants(&events, &state);
        let mut closed: Option<serde_json::Value> = state.status.is_terminal().then(|| outcome_of(&state));
        for (i, cmd) in commands.iter().enumerate() {
            // Time moves on by 17 minutes a command, so timers fall due along the way.
            let now = t0() + jiff::SignedDuration::from_mins(17 * (i as i64 + 1));
            let cmd = if cmd.action == Action::Tick { Command { actor: "system".into(), action: Action::Tick } } else { cmd.clone() };
            let d = machine::decide(&policy, &dir, &state, &cmd, now);
            if cmd.action == Action::Tick {
                prop_assert!(state.timers().iter().all(|t| t.at > now) == d.events.is_empty(), "a tick fires exactly what is due");
                prop_assert!(d.state.timers().iter().all(|t| t.at > now), "nothing due is left after a tick");
            }
            prop_assert_eq!(d.events.first().map(|e| e.seq), d.events.first().map(|_| state.version + 1));
            events.extend(d.events);
            state = d.state;
            check_invariants(&events, &state);
            if let Some(frozen) = &closed {
                prop_assert_eq!(frozen, &outcome_of(&state), "a terminal request never changes");
            } else if state.status.is_terminal() {
                closed = Some(outcome_of(&state));
            }
        }
    }
}
