//! Shared fixtures for the engine's tests: the demo directory and a policy builder.

use jiff::Timestamp;
use serde_json::{Value, json};
use signoff_engine::machine::{self, Action, Command, Decision, Outcome, Submission};
use signoff_engine::{Directory, Policy, RequestState};

pub const DIRECTORY: &str = r#"
users:
  - { id: alice, manager: mark }
  - { id: mark, attributes: { approval_limit: 50000 } }
  - { id: fiona }
  - { id: frank }
  - { id: lena }
  - { id: sam }
  - { id: sue }
  - { id: sid }
  - { id: dana }
  - { id: vp-sales, attributes: { approval_limit: 1000000 } }
  - { id: root }
groups:
  sales-managers: [mark]
  finance: [fiona, frank]
  legal: [lena]
  sre: [sam, sue, sid]
admins: [root]
"#;

pub fn directory() -> Directory {
    Directory::from_yaml(DIRECTORY).unwrap()
}

pub fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml).unwrap_or_else(|e| panic!("{e:#?}"))
}

pub fn t0() -> Timestamp {
    "2026-11-22T09:00:00Z".parse().unwrap()
}

pub fn submit(p: &Policy, context: Value) -> RequestState {
    submit_as(p, "alice", context)
}

pub fn submit_as(p: &Policy, requester: &str, context: Value) -> RequestState {
    let sub = Submission {
        id: "req_1".into(),
        requester: requester.into(),
        title: None,
        subject: None,
        context,
        evidence: vec![],
        lineage: None,
        resubmits: None,
    };
    machine::submit(p, &directory(), sub, t0()).unwrap_or_else(|e| panic!("{e}")).1
}

pub fn act(p: &Policy, state: &RequestState, actor: &str, action: Action) -> Decision {
    machine::decide(p, &directory(), state, &Command { actor: actor.into(), action }, t0())
}

pub fn approve(step: &str) -> Action {
    Action::Approve { step: step.into(), comment: None, edits: None }
}

pub fn reject(step: &str) -> Action {
    Action::Reject { step: step.into(), comment: Some("no".into()) }
}

/// Applies an action that must succeed and returns the new state.
pub fn ok(p: &Policy, state: &RequestState, actor: &str, action: Action) -> RequestState {
    let d = act(p, state, actor, action);
    assert_eq!(d.outcome, Outcome::Applied, "{actor}: {:?}", d.outcome);
    d.state
}

pub fn code(d: &Decision) -> &'static str {
    match &d.outcome {
        Outcome::Refused(r) | Outcome::Invalid(r) => r.code.as_str(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn quote(total: i64, discount: f64, margin: f64) -> Value {
    json!({"quote": {"total": total, "discount": discount, "margin": margin, "nonstandard_clause": false}})
}
