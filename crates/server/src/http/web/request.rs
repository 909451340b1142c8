//! The request page: everything about one request that a person deciding on it needs (its plan
//! step by step, who may act and who has, the context, the history with refused attempts, the
//! notifications), and the forms to act on it. Every form carries an idempotency key made when
//! the page was drawn, so a double click or a resubmitted form acts once.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use serde_json::{Value, json};
use signoff_api::{ActionBody, ActionFields};
use signoff_engine::policy::{EditRules, TimeoutAction};
use signoff_engine::{Code, Event, EventKind, RequestState, StepState, StepStatus, TimerKind};
use signoff_store::DeliveryReport;

use super::field::{self, Field};
use super::graph::Graph;
use super::{AppState, Page, Visitor, When};
use crate::error::Problem;
use crate::service::IdempotencyKey;

/// One checklist item of a step, and who acknowledged it.
struct AckItem {
    item: String,
    by: String,
}

/// One step, as the page shows it.
struct StepView {
    id: String,
    label: String,
    status: &'static str,
    reason: String,
    after: String,
    approvers: String,
    delegations: Vec<String>,
    approvals: usize,
    needed: u32,
    progress: String,
    acted: Vec<String>,
    due: Option<When>,
    escalation_level: u32,
    /// What the step's next timer will do, and when.
    next: String,
    next_at: Option<When>,
    checklist: Vec<AckItem>,
    acks: String,
    acks_done: usize,
    /// Whether approval waits for the checklist.
    gated: bool,
    /// Whether the visitor may act on it now.
    mine: bool,
    /// The approve dialog's fields, from the step's `edits`.
    edits: Vec<Field>,
    /// Which of the step's dialogs the page opens with (`approve`, `reject`), after a refusal.
    open: &'static str,
    /// What the server said of the last attempt in that dialog.
    dialog_problem: String,
    /// The comment typed into that dialog, kept.
    comment: String,
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default()
}

impl StepView {
    fn of(s: &StepState, visitor: &str, rules: Option<&EditRules>, context: &Value, now: Timestamp) -> StepView {
        let mut acted: Vec<String> = s.approvals.iter().map(|v| vote("approved", &v.by, v.at, v.comment.as_deref())).collect();
        acted.extend(s.rejections.iter().map(|v| vote("rejected", &v.by, v.at, v.comment.as_deref())));
        let checklist: Vec<AckItem> = s
            .require_acks
            .iter()
            .map(|item| {
                let by = s.acks.iter().filter(|a| &a.item == item).map(|a| format!("{} at {}", a.by, super::minute(a.at))).collect::<Vec<_>>().join(", ");
                AckItem { item: item.clone(), by }
            })
            .collect();
        let pending = s.pending_acks();
        let next = s.next_timer.as_ref().map(|t| match t.kind {
            TimerKind::Escalation => format!("escalation to level {}", t.level.unwrap_or(s.escalation_level + 1)),
            TimerKind::Reminder => "a reminder to who has not acted".into(),
            TimerKind::Timeout => format!("time-out: the step will {}", timeout_verb(s)),
            TimerKind::Expiry => "the request expires".into(),
        });
        let mine = s.status == StepStatus::Active && s.approvers.iter().any(|a| a == visitor) && !s.has_approved(visitor) && !s.has_rejected(visitor);
        let edits = match rules {
            Some(r) if mine => r.allowed_keys.iter().map(|k| Field::of(r.schema.as_ref().map(|s| s.source()), k, context.get(k), "edit.", &format!("edit-{}", s.id))).collect(),
            _ => Vec::new(),
        };
        StepView {
            id: s.id.clone(),
            label: s.title.clone().unwrap_or_else(|| s.id.clone()),
            status: s.status.as_str(),
            reason: s.skipped_because.clone().or_else(|| s.reason.clone()).unwrap_or_default(),
            after: s.after.join(", "),
            approvers: s.approvers.join(", "),
            delegations: s.delegations.iter().map(|d| format!("{} delegated to {} at {}", d.from, d.to, super::minute(d.at))).collect(),
            approvals: s.approvals.len(),
            needed: s.quorum_needed(),
            progress: format!("{} of {} approvals", s.approvals.len(), s.quorum),
            acted,
            due: s.due_at.filter(|_| s.status == StepStatus::Active).map(|d| When::of(d, now)),
            escalation_level: s.escalation_level,
            next_at: s.next_timer.as_ref().filter(|_| s.status == StepStatus::Active).map(|t| When::of(t.at, now)),
            next: next.unwrap_or_default(),
            acks: format!("{} of {} acknowledged", s.require_acks.len() - pending.len(), s.require_acks.len()),
            acks_done: s.require_acks.len() - pending.len(),
            gated: !pending.is_empty(),
            checklist,
            mine,
            edits,
            open: "",
            dialog_problem: String::new(),
            comment: String::new(),
        }
    }
}

/// What a step's time-out does, as a verb.
fn timeout_verb(s: &StepState) -> &'static str {
    match s.on_last_timeout.unwrap_or(s.on_timeout) {
        TimeoutAction::Approve => "approve",
        TimeoutAction::Reject => "reject",
        TimeoutAction::Expire => "expire the request",
        TimeoutAction::Escalate => "escalate",
    }
}

fn vote(what: &str, by: &str, at: Timestamp, comment: Option<&str>) -> String {
    match comment {
        Some(c) => format!("{by} {what} at {}: “{c}”", time(Some(at))),
        None => format!("{by} {what} at {}", time(Some(at))),
    }
}

/// One line of the history.
struct EventView {
    at: String,
    kind: &'static str,
    actor: String,
    step: String,
    detail: String,
    refused: bool,
}

impl EventView {
    fn of(e: &Event) -> EventView {
        let detail = match &e.kind {
            EventKind::Refused { action, code, detail, .. } => format!("{action} refused: {detail} ({code})"),
            EventKind::EditsRefused { .. } => serde_json::to_value(&e.kind).map(|v| v["data"].to_string()).unwrap_or_default(),
            EventKind::Approved { comment: Some(c), .. } => format!("“{c}”"),
            EventKind::Rejected { comment, .. } | EventKind::Commented { comment } => format!("“{comment}”"),
            EventKind::Delegated { from, to } => format!("{from} delegated to {to}"),
            EventKind::Completed { status, reason } => format!("{}{}", status.as_str(), reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()),
            _ => String::new(),
        };
        EventView {
            at: time(Some(e.at)),
            kind: e.kind.type_name(),
            actor: e.actor.clone(),
            step: e.step.clone().unwrap_or_default(),
            detail,
            refused: matches!(e.kind, EventKind::Refused { .. } | EventKind::EditsRefused { .. }),
        }
    }
}

/// One notification and how its delivery stands.
struct DeliveryView {
    channel: String,
    destination: String,
    kind: String,
    status: String,
    attempts: u32,
    error: String,
}

impl DeliveryView {
    fn of(d: &DeliveryReport) -> DeliveryView {
        let n = &d.notification;
        DeliveryView {
            channel: n.outgoing.channel.clone(),
            destination: n.outgoing.destination.clone(),
            kind: n.outgoing.kind.clone(),
            status: serde_json::to_value(n.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            attempts: n.attempts,
            error: n.last_error.clone().unwrap_or_default(),
        }
    }
}

/// A link among the request's evidence.
struct Evidence {
    label: String,
    url: String,
}

fn evidence(items: &[Value]) -> Vec<Evidence> {
    items
        .iter()
        .map(|e| {
            let url = e["url"].as_str().filter(|u| u.starts_with("https://") || u.starts_with("http://")).unwrap_or_default().to_string();
            let label = e["title"].as_str().or(e["label"].as_str()).map(str::to_string).unwrap_or_else(|| if url.is_empty() { e.to_string() } else { url.clone() });
            Evidence { label, url }
        })
        .collect()
}

/// One top-level context key that accepted edits changed.
struct Change {
    key: String,
    before: String,
    after: String,
    /// Whose approval carried the edit.
    by: String,
}

/// The difference between the submitted and the effective context, key by key.
fn changes(state: &RequestState) -> Vec<Change> {
    let (Some(before), Some(after)) = (state.context.as_object(), state.effective_context.as_object()) else { return Vec::new() };
    let text = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "(absent)".into());
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            let by = state
                .steps
                .iter()
                .flat_map(|st| st.approvals.iter().map(move |v| (st, v)))
                .filter(|(_, v)| v.edits.as_ref().and_then(|e| e.get(k)).is_some())
                .map(|(st, v)| format!("{} on {}", v.by, st.title.as_deref().unwrap_or(&st.id)))
                .collect::<Vec<_>>()
                .join(", ");
            Change { key: k.clone(), before: text(before.get(k)), after: text(after.get(k)), by }
        })
        .collect()
}

#[derive(askama::Template)]
#[template(path = "request.html")]
struct RequestPage {
    user: String,
    csrf: String,
    admin: bool,
    /// Whether the nav offers the Insights page.
    insights: bool,
    /// The server's clock, in milliseconds, for the countdowns.
    now_ms: i64,
    /// The idempotency key every form of this drawing carries.
    key: String,
    problem: Option<String>,
    id: String,
    heading: String,
    status: &'static str,
    policy: String,
    hash: String,
    requester: String,
    subject: String,
    created: String,
    decided: String,
    decision_reason: String,
    expires: Option<When>,
    pending_reasons: Vec<String>,
    /// When the request is expected to be decided, in words, and from how much history.
    expected: String,
    evidence: Vec<Evidence>,
    graph: Graph,
    steps: Vec<StepView>,
    context: String,
    changes: Vec<Change>,
    effective_context: String,
    events: Vec<EventView>,
    deliveries: Vec<DeliveryView>,
    may_cancel: bool,
    /// Whom a step may be delegated to, to start with (the script looks up more): id and label.
    people: Vec<(String, String)>,
}

/// What went wrong with the form just sent, to show where it was sent from, with what the
/// person typed kept.
#[derive(Default)]
struct Trouble {
    /// The sentence for the whole form.
    message: String,
    /// The step and dialog (`approve`, `reject`) the form was in, if it was a dialog.
    dialog: Option<(String, &'static str)>,
    /// Messages at a field of the approve dialog: key, message.
    fields: Vec<(String, String)>,
    /// What was typed into the dialog's edit fields: key, text.
    typed: Vec<(String, String)>,
    comment: String,
}

/// How many people the delegate box offers before the script looks up more.
const PEOPLE: usize = 50;

/// The idempotency key of the forms drawn for `state`: the same for one session and one version
/// of the request, so a form sent twice (a double click, a retry) acts once, and a page drawn
/// again for an unchanged request is the same page; any change to the request (a refused
/// attempt included) draws new keys.
fn form_key(csrf: &str, state: &RequestState) -> String {
    let digest = signoff_engine::canonical::digest_bytes(format!("{csrf} {} {}", state.id, state.version).as_bytes());
    format!("web-{}", &digest["sha256:".len()..][..24])
}

async fn draw(s: &AppState, visitor: &Visitor, id: &str, trouble: Option<Trouble>) -> Result<RequestPage, Problem> {
    let state: RequestState = s.visible(&visitor.caller, id).await?;
    let events = s.events(&visitor.caller, id).await?;
    let deliveries = s.deliveries(&visitor.caller, id).await?;
    let policy = s.policy_for(&state).await?;
    let prediction = if state.status.is_terminal() { None } else { s.prediction(id).await };
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let me = visitor.caller.id.as_str();
    let now = s.now();
    let mut steps: Vec<StepView> = state
        .steps
        .iter()
        .map(|st| StepView::of(st, me, policy.step(&st.id).and_then(|p| p.edits.as_ref()), &state.effective_context, now))
        .collect();
    let mut problem = None;
    if let Some(t) = trouble {
        match t.dialog.and_then(|(step, dialog)| steps.iter_mut().find(|v| v.id == step && v.mine).map(|v| (v, dialog))) {
            Some((view, dialog)) => {
                view.open = dialog;
                view.dialog_problem = t.message;
                view.comment = t.comment;
                for f in &mut view.edits {
                    if let Some((_, typed)) = t.typed.iter().find(|(k, _)| *k == f.key) {
                        f.value = typed.clone();
                    }
                    f.error = t.fields.iter().filter(|(path, _)| field::at(path, &f.key)).map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
                }
            }
            None => problem = Some(t.message),
        }
    }
    Ok(RequestPage {
        user: me.to_string(),
        csrf: visitor.csrf.clone(),
        admin: visitor.caller.admin,
        insights: s.sees_insights(&visitor.caller),
        now_ms: now.as_millisecond(),
        key: form_key(&visitor.csrf, &state),
        problem,
        id: state.id.to_string(),
        heading: state.title.clone().or_else(|| state.subject.clone()).unwrap_or_else(|| state.id.to_string()),
        status: state.status.as_str(),
        policy: format!("{} v{}", state.policy.id, state.policy.version),
        hash: state.policy.hash.clone(),
        requester: state.requester.clone(),
        subject: state.subject.clone().unwrap_or_default(),
        created: time(Some(state.created_at)),
        decided: time(state.decided_at),
        decision_reason: state.decision_reason.clone().unwrap_or_default(),
        expires: state.expires_at.filter(|_| !state.status.is_terminal()).map(|e| When::of(e, now)),
        pending_reasons: state.pending_reasons.clone(),
        expected: prediction.as_ref().map(|p| super::expected(&p.estimate)).unwrap_or_default(),
        evidence: evidence(&state.evidence),
        graph: Graph::of(&state.steps),
        steps,
        context: pretty(&state.context),
        changes: changes(&state),
        effective_context: if state.effective_context == state.context { String::new() } else { pretty(&state.effective_context) },
        events: events.iter().map(EventView::of).collect(),
        deliveries: deliveries.iter().map(DeliveryView::of).collect(),
        may_cancel: !state.status.is_terminal() && (state.requester == me || visitor.caller.admin),
        people: s.users("", PEOPLE + 1).into_iter().filter(|u| u.id != me).take(PEOPLE).map(|u| { let label = u.name.clone().unwrap_or_else(|| u.id.clone()); (u.id, label) }).collect(),
    })
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, id: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(id)) = id else { return Page::refused(StatusCode::BAD_REQUEST, "That is not a request's address.") };
    match draw(&s, &visitor, &id, None).await {
        Ok(page) => Page::of(StatusCode::OK, &page).into_response(),
        Err(e) => Page::problem(e),
    }
}

/// A form on the request page, its fields by name (`edit.KEY` for the approve dialog's edits).
struct ActForm(Vec<(String, String)>);

impl ActForm {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// The edit fields as typed, key by key.
    fn typed_edits(&self) -> Vec<(String, String)> {
        self.0.iter().filter_map(|(n, v)| n.strip_prefix("edit.").map(|k| (k.to_string(), v.clone()))).collect()
    }
}

/// The edits an approve dialog asks for: each field read as its schema's type, kept only where
/// it differs from the effective context. Fields that cannot be read are field messages.
async fn edits_of(s: &AppState, visitor: &Visitor, id: &str, step: &str, typed: &[(String, String)]) -> Result<(Option<Value>, Vec<(String, String)>), Problem> {
    if typed.is_empty() {
        return Ok((None, Vec::new()));
    }
    let state = s.visible(&visitor.caller, id).await?;
    let policy = s.policy_for(&state).await?;
    let schema = policy.step(step).and_then(|p| p.edits.as_ref()).and_then(|r| r.schema.as_ref()).map(|s| s.source().clone());
    let mut edits = serde_json::Map::new();
    let mut wrong = Vec::new();
    for (key, text) in typed {
        match Field::read(field::Kind::of_key(schema.as_ref(), key), text) {
            Ok(Some(v)) if state.effective_context.get(key) != Some(&v) => {
                edits.insert(key.clone(), v);
            }
            Ok(_) => {}
            Err(m) => wrong.push((key.clone(), m)),
        }
    }
    Ok(((!edits.is_empty()).then_some(Value::Object(edits)), wrong))
}

/// A form on the request page: acts as the visitor, once per drawing of the page.
pub(super) async fn act(State(s): State<AppState>, visitor: Visitor, headers: HeaderMap, id: Result<Path<String>, PathRejection>, body: Bytes) -> Response {
    let Ok(Path(id)) = id else { return Page::refused(StatusCode::BAD_REQUEST, "That is not a request's address.") };
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).map(ActForm) else { return Page::refused(StatusCode::BAD_REQUEST, "The form is incomplete.") };
    if !visitor.posted_here(form.get("csrf").unwrap_or_default(), &headers) {
        return Page::not_ours();
    }
    let action = form.get("action").unwrap_or_default().to_string();
    let step = form.text("step");
    let comment = form.text("comment");
    let to = form.text("to");
    let typed = form.typed_edits();
    let dialog = match (action.as_str(), &step) {
        ("approve", Some(st)) => Some((st.clone(), "approve")),
        ("reject", Some(st)) => Some((st.clone(), "reject")),
        _ => None,
    };
    let trouble = |message: String, fields: Vec<(String, String)>| Trouble {
        message,
        dialog: dialog.clone(),
        fields,
        typed: typed.clone(),
        comment: comment.clone().unwrap_or_default(),
    };
    let edits = match (&step, action.as_str()) {
        (Some(st), "approve") => match edits_of(&s, &visitor, &id, st, &typed).await {
            Ok((_, wrong)) if !wrong.is_empty() => {
                let t = trouble("Some changes could not be read; nothing was sent.".into(), wrong);
                return redraw(&s, &visitor, &id, StatusCode::UNPROCESSABLE_ENTITY, t).await;
            }
            Ok((edits, _)) => edits,
            Err(e) => return Page::problem(e),
        },
        _ => None,
    };
    let fingerprint = signoff_engine::canonical::digest(&json!({
        "route": format!("web act {id}"), "action": action, "step": step, "item": form.get("item"), "to": to, "comment": comment, "edits": edits,
    }));
    let key = form.text("key").map(|key| IdempotencyKey { key, fingerprint });
    let fields = ActionFields { action, step, comment: comment.clone(), edits, item: form.get("item").map(str::to_string), to };
    let outcome = match ActionBody::try_from(fields) {
        Err(e) => Err(Problem::bad_parameter(e)),
        Ok(action) => s.act(&visitor.caller, &id, action, key).await,
    };
    let problem = match outcome {
        Ok(reply) if reply.kind.is_success() => return Redirect::to(&format!("/requests/{id}")).into_response(),
        Ok(reply) => Problem::from_body(&reply.json()),
        Err(e) => e,
    };
    let status = super::super::problem::status(problem.code);
    let at_fields = matches!(problem.code, Code::EditSchemaInvalid | Code::EditKeyNotAllowed);
    let (fields, rest): (Vec<_>, Vec<_>) = if at_fields { field::messages_by_path(problem.detail.split("; ")).into_iter().partition(|(k, _)| !k.is_empty()) } else { (Vec::new(), Vec::new()) };
    let message = if at_fields && rest.is_empty() { format!("Some changes are not allowed ({}).", problem.code) } else { super::sentence(&problem) };
    redraw(&s, &visitor, &id, status, trouble(message, fields)).await
}

/// The page again, saying what went wrong where.
async fn redraw(s: &AppState, visitor: &Visitor, id: &str, status: StatusCode, trouble: Trouble) -> Response {
    match draw(s, visitor, id, Some(trouble)).await {
        Ok(page) => Page::of(status, &page).into_response(),
        Err(e) => Page::problem(e),
    }
}
