//! The HTTP API's wire types, shared by the server (which answers with them) and the CLI (which
//! reads them): the bodies a client sends (a submission, an action as one tagged enum, a plan),
//! the bodies it gets back (pages and lists, who it is, the policies), the problem of a
//! refusal, and the typed ids.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use signoff_engine::{Code, Event, LineageId, RequestId, RequestState};
pub use signoff_store::{DeliveryReport, Task};

/// `POST /v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub policy: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: Value,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub evidence: Vec<Value>,
    /// The earlier request (rejected, expired or cancelled) this one re-submits.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub resubmits: Option<RequestId>,
}

/// `POST /v1/requests/{id}/actions`: what was done, with exactly the fields it takes. Sent as
/// an object tagged by `action`; read through `ActionFields`, so that fields another action
/// takes may be present as `null` and a missing one is named in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", try_from = "ActionFields")]
pub enum ActionBody {
    Approve {
        step: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// Approve with edits: new values of top-level context keys the step allows.
        #[serde(skip_serializing_if = "Option::is_none")]
        edits: Option<Value>,
    },
    Reject {
        step: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    Acknowledge {
        step: String,
        item: String,
    },
    Delegate {
        step: String,
        to: String,
    },
    Comment {
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        comment: String,
    },
    Cancel {
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
}

/// Every field an action body may carry: the shape the API documents and reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ActionBody))]
#[serde(deny_unknown_fields)]
pub struct ActionFields {
    /// approve | reject | acknowledge | delegate | comment | cancel
    pub action: String,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub edits: Option<Value>,
    /// The acknowledged item, for `acknowledge`.
    #[serde(default)]
    pub item: Option<String>,
    /// The delegate, for `delegate`.
    #[serde(default)]
    pub to: Option<String>,
}

impl TryFrom<ActionFields> for ActionBody {
    type Error = String;

    fn try_from(f: ActionFields) -> Result<ActionBody, String> {
        let action = f.action;
        let need = |v: Option<String>, what: &str| v.ok_or_else(|| format!("`{what}` is required for action `{action}`"));
        Ok(match action.as_str() {
            "approve" => ActionBody::Approve { step: need(f.step, "step")?, comment: f.comment, edits: f.edits },
            "reject" => ActionBody::Reject { step: need(f.step, "step")?, comment: f.comment },
            "acknowledge" => ActionBody::Acknowledge { step: need(f.step, "step")?, item: need(f.item, "item")? },
            "delegate" => ActionBody::Delegate { step: need(f.step, "step")?, to: need(f.to, "to")? },
            "comment" => ActionBody::Comment { step: f.step, comment: need(f.comment, "comment")? },
            "cancel" => ActionBody::Cancel { comment: f.comment },
            other => return Err(format!("unknown action `{other}` (approve, reject, acknowledge, delegate, comment, cancel)")),
        })
    }
}

impl From<ActionBody> for signoff_engine::Action {
    fn from(body: ActionBody) -> Self {
        use signoff_engine::Action;
        match body {
            ActionBody::Approve { step, comment, edits } => Action::Approve { step, comment, edits },
            ActionBody::Reject { step, comment } => Action::Reject { step, comment },
            ActionBody::Acknowledge { step, item } => Action::Acknowledge { step, item },
            ActionBody::Delegate { step, to } => Action::Delegate { step, to },
            ActionBody::Comment { step, comment } => Action::Comment { step, comment },
            ActionBody::Cancel { comment } => Action::Cancel { comment },
        }
    }
}

/// `POST /v1/policies/{id}/plan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: Value,
    /// Plan as this requester; the caller by default.
    #[serde(default)]
    pub requester: Option<String>,
}

/// A page of `GET /v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestPage {
    pub items: Vec<RequestState>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/requests/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventList {
    pub items: Vec<Event>,
}

/// `GET /v1/inbox` and `GET /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inbox {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<Task>,
}

/// `GET /v1/requests/{id}/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<DeliveryReport>,
}

/// `GET /v1/me`: the caller's directory entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub manager: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
}

/// A directory user, as a search for people to delegate to shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: String,
    pub name: Option<String>,
}

/// `GET /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    pub items: Vec<UserSummary>,
}

/// A loaded policy, in `GET /v1/policies` and `POST /v1/admin/reload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub id: String,
    pub title: Option<String>,
    pub version: u64,
    pub hash: String,
}

/// `GET /v1/policies`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyList {
    pub items: Vec<PolicySummary>,
}

/// A refusal as a client reads it (RFC 9457 `application/problem+json`). `code` stays text, so
/// a client can read a code newer than itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    pub code: String,
    pub detail: String,
    #[serde(default)]
    pub status: u16,
    /// Each problem, where there are several (an invalid context or policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Value>,
}

impl Problem {
    /// The code, if this client knows it.
    pub fn known_code(&self) -> Option<Code> {
        Code::parse(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_action_reads_with_nulls_and_says_what_is_missing() {
        let a: ActionBody = serde_json::from_value(json!({"action": "approve", "step": "s", "to": null, "item": null})).unwrap();
        assert_eq!(a, ActionBody::Approve { step: "s".into(), comment: None, edits: None });
        let e = serde_json::from_value::<ActionBody>(json!({"action": "approve"})).unwrap_err().to_string();
        assert!(e.contains("`step` is required for action `approve`"), "{e}");
        let e = serde_json::from_value::<ActionBody>(json!({"action": "fly"})).unwrap_err().to_string();
        assert!(e.contains("unknown action `fly`"), "{e}");
        assert!(serde_json::from_value::<ActionBody>(json!({"action": "cancel", "colour": 1})).is_err());
    }

    #[test]
    fn an_action_is_sent_with_its_own_fields() {
        let a = ActionBody::Acknowledge { step: "deploy".into(), item: "backup".into() };
        assert_eq!(serde_json::to_value(&a).unwrap(), json!({"action": "acknowledge", "step": "deploy", "item": "backup"}));
        let back: ActionBody = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
