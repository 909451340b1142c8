//! Time in the engine: timers derived from state, fired by `Tick` at a given `now`.

use crate::common::*;
use jiff::SignedDuration;
use serde_json::json;
use signoff_engine::machine::{self, Action, Command, Outcome};
use signoff_engine::{EventKind, Policy, RequestState, RequestStatus, StepStatus, TimerKind};

fn at(minutes: i64) -> jiff::Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

fn tick(p: &Policy, s: &RequestState, minutes: i64) -> machine::Decision {
    machine::decide(p, &directory(), s, &Command { actor: "system".into(), action: Action::Tick }, at(minutes))
}

#[test]
fn on_timeout_approve_moves_on() {
    let p = policy("id: t\nsteps:\n  - {id: a, approvers: {users: [mark]}, sla: 1h, on_timeout: approve}\n  - {id: b, approvers: {users: [fiona]}}\n");
    let s = submit(&p, json!({}));
    assert_eq!(s.step("a").unwrap().due_at, Some(at(60)));
    assert_eq!(s.next_timer_at, Some(at(60)));
    assert_eq!(tick(&p, &s, 59).outcome, Outcome::Unchanged);
    let d = tick(&p, &s, 60);
    assert_eq!(d.outcome, Outcome::Applied);
    let kinds: Vec<&str> = d.events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(kinds, ["step_timed_out", "step_decided", "step_activated"]);
    assert_eq!(d.state.step("a").unwrap().status, StepStatus::Approved);
    assert_eq!(d.state.current_tasks, ["b"]);
    assert_eq!(tick(&p, &d.state, 61).outcome, Outcome::Unchanged, "a timer fires once");
}

#[test]
fn on_timeout_reject_and_expire() {
    let p = policy("id: t\nsteps:\n  - {id: a, approvers: {users: [mark]}, sla: 30m, on_timeout: reject}\n");
    let d = tick(&p, &submit(&p, json!({})), 45);
    assert_eq!(d.state.status, RequestStatus::Rejected);
    assert_eq!(d.state.step("a").unwrap().status, StepStatus::Rejected);

    let p = policy("id: t\nsteps:\n  - {id: a, approvers: {users: [mark]}, sla: 30m}\n");
    let d = tick(&p, &submit(&p, json!({})), 30);
    assert_eq!(d.state.status, RequestStatus::Expired);
    assert_eq!(d.state.step("a").unwrap().status, StepStatus::Expired);
    assert!(d.state.timers().is_empty());
}

#[test]
fn request_expires_in() {
    let p = policy("id: t\nexpires_in: 2h\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n");
    let s = submit(&p, json!({}));
    assert_eq!(s.expires_at, Some(at(120)));
    let d = tick(&p, &s, 121);
    assert_eq!(d.state.status, RequestStatus::Expired);
    assert_eq!(code(&act(&p, &d.state, "mark", approve("a"))), "request_closed");
}

#[test]
fn escalation_ladder_fires_each_level_once_in_order() {
    let p = policy("id: t\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    sla: 4h\n    escalation:\n      - {after: 2h, to: {users: [vp-sales]}}\n      - {after: 3h, to: {groups: [finance]}}\n");
    let s = submit(&p, json!({}));
    let next = s.step("a").unwrap().next_timer.clone().unwrap();
    assert_eq!((next.kind, next.at, next.level), (TimerKind::Escalation, at(120), Some(1)));
    let d = tick(&p, &s, 120);
    let s = d.state;
    assert_eq!(s.step("a").unwrap().escalation_level, 1);
    assert_eq!(s.step("a").unwrap().approvers, ["mark", "vp-sales"]);
    assert!(matches!(&d.events[0].kind, EventKind::Escalated { level: 1, added, .. } if added == &["vp-sales"]));
    assert_eq!(tick(&p, &s, 150).outcome, Outcome::Unchanged);
    // Down for a while: level 2 and then the timeout fire, in order, on the next tick.
    let d = tick(&p, &s, 300);
    let kinds: Vec<String> = d.events.iter().map(|e| match &e.kind {
        EventKind::Escalated { level, .. } => format!("escalated:{level}"),
        other => other.type_name().to_string(),
    }).collect();
    assert_eq!(kinds, ["escalated:2", "step_timed_out", "step_decided", "expired"]);
}

#[test]
fn escalated_approvers_can_decide() {
    let p = policy("id: t\nsteps:\n  - {id: a, approvers: {users: [mark]}, escalation: [{after: 1h, to: {users: [vp-sales]}}]}\n");
    let s = tick(&p, &submit(&p, json!({})), 60).state;
    assert_eq!(ok(&p, &s, "vp-sales", approve("a")).status, RequestStatus::Approved);
}

#[test]
fn reminders_go_to_those_who_have_not_acted_until_the_step_closes() {
    let p = policy("id: t\nsteps:\n  - {id: a, approvers: {groups: [finance]}, quorum: 2, remind_every: 1h}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "fiona", approve("a"));
    let d = tick(&p, &s, 60);
    assert!(matches!(&d.events[0].kind, EventKind::Reminded { to, round: 1, .. } if to == &["frank"]));
    assert_eq!(tick(&p, &d.state, 90).outcome, Outcome::Unchanged);
    // Missed rounds are covered by one reminder.
    let d = tick(&p, &d.state, 310);
    assert_eq!(d.events.len(), 1);
    assert!(matches!(&d.events[0].kind, EventKind::Reminded { round: 5, .. }));
    assert_eq!(d.state.step("a").unwrap().next_timer.as_ref().unwrap().at, at(360));
    let s = machine::decide(&p, &directory(), &d.state, &Command { actor: "frank".into(), action: approve("a") }, at(320)).state;
    assert_eq!(s.status, RequestStatus::Approved);
    assert!(s.timers().is_empty());
    assert_eq!(tick(&p, &s, 1000).outcome, Outcome::Unchanged);
}

#[test]
fn cancelling_voids_timers_and_a_decision_beats_a_later_timer() {
    let p = policy("id: t\nexpires_in: 1h\nsteps:\n  - {id: a, approvers: {users: [mark]}, sla: 30m, remind_every: 10m}\n");
    let s = submit(&p, json!({}));
    assert_eq!(s.timers().len(), 3);
    let cancelled = ok(&p, &s, "alice", Action::Cancel { comment: None });
    assert!(cancelled.timers().is_empty());
    assert_eq!(cancelled.next_timer_at, None);
    assert_eq!(tick(&p, &cancelled, 120).outcome, Outcome::Unchanged);
    // The human decision committed first: the timeout then finds nothing to do.
    let approved = ok(&p, &s, "mark", approve("a"));
    assert_eq!(tick(&p, &approved, 45).outcome, Outcome::Unchanged);
    // The timeout committed first: the human's approval is refused.
    let expired = tick(&p, &s, 45).state;
    assert_eq!(code(&act(&p, &expired, "mark", approve("a"))), "request_closed");
}

fn kinds(d: &machine::Decision) -> Vec<String> {
    d.events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Escalated { level, added, .. } => format!("escalated:{level}:{}", added.join("+")),
            EventKind::StepTimedOut { action, .. } => format!("step_timed_out:{}", serde_json::to_value(action).unwrap().as_str().unwrap()),
            other => other.type_name().to_string(),
        })
        .collect()
}

#[test]
fn on_timeout_escalate_fires_the_next_level_then_the_last_action() {
    // "SLA 1 day, then escalate to a director": each timeout adds the next level and a new day.
    let p = policy(
        "id: t\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    sla: 1d\n    on_timeout: escalate\n    on_last_timeout: reject\n    escalation:\n      - {after: 2h, to: {users: [fiona]}}\n      - {to: {users: [vp-sales]}}\n      - {to: {users: [dana]}}\n",
    );
    let s = submit(&p, json!({}));
    assert_eq!(s.step("a").unwrap().escalation_at, [at(120)], "only levels with `after` have a time of their own");
    let d = tick(&p, &s, 120);
    assert_eq!(kinds(&d), ["escalated:1:fiona"]);
    let d = tick(&p, &d.state, 24 * 60);
    assert_eq!(kinds(&d), ["step_timed_out:escalate", "escalated:2:vp-sales"]);
    assert!(matches!(&d.events[0].kind, EventKind::StepTimedOut { next_due: Some(n), .. } if *n == at(48 * 60)));
    let s = d.state;
    assert_eq!(s.status, RequestStatus::Pending);
    assert_eq!(s.step("a").unwrap().due_at, Some(at(48 * 60)), "a new due time");
    assert_eq!(s.step("a").unwrap().approvers, ["mark", "fiona", "vp-sales"]);
    assert_eq!(tick(&p, &s, 47 * 60).outcome, Outcome::Unchanged, "each level fires once");
    // A day late (the server was down): one level, and a full sla from now.
    let d = tick(&p, &s, 72 * 60);
    assert_eq!(kinds(&d), ["step_timed_out:escalate", "escalated:3:dana"]);
    assert_eq!(d.state.step("a").unwrap().due_at, Some(at(96 * 60)));
    let d = tick(&p, &d.state, 96 * 60);
    assert_eq!(kinds(&d), ["step_timed_out:reject", "step_decided", "completed"]);
    assert_eq!(d.state.status, RequestStatus::Rejected);
    assert!(d.state.timers().is_empty());
}

#[test]
fn on_timeout_escalate_without_a_last_action_expires() {
    let p = policy("id: t\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    sla: 1h\n    on_timeout: escalate\n    escalation: [{to: {users: [vp-sales]}}]\n");
    let s = submit(&p, json!({}));
    let d = tick(&p, &s, 60);
    assert_eq!(kinds(&d), ["step_timed_out:escalate", "escalated:1:vp-sales"]);
    let s = ok(&p, &d.state, "vp-sales", approve("a"));
    assert_eq!(s.status, RequestStatus::Approved, "the escalated approver can decide");
    let d = tick(&p, &d.state, 120);
    assert_eq!(kinds(&d), ["step_timed_out:expire", "step_decided", "expired"]);
}

#[test]
fn on_timeout_escalate_is_checked() {
    for (doc, path) in [
        ("  - {id: a, approvers: {users: [mark]}, on_timeout: escalate, escalation: [{to: {users: [v]}}]}\n", "steps.a.on_timeout"),
        ("  - {id: a, approvers: {users: [mark]}, sla: 1h, on_timeout: escalate}\n", "steps.a.on_timeout"),
        ("  - {id: a, approvers: {users: [mark]}, sla: 1h, on_last_timeout: reject}\n", "steps.a.on_last_timeout"),
        ("  - {id: a, approvers: {users: [mark]}, sla: 1h, on_timeout: escalate, on_last_timeout: escalate, escalation: [{to: {users: [v]}}]}\n", "steps.a.on_last_timeout"),
        ("  - {id: a, approvers: {users: [mark]}, sla: 1h, escalation: [{to: {users: [v]}}]}\n", "steps.a.escalation[0].after"),
        ("  - {id: a, approvers: {users: [mark]}, sla: 1h, on_timeout: escalate, escalation: [{to: {users: [v]}}, {after: 2h, to: {users: [w]}}]}\n", "steps.a.escalation[1].after"),
    ] {
        let problems = Policy::from_yaml(&format!("id: t\nsteps:\n{doc}")).unwrap_err();
        assert!(problems.iter().any(|p| p.path == path), "{doc}: {problems:?}");
    }
}
