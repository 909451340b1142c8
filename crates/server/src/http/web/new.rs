//! A new request: pick a policy, fill in its context (a form built from the policy's
//! `context_schema`, or a JSON editor started from it where the schema is too loose for a form),
//! preview the plan it would get (`Service::plan`, nothing stored), then submit it once (an
//! idempotency key drawn with the page).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signoff_api::{PlanBody, SubmitBody};
use signoff_engine::RequestState;

use super::field::{self, Field};
use super::graph::Graph;
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

/// The fields of one object of the context: the top level (no legend), or one object in it.
struct Group {
    legend: String,
    fields: Vec<Field>,
}

/// The form for a context schema, showing `values`; `None` where the schema is too loose for one
/// (no properties, or a property that is neither a plain value nor an object of plain values).
fn form_of(schema: &Value, values: &Value) -> Option<Vec<Group>> {
    let props = schema.get("properties")?.as_object().filter(|p| !p.is_empty())?;
    let required = |s: &Value, k: &str| s["required"].as_array().is_some_and(|r| r.iter().any(|v| v == k));
    let leaf = |p: &Value, key: &str, path: &str, req: bool| {
        let mut f = Field::for_property(p, key, values.pointer(&format!("/{}", path.replace('.', "/"))), "", "ctx");
        f.name = format!("ctx.{path}");
        f.id = format!("ctx-{}", path.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        f.required = req;
        (!f.is("json")).then_some(f)
    };
    let mut top = Group { legend: String::new(), fields: Vec::new() };
    let mut groups = Vec::new();
    for (k, p) in props {
        match p.get("properties").and_then(Value::as_object) {
            Some(inner) if p["type"] == "object" || p.get("type").is_none() => {
                let mut g = Group { legend: p["title"].as_str().unwrap_or(k).to_string(), fields: Vec::new() };
                for (ik, ip) in inner {
                    g.fields.push(leaf(ip, ik, &format!("{k}.{ik}"), required(p, ik))?);
                }
                groups.push(g);
            }
            _ => top.fields.push(leaf(p, k, k, required(schema, k))?),
        }
    }
    if !top.fields.is_empty() {
        groups.insert(0, top);
    }
    Some(groups)
}

/// The context a form's fields spell, and the fields that could not be read (path, message).
fn context_from(groups: &[Group], typed: &[(String, String)]) -> (Value, Vec<(String, String)>) {
    let mut context = Value::Object(Map::new());
    let mut wrong = Vec::new();
    for f in groups.iter().flat_map(|g| &g.fields) {
        let path = f.name.trim_start_matches("ctx.");
        let text = typed.iter().find(|(n, _)| *n == f.name).map(|(_, v)| v.as_str()).unwrap_or_default();
        match Field::read(f.kind, text) {
            Ok(Some(v)) => {
                let mut at = &mut context;
                let parts: Vec<&str> = path.split('.').collect();
                for part in &parts[..parts.len() - 1] {
                    at = at.as_object_mut().map(|m| m.entry(part.to_string()).or_insert_with(|| json!({}))).expect("objects all the way");
                }
                if let Some(m) = at.as_object_mut() {
                    m.insert(parts[parts.len() - 1].to_string(), v);
                }
            }
            Ok(None) => {}
            Err(m) => wrong.push((path.to_string(), m)),
        }
    }
    (context, wrong)
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
    /// Whether the nav offers the Insights page.
    insights: bool,
    key: String,
    policies: Vec<PolicyOption>,
    policy: String,
    title: String,
    subject: String,
    context: String,
    /// The context as a form, unless the schema is too loose or JSON was asked for.
    groups: Option<Vec<Group>>,
    evidence: String,
    problem: Option<String>,
    errors: Vec<String>,
    plan: Vec<PlannedView>,
    /// The previewed plan as a graph.
    graph: Option<Graph>,
}

#[derive(Deserialize, Default)]
pub(super) struct Choose {
    policy: Option<String>,
    /// `json` for the JSON editor.
    mode: Option<String>,
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
    #[serde(default)]
    mode: String,
    /// The form's context fields (`ctx.quote.total`), as typed.
    #[serde(skip)]
    fields: Vec<(String, String)>,
}

impl NewForm {
    fn parse(body: &[u8]) -> NewForm {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let named: Vec<(String, String)> = pairs.iter().filter(|(n, _)| !n.starts_with("ctx.")).cloned().collect();
        let mut form: NewForm = serde_urlencoded::from_str(&serde_urlencoded::to_string(named).unwrap_or_default()).unwrap_or_default();
        form.fields = pairs.into_iter().filter(|(n, _)| n.starts_with("ctx.")).collect();
        form
    }
}

impl NewPage {
    fn blank(s: &AppState, visitor: &Visitor, form: &NewForm) -> NewPage {
        let catalog = s.catalog();
        let policies = catalog
            .policies
            .values()
            .map(|p| PolicyOption { id: p.id.clone(), label: p.title.clone().map_or_else(|| p.id.clone(), |t| format!("{t} ({})", p.id)) })
            .collect();
        let schema = catalog.policies.get(&form.policy).map(|p| p.source["context_schema"].clone()).unwrap_or(Value::Null);
        let context = if form.context.trim().is_empty() { serde_json::to_string_pretty(&skeleton(&schema)).unwrap_or_default() } else { form.context.clone() };
        let groups = if form.mode == "json" {
            None
        } else {
            form_of(&schema, &Value::Null).map(|mut groups| {
                for f in groups.iter_mut().flat_map(|g| &mut g.fields) {
                    if let Some((_, typed)) = form.fields.iter().find(|(n, _)| *n == f.name) {
                        f.value = typed.clone();
                    }
                }
                groups
            })
        };
        NewPage {
            user: visitor.caller.id.clone(),
            csrf: visitor.csrf.clone(),
            admin: visitor.caller.admin,
            insights: s.sees_insights(&visitor.caller),
            key: if form.key.is_empty() { format!("web-new-{}", uuid::Uuid::now_v7().simple()) } else { form.key.clone() },
            policies,
            policy: form.policy.clone(),
            title: form.title.clone(),
            subject: form.subject.clone(),
            context,
            groups,
            evidence: form.evidence.clone(),
            problem: None,
            errors: Vec::new(),
            plan: Vec::new(),
            graph: None,
        }
    }

    /// The form again, saying what was refused: at its field where a message names one.
    fn refused(mut self, e: Problem) -> Response {
        let errors: Vec<String> = e.extra.as_ref().and_then(|x| x["errors"].as_array()).map(|a| a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect()).unwrap_or_default();
        self.errors = self.place(field::messages_by_path(errors.iter().map(String::as_str)));
        self.problem = Some(super::sentence(&e));
        // What was refused was answered under this key; the next try is a new submission.
        self.key = format!("web-new-{}", uuid::Uuid::now_v7().simple());
        Page::of(super::super::problem::status(e.code), &self).into_response()
    }

    /// Puts each message at the form field it is about; those about none are returned, as said.
    fn place(&mut self, messages: Vec<(String, String)>) -> Vec<String> {
        let mut rest = Vec::new();
        for (path, message) in messages {
            let field = self.groups.iter_mut().flatten().flat_map(|g| &mut g.fields).find(|f| field::at(&path, f.name.trim_start_matches("ctx.")));
            match field {
                Some(f) if f.error.is_empty() => f.error = message,
                Some(f) => f.error = format!("{}; {message}", f.error),
                None if path.is_empty() => rest.push(message),
                None => rest.push(format!("at {path}: {message}")),
            }
        }
        rest
    }
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, q: Result<Query<Choose>, QueryRejection>) -> Response {
    let Query(choose) = q.unwrap_or_default();
    let form = NewForm { policy: choose.policy.unwrap_or_default(), mode: choose.mode.unwrap_or_default(), ..Default::default() };
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
    let form = NewForm::parse(&body);
    if !visitor.posted_here(&form.csrf, &headers) {
        return Page::not_ours();
    }
    let mut view = NewPage::blank(&s, &visitor, &form);
    let context: Value = match &view.groups {
        Some(groups) => {
            let (context, wrong) = context_from(groups, &form.fields);
            if !wrong.is_empty() {
                let rest = view.place(wrong);
                view.errors = rest;
                view.problem = Some("Some fields could not be read; nothing was sent.".into());
                return Page::of(StatusCode::UNPROCESSABLE_ENTITY, &view).into_response();
            }
            context
        }
        None => match serde_json::from_str(&form.context) {
            Ok(c) => c,
            Err(e) => return view.refused(Problem::new(signoff_engine::Code::MalformedJson, format!("the context is not valid JSON: {e}"))),
        },
    };
    if form.intent == "preview" {
        return match s.plan(&visitor.caller, &form.policy, PlanBody { context, requester: None }) {
            Ok(state) => {
                view.plan = plan_view(&state);
                view.graph = Some(Graph::of(&state.steps));
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
