//! Scenario tests of the state machine: one workflow pattern per test.

use crate::common::*;
use serde_json::json;
use signoff_engine::machine::{self, Action, Outcome, Submission};
use signoff_engine::{EventKind, RequestStatus, StepStatus};

const QUOTE: &str = include_str!("../../../../examples/policies/quote-discount.yaml");

#[test]
fn golden_path_manager_and_finance_approve() {
    let p = policy(QUOTE);
    let s = submit(&p, quote(48000, 0.18, 0.21));
    assert_eq!(s.current_tasks, ["manager", "finance"]);
    assert_eq!(s.pending_reasons, ["discount above 10%", "margin below floor"]);
    assert_eq!(s.step("legal").unwrap().status, StepStatus::Skipped, "standard clause: no legal review");
    assert_eq!(s.step("manager").unwrap().approvers, ["mark"]);
    let s = ok(&p, &s, "mark", approve("manager"));
    assert_eq!(s.status, RequestStatus::Pending);
    let s = ok(&p, &s, "fiona", approve("finance"));
    assert_eq!(s.status, RequestStatus::Approved);
    assert_eq!(s.step("legal").unwrap().status, StepStatus::Skipped);
}

#[test]
fn exclusive_choice_by_when_and_all_skipped_approves() {
    let p = policy(QUOTE);
    let s = submit(&p, quote(48000, 0.05, 0.30));
    assert_eq!(s.status, RequestStatus::Approved);
    assert!(s.steps.iter().all(|st| st.status == StepStatus::Skipped));
    assert!(s.step("manager").unwrap().skipped_because.as_ref().unwrap().contains("quote.discount > 0.10"));
}

#[test]
fn auto_approve_plans_no_step() {
    let p = policy(QUOTE);
    let s = submit(&p, quote(500, 0.5, 0.1));
    assert_eq!(s.status, RequestStatus::Approved);
    assert!(s.steps.is_empty());
}

#[test]
fn sequence_activates_in_order() {
    let p = policy("id: seq\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n  - {id: b, approvers: {users: [fiona]}}\n");
    let s = submit(&p, json!({}));
    assert_eq!(s.current_tasks, ["a"]);
    let d = act(&p, &s, "fiona", approve("b"));
    assert_eq!(code(&d), "step_not_active");
    let s = ok(&p, &d.state, "mark", approve("a"));
    assert_eq!(s.current_tasks, ["b"]);
    let s = ok(&p, &s, "fiona", approve("b"));
    assert_eq!(s.status, RequestStatus::Approved);
}

#[test]
fn any_of_group_needs_one() {
    let p = policy("id: any\nsteps:\n  - {id: f, approvers: {groups: [finance]}}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "frank", approve("f"));
    assert_eq!(s.status, RequestStatus::Approved);
    assert_eq!(code(&act(&p, &s, "fiona", approve("f"))), "request_closed");
}

#[test]
fn two_of_three_with_rejection_threshold() {
    let p = policy("id: sre\nsteps:\n  - {id: sre, approvers: {groups: [sre]}, quorum: 2, rejections: 2}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "sam", reject("sre"));
    assert_eq!(s.status, RequestStatus::Pending, "one rejection is below the threshold");
    let s = ok(&p, &s, "sue", approve("sre"));
    let s = ok(&p, &s, "sid", approve("sre"));
    assert_eq!(s.status, RequestStatus::Approved);

    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "sam", reject("sre"));
    let s = ok(&p, &s, "sue", reject("sre"));
    assert_eq!(s.status, RequestStatus::Rejected);
}

#[test]
fn unreachable_quorum_rejects() {
    let p = policy("id: sre\nsteps:\n  - {id: sre, approvers: {groups: [sre]}, quorum: 3, rejections: 3}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "sam", reject("sre"));
    assert_eq!(s.status, RequestStatus::Rejected);
    assert_eq!(s.step("sre").unwrap().decision_reason.as_deref(), Some("quorum can no longer be reached"));
}

#[test]
fn quorum_all_needs_everyone() {
    let p = policy("id: all\nsteps:\n  - {id: f, approvers: {groups: [finance]}, quorum: all}\n");
    let s = submit(&p, json!({}));
    assert_eq!(serde_json::to_value(s.step("f").unwrap().quorum).unwrap(), json!(2));
    let s = ok(&p, &s, "fiona", approve("f"));
    assert_eq!(s.status, RequestStatus::Pending);
    let s = ok(&p, &s, "frank", approve("f"));
    assert_eq!(s.status, RequestStatus::Approved);
}

#[test]
fn rejection_closes_the_request_and_cancels_open_steps() {
    let p = policy(QUOTE);
    let s = submit(&p, quote(48000, 0.18, 0.21));
    let d = act(&p, &s, "fiona", Action::Reject { step: "finance".into(), comment: None });
    assert_eq!(code(&d), "comment_required");
    assert!(d.events.is_empty());
    let s = ok(&p, &s, "fiona", reject("finance"));
    assert_eq!(s.status, RequestStatus::Rejected);
    assert_eq!(s.step("manager").unwrap().status, StepStatus::Cancelled);
    assert_eq!(s.step("legal").unwrap().status, StepStatus::Skipped, "skipped steps stay skipped");
    let d = act(&p, &s, "mark", approve("manager"));
    assert_eq!(code(&d), "request_closed");
    assert_eq!(d.state.status, RequestStatus::Rejected);
    assert!(matches!(d.events[0].kind, EventKind::Refused { .. }));
}

#[test]
fn cancellation_by_requester_or_admin_only() {
    let p = policy(QUOTE);
    let s = submit(&p, quote(48000, 0.18, 0.21));
    assert_eq!(code(&act(&p, &s, "mark", Action::Cancel { comment: None })), "forbidden");
    let s2 = ok(&p, &s, "alice", Action::Cancel { comment: Some("dup".into()) });
    assert_eq!(s2.status, RequestStatus::Cancelled);
    assert!(s2.steps.iter().all(|st| !st.status.is_open()));
    let s3 = ok(&p, &s, "root", Action::Cancel { comment: None });
    assert_eq!(s3.status, RequestStatus::Cancelled);
}

#[test]
fn separation_of_duties() {
    // mark is in both steps: after deciding one he may not decide the other.
    let p = policy("id: sod\nsteps:\n  - {id: a, after: [], approvers: {users: [mark, fiona]}}\n  - {id: b, after: [], approvers: {users: [mark, frank]}}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "mark", approve("a"));
    assert_eq!(code(&act(&p, &s, "mark", approve("b"))), "separation_of_duties");
    // The requester never approves their own request.
    let p = policy("id: own\nsteps:\n  - {id: a, approvers: {users: [alice, mark]}}\n");
    let s = submit(&p, json!({}));
    assert_eq!(s.step("a").unwrap().approvers, ["mark"]);
    assert_eq!(code(&act(&p, &s, "alice", approve("a"))), "separation_of_duties");
    // With the requester as the only approver, nobody is eligible.
    let p = policy("id: solo\nsteps:\n  - {id: a, approvers: {users: [alice]}}\n");
    let sub = Submission { id: "r".into(), requester: "alice".into(), title: None, subject: None, context: json!({}), evidence: vec![], lineage: None, resubmits: None };
    assert_eq!(machine::submit(&p, &directory(), sub, t0()).unwrap_err().code(), "no_eligible_approvers");
}

#[test]
fn capability_check_with_eligible_if() {
    let p = policy("id: cap\nsteps:\n  - {id: a, approvers: {users: [mark, vp-sales]}, eligible_if: 'approver.attributes.approval_limit >= quote.total'}\n");
    let s = submit(&p, quote(80000, 0.1, 0.3));
    assert_eq!(s.step("a").unwrap().approvers, ["vp-sales"]);
    assert_eq!(code(&act(&p, &s, "mark", approve("a"))), "not_an_approver");
    // A user without the attribute is a planning error naming the step and expression.
    let p = policy("id: cap2\nsteps:\n  - {id: a, approvers: {users: [fiona]}, eligible_if: 'approver.attributes.approval_limit >= 1'}\n");
    let sub = Submission { id: "r".into(), requester: "alice".into(), title: None, subject: None, context: json!({}), evidence: vec![], lineage: None, resubmits: None };
    let err = machine::submit(&p, &directory(), sub, t0()).unwrap_err();
    assert_eq!(err.code(), "planning_error");
    assert!(err.to_string().contains("step `a`") && err.to_string().contains("approval_limit"), "{err}");
}

#[test]
fn delegation_moves_the_slot() {
    let p = policy("id: del\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n");
    let s = submit(&p, json!({}));
    assert_eq!(code(&act(&p, &s, "mark", Action::Delegate { step: "a".into(), to: "alice".into() })), "separation_of_duties");
    assert_eq!(code(&act(&p, &s, "mark", Action::Delegate { step: "a".into(), to: "nobody".into() })), "unknown_user");
    let s = ok(&p, &s, "mark", Action::Delegate { step: "a".into(), to: "dana".into() });
    assert_eq!(s.step("a").unwrap().approvers, ["dana"]);
    assert_eq!(code(&act(&p, &s, "mark", approve("a"))), "not_an_approver");
    let s = ok(&p, &s, "dana", approve("a"));
    assert_eq!(s.status, RequestStatus::Approved);
}

#[test]
fn acks_gate_approvals() {
    let p = policy("id: acks\nsteps:\n  - {id: a, approvers: {groups: [sre]}, require_acks: [rollback, window]}\n");
    let s = submit(&p, json!({}));
    let d = act(&p, &s, "sam", approve("a"));
    assert_eq!(code(&d), "acks_pending");
    let s = d.state;
    assert_eq!(code(&act(&p, &s, "sam", Action::Acknowledge { step: "a".into(), item: "nope".into() })), "not_found", "an unknown checklist item is a missing resource");
    let s = ok(&p, &s, "sam", Action::Acknowledge { step: "a".into(), item: "rollback".into() });
    assert_eq!(code(&act(&p, &s, "sam", approve("a"))), "acks_pending");
    let s = ok(&p, &s, "sue", Action::Acknowledge { step: "a".into(), item: "window".into() });
    let s = ok(&p, &s, "sam", approve("a"));
    assert_eq!(s.status, RequestStatus::Approved);
}

#[test]
fn edits_are_validated_and_merged() {
    let p = policy(include_str!("../../../../examples/policies/prod-deploy.yaml"));
    let s = submit(&p, json!({"replicas": 3, "canary_percent": 10, "service": "api"}));
    for (actor, item) in [("sam", "rollback-plan-reviewed"), ("sam", "change-window-ok")] {
        let _ = act(&p, &s, actor, Action::Acknowledge { step: "sre".into(), item: item.into() });
    }
    let s = ok(&p, &s, "sam", Action::Acknowledge { step: "sre".into(), item: "rollback-plan-reviewed".into() });
    let s = ok(&p, &s, "sam", Action::Acknowledge { step: "sre".into(), item: "change-window-ok".into() });
    let edit = |edits| Action::Approve { step: "sre".into(), comment: None, edits: Some(edits) };
    let d = act(&p, &s, "sam", edit(json!({"service": "db"})));
    assert_eq!(code(&d), "edit_key_not_allowed");
    assert!(matches!(d.events[0].kind, EventKind::EditsRefused { .. }));
    let d = act(&p, &s, "sam", edit(json!({"canary_percent": 500})));
    assert_eq!(code(&d), "edit_schema_invalid");
    match &d.outcome {
        Outcome::Refused(r) => assert!(r.detail.contains("canary_percent must be between 1 and 100"), "{}", r.detail),
        _ => unreachable!(),
    }
    let d = act(&p, &s, "sam", edit(json!({"replicas": 12345678901234567i64})));
    assert_eq!(code(&d), "edit_schema_invalid");
    let s = ok(&p, &s, "sam", edit(json!({"canary_percent": 5})));
    assert_eq!(s.effective_context["canary_percent"], 5);
    assert_eq!(s.context["canary_percent"], 10);
}

#[test]
fn edit_diff_limit() {
    let p = policy("id: e\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    edits: {allowed_keys: [note], max_diff_chars: 5}\n");
    let s = submit(&p, json!({"note": "x"}));
    let d = act(&p, &s, "mark", Action::Approve { step: "a".into(), comment: None, edits: Some(json!({"note": "much too long"})) });
    assert_eq!(code(&d), "edit_diff_too_large");
}

#[test]
fn duplicate_approval_is_harmless() {
    let p = policy("id: dup\nsteps:\n  - {id: a, approvers: {groups: [finance]}, quorum: 2}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "fiona", approve("a"));
    let d = act(&p, &s, "fiona", approve("a"));
    assert_eq!(d.outcome, Outcome::Unchanged);
    assert!(d.events.is_empty());
    assert_eq!(d.state, s);
}

#[test]
fn out_of_office_applies_at_resolution() {
    let dir = signoff_engine::Directory::from_yaml(&format!(
        "{DIRECTORY}delegations:\n  - {{from: mark, to: dana, starts: 2026-11-01T00:00:00Z, ends: 2026-12-01T00:00:00Z}}\n"
    ))
    .unwrap();
    let p = policy(QUOTE);
    let sub = Submission { id: "r".into(), requester: "alice".into(), title: None, subject: None, context: quote(48000, 0.18, 0.21), evidence: vec![], lineage: None, resubmits: None };
    let (events, s) = machine::submit(&p, &dir, sub, t0()).unwrap();
    assert_eq!(s.step("manager").unwrap().approvers, ["dana"]);
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::StepActivated { substitutions, .. } if !substitutions.is_empty())));
}

#[test]
fn later_activation_without_approvers_rejects() {
    let p = policy("id: late\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n  - {id: b, approvers: {groups: [nobody-group]}}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "mark", approve("a"));
    assert_eq!(s.status, RequestStatus::Rejected);
    assert!(s.decision_reason.unwrap().starts_with("no_eligible_approvers"));
}

#[test]
fn context_schema_and_planning_errors() {
    let p = policy(QUOTE);
    let sub = |context| Submission { id: "r".into(), requester: "alice".into(), title: None, subject: None, context, evidence: vec![], lineage: None, resubmits: None };
    assert_eq!(machine::submit(&p, &directory(), sub(json!({"x": 1})), t0()).unwrap_err().code(), "invalid_context");
    assert_eq!(machine::submit(&p, &directory(), sub(json!([1])), t0()).unwrap_err().code(), "invalid_context");
    let p2 = policy("id: p\nsteps:\n  - {id: a, when: 'quote.missing > 1', approvers: {users: [mark]}}\n");
    let err = machine::submit(&p2, &directory(), sub(json!({"quote": {}})), t0()).unwrap_err();
    assert_eq!(err.code(), "planning_error");
    assert!(err.to_string().contains("quote.missing > 1"));
}

#[test]
fn skipping_is_transitive_in_a_sequence() {
    let p = policy("id: s\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n  - {id: b, when: 'x > 1', approvers: {users: [fiona]}}\n  - {id: c, approvers: {users: [lena]}}\n");
    let s = submit(&p, json!({"x": 0}));
    assert_eq!(s.step("b").unwrap().status, StepStatus::Skipped);
    assert_eq!(s.current_tasks, ["a"], "c still waits for a through the skipped b");
    let s = ok(&p, &s, "mark", approve("a"));
    assert_eq!(s.current_tasks, ["c"]);
}

#[test]
fn a_shared_approver_who_decided_elsewhere_leaves_the_other_step() {
    let p = policy("id: shared\nsteps:\n  - {id: a, after: [], approvers: {users: [mark]}}\n  - {id: b, after: [], approvers: {users: [mark, fiona]}, quorum: all}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "mark", approve("a"));
    assert_eq!(s.status, RequestStatus::Rejected, "b can never get mark's approval now");
    assert_eq!(s.step("b").unwrap().decision_reason.as_deref(), Some("quorum can no longer be reached"));

    let p = policy("id: shared2\nsteps:\n  - {id: a, after: [], approvers: {users: [mark]}}\n  - {id: b, after: [], approvers: {users: [mark, fiona]}}\n");
    let s = submit(&p, json!({}));
    let s = ok(&p, &s, "mark", approve("a"));
    let tasks: Vec<(&str, &str)> = s.open_tasks().iter().map(|(st, a)| (st.id.as_str(), *a)).collect();
    assert_eq!(tasks, [("b", "fiona")], "mark's slot on b is no longer an open task");
}
