//! The planner: resolves who may approve a step at activation, and which waiting steps are
//! ready to activate. Deterministic: the same policy, directory, context and time give the
//! same answer.

use jiff::Timestamp;
use serde_json::Value;

use crate::code::Code;
use crate::condition::{Vars, json_type};
use crate::directory::Directory;
use crate::event::Substitution;
use crate::policy::{ApproverSpec, Policy, Quorum, Separation, Step};
use crate::state::{RequestState, StepStatus};

/// Why a step could not get approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// A CEL expression failed at run time.
    Planning(String),
    NoEligibleApprovers(String),
    DelegationCycle(String),
}

impl ResolveError {
    pub fn code(&self) -> Code {
        match self {
            ResolveError::Planning(_) => Code::PlanningError,
            ResolveError::NoEligibleApprovers(_) => Code::NoEligibleApprovers,
            ResolveError::DelegationCycle(_) => Code::DelegationCycle,
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            ResolveError::Planning(d) | ResolveError::NoEligibleApprovers(d) | ResolveError::DelegationCycle(d) => d,
        }
    }
}

pub struct Resolved {
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub substitutions: Vec<Substitution>,
}

/// The variables of a request: its context keys and `requester`.
pub fn request_vars(dir: &Directory, context: &Value, requester: &str) -> Vars {
    Vars::from_context(context).with("requester", &dir.as_variable(requester))
}

/// The ids an approver spec names: users, members of groups, then what `expr` yields; unknown
/// users are dropped (they could never sign in to act).
pub fn named(spec: &ApproverSpec, dir: &Directory, vars: &Vars, step: &str) -> Result<Vec<String>, ResolveError> {
    let mut ids: Vec<String> = spec.users.clone();
    for g in &spec.groups {
        ids.extend(dir.group(g).unwrap_or_default().iter().cloned());
    }
    if let Some(expr) = &spec.expr {
        let planning = |m: String| {
            ResolveError::Planning(format!("step `{step}`: approvers.expr `{}`: {m}", expr.source()))
        };
        match expr.eval(vars).map_err(|e| planning(e.message))? {
            Value::Null => {}
            Value::String(s) => ids.push(s),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => ids.push(s),
                        other => return Err(planning(format!("yielded a list holding {}", json_type(&other)))),
                    }
                }
            }
            other => return Err(planning(format!("yielded {}, expected a user id or a list of ids", json_type(&other)))),
        }
    }
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        if dir.user(&id).is_some() && !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The people `spec` makes eligible for `step` now: named ids, out-of-office delegations
/// followed, separation of duties `sep` applied to the final delegates (the policy's; with none,
/// it says who would be eligible were it not for separation of duties), then `eligible_if`.
pub fn eligible(
    sep: Separation,
    step: &Step,
    spec: &ApproverSpec,
    dir: &Directory,
    state: &RequestState,
    vars: &mut Vars,
    now: Timestamp,
) -> Result<(Vec<String>, Vec<Substitution>), ResolveError> {
    let candidates = named(spec, dir, vars, &step.id)?;
    let mut substitutions = Vec::new();
    let mut approvers: Vec<String> = Vec::new();
    for id in candidates {
        let delegate = dir
            .final_delegate(&id, now)
            .map_err(|c| ResolveError::DelegationCycle(format!("step `{}`: {c}", step.id)))?;
        if delegate != id {
            substitutions.push(Substitution { from: id, to: delegate.clone() });
        }
        if !approvers.contains(&delegate) {
            approvers.push(delegate);
        }
    }
    approvers.retain(|a| {
        (sep.requester_can_approve || *a != state.requester)
            && !(sep.one_step_per_approver && state.decided_other_step(a, &step.id))
    });
    if let Some(cond) = &step.eligible_if {
        let mut kept = Vec::new();
        for a in approvers {
            vars.set("approver", &dir.as_variable(&a));
            let ok = cond.eval_bool(vars).map_err(|e| {
                ResolveError::Planning(format!("step `{}`: eligible_if {e} (approver `{a}`)", step.id))
            })?;
            if ok {
                kept.push(a);
            }
        }
        approvers = kept;
    }
    Ok((approvers, substitutions))
}

/// Resolves a step's approvers at activation; nobody eligible, or fewer than the quorum, is
/// `no_eligible_approvers`.
pub fn resolve(
    policy: &Policy,
    step: &Step,
    dir: &Directory,
    state: &RequestState,
    vars: &mut Vars,
    now: Timestamp,
) -> Result<Resolved, ResolveError> {
    let (approvers, substitutions) = eligible(policy.separation, step, &step.approvers, dir, state, vars, now)?;
    if approvers.is_empty() {
        return Err(ResolveError::NoEligibleApprovers(format!("step `{}` has no eligible approvers", step.id)));
    }
    let quorum = match step.quorum {
        Quorum::All => approvers.len() as u32,
        Quorum::Count(n) if n as usize > approvers.len() => {
            return Err(ResolveError::NoEligibleApprovers(format!(
                "step `{}` needs {n} approvals but has {} eligible approver(s)",
                step.id,
                approvers.len()
            )));
        }
        Quorum::Count(n) => n,
    };
    Ok(Resolved { approvers, quorum, substitutions })
}

/// Waiting steps whose `after` steps are all done, in policy order. A step is done when it is
/// approved, or skipped and its own `after` steps are done: skipping is transitive, so a skipped
/// step in a sequence still holds back the steps after it until what it waited for is done.
pub fn ready_steps(state: &RequestState) -> Vec<String> {
    fn done(state: &RequestState, id: &str, depth: usize) -> bool {
        // The policy's `after` graph is acyclic; the depth bound only guards against bad data.
        depth < 1024
            && state.step(id).is_some_and(|s| match s.status {
                StepStatus::Approved => true,
                StepStatus::Skipped => s.after.iter().all(|d| done(state, d, depth + 1)),
                _ => false,
            })
    }
    state
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Waiting && s.after.iter().all(|d| done(state, d, 0)))
        .map(|s| s.id.clone())
        .collect()
}
