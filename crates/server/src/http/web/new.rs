//! A new request: pick a policy, fill in its context (a JSON editor, started from the policy's
//! `context_schema`), preview the plan it would get (`Service::plan`, nothing stored), then
//! submit it once (an idempotency key drawn with the page).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signoff_api::{PlanBody, SubmitBody};
use signoff_engine::RequestState;

use super::{AppState, Page, Visitor};
use crate::error::Problem;
use crate::service::{IdempotencyKey, Replied};

/// A starting context from a schema: each property with an empty value of its type.
fn skeleton(schema: &Value) -> Value {
    let Some(props) = schema["properties"].as_object() else { return json!({}) };
    let mut out = Map::new();
    for (name, p) in props {
        let v = match p["type"].as_str() {
            Some("string") => json!(""),
            Some("integer") | Some("number") => p.get("minimum").cloned().unwrap_or(json!(0)),
            Some("boolean") => json!(false),
            Some("array") => json!([]),
            Some("object") => skeleton(p),
            _ => Value::Null,
        };
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

struct PolicyOption {
    id: String,
    label: String,
}

/// One step of a previewed plan.
struct PlannedView {
    id: String,
    status: &'static str,
    approvers: String,
    why: String,
}

#[derive(askama::Template)]
#[template(path = "new.html")]
struct NewPage {
    user: String,
    csrf: String,
    admin: bool,
    key: String,
    policies: Vec<PolicyOption>,
    policy: String,
    title: String,
    subject: String,
    context: String,
    evidence: String,
    problem: Option<String>,
    errors: Vec<String>,
    plan: Vec<PlannedView>,
}

#[derive(Deserialize, Default)]
pub(super) struct Choose {
    policy: Option<String>,
}

#[derive(Deserialize, Default)]
struct NewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    intent: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    context: String,
    #[serde(default)]
    evidence: String,
}

impl NewPage {
    fn blank(s: &AppState, visitor: &Visitor, form: &NewForm) -> NewPage {
        let catalog = s.catalog();
        let policies = catalog
            .policies
            .values()
            .map(|p| PolicyOption { id: p.id.clone(), label: p.title.clone().map_or_else(|| p.id.clone(), |t| format!("{t} ({})", p.id)) })
            .collect();
        let context = if form.context.trim().is_empty() {
            catalog.policies.get(&form.policy).map(|p| serde_json::to_string_pretty(&skeleton(&p.source["context_schema"])).unwrap_or_default()).unwrap_or_else(|| "{}".into())
        } else {
            form.context.clone()
        };
        NewPage {
            user: visitor.caller.id.clone(),
            csrf: visitor.csrf.clone(),
            admin: visitor.caller.admin,
            key: if form.key.is_empty() { format!("web-new-{}", uuid::Uuid::now_v7().simple()) } else { form.key.clone() },
            policies,
            policy: form.policy.clone(),
            title: form.title.clone(),
            subject: form.subject.clone(),
            context,
            evidence: form.evidence.clone(),
            problem: None,
            errors: Vec::new(),
            plan: Vec::new(),
        }
    }

    fn refused(mut self, e: Problem) -> Response {
        self.errors = e.extra.as_ref().and_then(|x| x["errors"].as_array()).map(|a| a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect()).unwrap_or_default();
        self.problem = Some(super::sentence(&e));
        Page::of(super::super::problem::status(e.code), &self).into_response()
    }
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, q: Result<Query<Choose>, QueryRejection>) -> Response {
    let policy = q.ok().and_then(|Query(c)| c.policy).unwrap_or_default();
    let form = NewForm { policy, ..Default::default() };
    Page::of(StatusCode::OK, &NewPage::blank(&s, &visitor, &form)).into_response()
}

fn evidence(text: &str) -> Vec<Value> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|url| json!({ "url": url })).collect()
}

fn plan_view(state: &RequestState) -> Vec<PlannedView> {
    state
        .steps
        .iter()
        .map(|s| PlannedView {
            id: s.id.clone(),
            status: s.status.as_str(),
            approvers: s.approvers.join(", "),
            why: s.skipped_because.clone().or_else(|| s.reason.clone()).unwrap_or_default(),
        })
        .collect()
}

/// The form's two buttons: preview the plan, or submit.
pub(super) async fn post(State(s): State<AppState>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    let form: NewForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !visitor.posted_here(&form.csrf, &headers) {
        return Page::not_ours();
    }
    let mut view = NewPage::blank(&s, &visitor, &form);
    let context: Value = match serde_json::from_str(&form.context) {
        Ok(c) => c,
        Err(e) => return view.refused(Problem::new(signoff_engine::Code::MalformedJson, format!("the context is not valid JSON: {e}"))),
    };
    if form.intent == "preview" {
        return match s.plan(&visitor.caller, &form.policy, PlanBody { context, requester: None }) {
            Ok(state) => {
                view.plan = plan_view(&state);
                Page::of(StatusCode::OK, &view).into_response()
            }
            Err(e) => view.refused(e),
        };
    }
    let nonempty = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    let submit = SubmitBody {
        policy: form.policy.clone(),
        title: nonempty(&form.title),
        subject: nonempty(&form.subject),
        context,
        evidence: evidence(&form.evidence),
        resubmits: None,
    };
    let fingerprint = signoff_engine::canonical::digest(&json!({ "route": "web new", "policy": form.policy, "context": submit.context, "title": submit.title, "subject": submit.subject }));
    let key = Some(IdempotencyKey { key: view.key.clone(), fingerprint });
    match s.submit(&visitor.caller, submit, key).await {
        Ok(reply) if reply.kind == Replied::Created || reply.kind.is_success() => {
            let id = reply.json()["id"].as_str().unwrap_or_default().to_string();
            Redirect::to(&format!("/requests/{id}")).into_response()
        }
        Ok(reply) => view.refused(Problem::from_body(&reply.json())),
        Err(e) => view.refused(e),
    }
}
