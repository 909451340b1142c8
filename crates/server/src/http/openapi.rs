//! The OpenAPI 3.1 document of the API. utoipa derives the operations and most types from the
//! handlers; this module completes what derive macros cannot say: the errors each operation
//! answers (problem+json, one table), which operations need no token, the shapes of the inbox,
//! delivery and event bodies. `GET /openapi.json` serves it to anyone; `GET /v1/openapi.json`
//! serves it to a signed-in caller completed with the loaded policies (their ids and context
//! schemas) and the directory's user ids, so that a generated client, or a fuzzer, can build
//! submissions and plans the server accepts.

use std::sync::OnceLock;

use axum::routing::get;
use axum::{Json, Router};
use axum::extract::State;
use serde_json::{Value, json};
use signoff_engine::{Event, RequestState};
use utoipa::OpenApi;

use crate::catalog::Catalog;
use super::AppState;
use super::extract::Auth;
use crate::service::{ActionFields, PlanBody, SubmitBody};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(public_document))
}

pub(super) fn v1_routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(catalog_document))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "signoff", description = "Policy-driven approval workflows. Errors are RFC 9457 problems \
        (`application/problem+json`) with a stable `code`; see the product's spec/api.md."),
    paths(
        super::requests::submit, super::requests::act, super::requests::request, super::requests::list, super::requests::events,
        super::requests::notifications, super::requests::inbox, super::admin::tasks, super::admin::me, super::admin::users, super::live::request_stream, super::live::user_stream,
        super::live::wait, super::policies::policies, super::policies::policy, super::policies::validate_policy, super::policies::plan, super::policies::simulate,
        super::admin::reload, super::people::put_user, super::people::remove_user, super::people::groups, super::people::put_group,
        super::people::remove_group, super::people::tokens, super::people::issue_token, super::people::revoke_token, super::people::changes,
        super::people::set_out_of_office, super::people::clear_out_of_office, super::people::person, super::audit::checkpoint, super::audit::consistency, super::audit::audit_events, super::audit::verify, super::insights::stats, super::insights::user_summary, super::insights::heatmap, super::insights::report, super::operations::healthz, super::operations::readyz, super::operations::metrics_text,
        super::slack::slack_interactions, super::email::email_confirm, super::email::email_act, public_document,
        catalog_document,
    ),
    components(schemas(SubmitBody, ActionFields, PlanBody, RequestState, Event)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The errors each operation can answer, besides its success. (Transport limits apply to
/// every call as well: 408, 413, 414, 431 and 503 `busy`; they are declared where a client
/// meets them in practice, on bodies.)
const ERRORS: &[(&str, &str, &[u16])] = &[
    ("post", "/v1/requests", &[400, 401, 403, 404, 409, 413, 422, 429, 503]),
    ("get", "/v1/requests", &[400, 401, 503]),
    ("get", "/v1/requests/{id}", &[400, 401, 404, 503]),
    ("post", "/v1/requests/{id}/actions", &[400, 401, 403, 404, 409, 413, 422, 503]),
    ("get", "/v1/requests/{id}/events", &[400, 401, 404, 503]),
    ("get", "/v1/requests/{id}/notifications", &[400, 401, 404, 503]),
    ("get", "/v1/requests/{id}/verify", &[400, 401, 404, 503]),
    ("get", "/v1/audit/checkpoint", &[401, 503]),
    ("get", "/v1/audit/consistency", &[400, 401, 404, 503]),
    ("get", "/v1/audit/events", &[400, 401, 403, 503]),
    ("get", "/v1/stats", &[400, 401, 403, 404, 503]),
    ("get", "/v1/users/{id}/summary", &[400, 401, 403, 404, 503]),
    ("get", "/v1/insights/heatmap", &[400, 401, 403, 404, 503]),
    ("get", "/v1/insights/report", &[400, 401, 403, 404, 503]),
    ("post", "/v1/policies/{id}/simulate", &[400, 401, 403, 404, 413, 422, 503]),
    ("get", "/v1/requests/{id}/stream", &[400, 401, 404, 503]),
    ("get", "/v1/requests/{id}/wait", &[400, 401, 404, 503]),
    ("get", "/v1/stream", &[401, 503]),
    ("get", "/v1/inbox", &[400, 401, 503]),
    ("get", "/v1/tasks", &[400, 401, 403, 503]),
    ("get", "/v1/me", &[401]),
    ("get", "/v1/users", &[400, 401]),
    ("get", "/v1/policies", &[401]),
    ("get", "/v1/policies/{id}", &[401, 404]),
    ("post", "/v1/policies/validate", &[400, 401, 413, 422]),
    ("post", "/v1/policies/{id}/plan", &[400, 401, 413, 422]),
    ("post", "/v1/admin/reload", &[401, 403, 422, 503]),
    ("put", "/v1/admin/users/{id}", &[400, 401, 403, 413, 422, 503]),
    ("delete", "/v1/admin/users/{id}", &[400, 401, 403, 404, 503]),
    ("get", "/v1/admin/groups", &[401, 403]),
    ("put", "/v1/admin/groups/{id}", &[400, 401, 403, 413, 422, 503]),
    ("delete", "/v1/admin/groups/{id}", &[400, 401, 403, 404, 503]),
    ("get", "/v1/admin/tokens", &[401, 403]),
    ("post", "/v1/admin/tokens", &[400, 401, 403, 413, 422, 503]),
    ("delete", "/v1/admin/tokens/{id}", &[400, 401, 403, 404, 503]),
    ("get", "/v1/admin/directory/changes", &[400, 401, 403, 503]),
    ("put", "/v1/users/{id}/out-of-office", &[400, 401, 403, 404, 413, 422, 503]),
    ("delete", "/v1/users/{id}/out-of-office", &[400, 401, 403, 404, 503]),
    ("get", "/v1/users/{id}/directory", &[400, 401, 403, 404]),
    ("get", "/v1/openapi.json", &[401]),
    ("get", "/readyz", &[503]),
    ("post", "/slack/interactions", &[400, 401, 404, 413, 503]),
];

/// The emailed-link pages answer their errors as pages too.
const PAGE_ERRORS: &[(&str, &str, &[u16])] = &[
    ("get", "/email/act", &[400, 404, 410]),
    ("post", "/email/act", &[400, 403, 404, 409, 410, 413, 422, 429, 503]),
];

fn describe(status: u16) -> &'static str {
    match status {
        400 => "Malformed: not JSON (`malformed_json`), an unknown field or bad parameter (`bad_parameter`), nested too deep (`too_deep`)",
        401 => "No token, or one the server does not know (`unauthenticated`)",
        403 => "Not allowed: `not_an_approver`, `separation_of_duties`, `forbidden`",
        404 => "No such resource, or one the caller may not see (`not_found`)",
        409 => "Conflicts with the request's state: `step_not_active`, `request_closed`, `acks_pending`, `already_voted`, `idempotency_conflict`, `not_terminal`, …",
        410 => "The link has expired (`link_expired`)",
        413 => "The body is larger than the limit (`too_large`)",
        422 => "Understood but refused: `invalid_context`, `invalid_policy`, `planning_error`, `no_eligible_approvers`, `unknown_policy`, `comment_required`, edits refused, …",
        429 => "Too many calls (`rate_limited`), or `resubmit_cooldown`, `lineage_limit`; with Retry-After",
        503 => "The database is unavailable, or the request changes too fast (`unavailable`, `busy`); retry",
        _ => "Error",
    }
}

/// The document every caller gets, built once.
fn base() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        complete(&mut doc);
        doc
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "An RFC 9457 problem. Some carry more members, e.g. `errors` (invalid policies and contexts).",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "Stable snake_case code, e.g. `step_not_active`", "pattern": "^[a-z][a-z_]*$"},
            "errors": {"type": "array"},
            "valid": {"type": "boolean"},
        },
    })
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn time_or_null() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}

/// Schemas that derive macros get wrong or cannot see.
fn schemas() -> Vec<(&'static str, Value)> {
    let event_types = [
        "submitted", "auto_approved", "step_skipped", "step_activated", "approved", "rejected", "acknowledged", "edits_refused",
        "delegated", "commented", "escalated", "reminded", "step_timed_out", "resubmitted", "step_decided", "cancelled", "expired",
        "completed", "refused",
    ];
    let string_or_null = json!({"type": ["string", "null"]});
    vec![
        ("Problem", problem_schema()),
        ("Quorum", json!({"description": "Approvals needed: a number, or `all` of the approvers.", "oneOf": [
            {"type": "integer", "minimum": 0}, {"type": "string", "enum": ["all"]}]})),
        ("Event", json!({
            "type": "object",
            "description": "One event of a request's hash-chained history: `hash` is sha256 over its canonical JSON (RFC 8785) without `hash`.",
            "required": ["seq", "type", "at", "actor", "step", "data", "prev_hash", "hash"],
            "properties": {
                "seq": {"type": "integer", "minimum": 1},
                "type": {"type": "string", "enum": event_types},
                "at": time(),
                "actor": {"type": "string"},
                "step": string_or_null,
                "data": {"type": "object", "description": "The event's own fields, by `type`"},
                "prev_hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                "hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
            },
        })),
        ("Task", json!({
            "type": "object",
            "description": "An open task: a step of a request the caller can act on now.",
            "required": ["request", "step", "title", "reason", "due_at", "policy"],
            "properties": {
                "request": {"type": "string"}, "step": {"type": "string"}, "title": string_or_null,
                "reason": string_or_null, "due_at": time_or_null(), "policy": {"type": "string"},
                "expires_at": time_or_null(),
                "pending_acks": {"type": "integer", "minimum": 1, "description": "Checklist items of the step not yet acknowledged; absent when none are."},
            },
        })),
        ("Delivery", json!({
            "type": "object",
            "description": "A notification of the request, its delivery state and every attempt.",
            "required": ["id", "request_id", "channel", "destination", "kind", "status", "attempts", "attempt_log"],
            "properties": {
                "id": {"type": "string"}, "request_id": {"type": "string"},
                "channel": {"type": "string", "enum": ["webhook", "slack", "email"]},
                "destination": {"type": "string"}, "kind": {"type": "string"}, "payload": {},
                "coalesce_key": string_or_null, "created_at": time(),
                "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                "attempts": {"type": "integer", "minimum": 0}, "revision": {"type": "integer", "minimum": 0},
                "next_attempt_at": time_or_null(), "last_error": string_or_null, "result": {},
                "delivered_at": time_or_null(),
                "attempt_log": {"type": "array", "items": {
                    "type": "object", "required": ["notification", "revision", "at", "outcome"],
                    "properties": {
                        "notification": {"type": "string"}, "revision": {"type": "integer"}, "at": time(),
                        "status": {"type": ["integer", "null"]},
                        "outcome": {"type": "string", "enum": ["delivered", "failed", "deferred"]},
                    },
                }},
            },
        })),
        ("PolicySummary", json!({
            "type": "object", "required": ["id", "title", "version", "hash"],
            "properties": {"id": {"type": "string"}, "title": string_or_null, "version": {"type": "integer", "minimum": 1},
                "hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}},
        })),
        ("PolicyDocument", json!({
            "type": "object",
            "description": "A loaded policy as JSON (see spec/policy.md), with its `hash` and `version`. `context_schema` is the JSON Schema a submission's context must satisfy.",
            "required": ["id", "version", "hash", "steps"],
            "properties": {
                "id": {"type": "string"}, "title": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
                "hash": {"type": "string"}, "context_schema": {"type": "object"}, "steps": {"type": "array", "items": {"type": "object"}},
            },
        })),
    ]
}

/// An action on a request: one shape per action, with what each needs.
fn action_schema() -> Value {
    let text = json!({"type": "string", "pattern": "\\S"});
    let optional_text = json!({"type": ["string", "null"]});
    let properties = |action: &str| {
        json!({
            "action": {"const": action},
            "step": {"type": ["string", "null"]},
            "comment": optional_text,
            "edits": {"type": ["object", "null"], "description": "approve only: accepted edits to top-level context keys"},
            "item": {"type": ["string", "null"]},
            "to": {"type": ["string", "null"]},
        })
    };
    let variant = |action: &str, required: &[&str], overrides: &[(&str, &Value)], description: &str| {
        let mut props = properties(action);
        for (name, schema) in overrides {
            props[*name] = (*schema).clone();
        }
        let mut required: Vec<&str> = required.to_vec();
        required.insert(0, "action");
        json!({"type": "object", "description": description, "required": required, "properties": props, "additionalProperties": false})
    };
    let step = json!({"type": "string"});
    json!({
        "description": "approve, reject (with a comment), acknowledge (an item), delegate (to someone), comment, or cancel",
        "oneOf": [
            variant("approve", &["step"], &[("step", &step)], "Approve a step, optionally with edits"),
            variant("reject", &["step", "comment"], &[("step", &step), ("comment", &text)], "Reject a step; a comment is required"),
            variant("acknowledge", &["step", "item"], &[("step", &step), ("item", &step)], "Acknowledge a checklist item of a step"),
            variant("delegate", &["step", "to"], &[("step", &step), ("to", &step)], "Hand one's slot on a step to another user"),
            variant("comment", &["comment"], &[("comment", &text)], "Comment on the request, or on one of its steps"),
            variant("cancel", &[], &[], "Cancel the request (its requester or an admin)"),
        ],
    })
}

/// Fills in what the derived document lacks; see the module's doc.
fn complete(doc: &mut Value) {
    for (name, schema) in schemas() {
        doc["components"]["schemas"][name] = schema;
    }
    let problem = json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let page = json!({"text/html": {"schema": {"type": "string"}}});
    for (errors, content) in [(ERRORS, &problem), (PAGE_ERRORS, &page)] {
        for (method, path, statuses) in errors {
            let op = &mut doc["paths"][*path][*method];
            assert!(op.is_object(), "the error table names {method} {path}, which the document lacks");
            for status in *statuses {
                op["responses"][status.to_string()] = json!({"description": describe(*status), "content": content});
            }
        }
    }
    // Rate limits answer any call but the probes and the scrape.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut().filter(|(p, _)| !matches!(p.as_str(), "/healthz" | "/readyz" | "/metrics")) {
            // (The emailed-link pages answer as pages, as their other errors do.)
            let content = if path == "/email/act" { &page } else { &problem };
            for op in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()).filter(|op| op.get("responses").is_some()) {
                op["responses"]["429"] = json!({"description": describe(429), "content": content, "headers": {"Retry-After": {"schema": {"type": "integer"}}}});
            }
        }
    }
    // Bodies the handlers build as JSON values.
    let set = |doc: &mut Value, method: &str, path: &str, status: &str, schema: Value| {
        doc["paths"][path][method]["responses"][status]["content"] = json!({"application/json": {"schema": schema}});
    };
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    set(doc, "get", "/v1/inbox", "200", json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": r("Task")}}}));
    set(doc, "get", "/v1/requests/{id}/notifications", "200", json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": r("Delivery")}}}));
    set(doc, "get", "/v1/policies", "200", json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": r("PolicySummary")}}}));
    set(doc, "get", "/v1/policies/{id}", "200", r("PolicyDocument"));
    set(doc, "post", "/v1/policies/validate", "200", json!({"type": "object", "required": ["valid", "id", "hash"],
        "properties": {"valid": {"const": true}, "id": {"type": "string"}, "hash": {"type": "string"}}}));
    set(doc, "post", "/v1/admin/reload", "200", json!({"type": "object", "required": ["reloaded", "policies"],
        "properties": {"reloaded": {"const": true}, "policies": {"type": "array", "items": r("PolicySummary")}}}));
    set(doc, "get", "/healthz", "200", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}));
    set(doc, "get", "/readyz", "200", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}}));
    set(doc, "post", "/slack/interactions", "200", json!({"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}));
    for path in ["/openapi.json", "/v1/openapi.json"] {
        set(doc, "get", path, "200", json!({"type": "object", "description": "An OpenAPI 3.1 document"}));
    }
    doc["paths"]["/v1/policies/validate"]["post"]["requestBody"] = json!({
        "description": "A policy document, as YAML or JSON", "required": true,
        "content": {"application/yaml": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
    });
    // Server-Sent Events.
    for path in ["/v1/requests/{id}/stream", "/v1/stream"] {
        doc["paths"][path]["get"]["responses"]["200"]["content"] = json!({"text/event-stream": {"schema": {
            "description": "Server-Sent Events: `state`/`request` events carry a request as JSON (`id:` its version), `inbox` the caller's tasks, `heartbeat` after 15 s of silence, `resync` after falling behind"}}});
    }
    // Headers with the exact forms the server accepts.
    for (method, path) in [("post", "/v1/requests"), ("post", "/v1/requests/{id}/actions"), ("get", "/v1/requests/{id}/stream")] {
        for param in doc["paths"][path][method]["parameters"].as_array_mut().into_iter().flatten() {
            match param["name"].as_str() {
                Some("Idempotency-Key") => param["schema"] = json!({"type": "string", "pattern": "^[!-~]{1,255}$"}),
                Some("Last-Event-ID") => param["schema"] = json!({"type": "string", "pattern": "^[0-9]{1,18}$"}),
                _ => {}
            }
        }
    }
    doc["paths"]["/email/act"]["post"]["requestBody"]["content"] = json!({"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["token"], "properties": {"token": {"type": "string"}, "comment": {"type": "string"}}}}});
    doc["components"]["schemas"]["ActionBody"] = action_schema();
    // A step's quorum is a number (or `all` before activation), not an object.
    doc["components"]["schemas"]["StepState"]["properties"]["quorum"] = r("Quorum");
    // A subject may not hold control characters (so that it can move between stores).
    doc["components"]["schemas"]["SubmitBody"]["properties"]["subject"] = json!({"type": ["string", "null"], "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"});
}

/// The document, completed with what `catalog` holds: the loaded policies' ids (path parameters
/// and the `policy` of a submission) and context schemas, and the directory's users (who may be
/// named as a plan's requester or a delegate).
fn with_catalog(catalog: &Catalog) -> Value {
    let mut doc = base().clone();
    let policies: Vec<&str> = catalog.policies.keys().map(String::as_str).collect();
    let users: Vec<String> = catalog.directory.users().map(|u| u.id.clone()).collect();
    let variants: Vec<Value> = catalog
        .policies
        .values()
        .map(|p| {
            let context = p.source.get("context_schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            json!({"allOf": [
                {"$ref": "#/components/schemas/SubmitBody"},
                {"type": "object", "properties": {"policy": {"const": p.id}, "context": context}},
            ]})
        })
        .collect();
    if !variants.is_empty() {
        doc["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]["schema"] = json!({"oneOf": variants});
    }
    for param in doc["paths"]["/v1/policies/{id}"]["get"]["parameters"].as_array_mut().into_iter().flatten() {
        if param["name"] == "id" {
            param["schema"] = json!({"type": "string", "enum": policies});
        }
    }
    // A plan's context follows its policy's schema: one path per policy says so.
    let user = json!({"type": ["string", "null"], "enum": users.iter().map(|u| json!(u)).chain([Value::Null]).collect::<Vec<_>>()});
    if let Some(template) = doc["paths"].as_object_mut().and_then(|paths| paths.remove("/v1/policies/{id}/plan")) {
        for p in catalog.policies.values() {
            let mut item = template.clone();
            let op = &mut item["post"];
            op["operationId"] = json!(format!("plan_{}", p.id.replace('-', "_")));
            op["parameters"] = json!([]);
            let context = p.source.get("context_schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            op["requestBody"]["content"]["application/json"]["schema"] = json!({"type": "object", "required": ["context"],
                "properties": {"context": context, "requester": user}, "additionalProperties": false});
            doc["paths"][format!("/v1/policies/{}/plan", p.id)] = item;
        }
    }
    for variant in doc["components"]["schemas"]["ActionBody"]["oneOf"].as_array_mut().into_iter().flatten() {
        if variant["properties"]["action"]["const"] == "delegate" {
            variant["properties"]["to"] = json!({"type": "string", "enum": users});
        }
    }
    doc
}

/// This document (for anyone: no policy or user is named).
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()), responses((status = 200, body = Object)))]
pub(crate) async fn public_document() -> Json<Value> {
    Json(base().clone())
}

/// This document with the loaded policies (ids, context schemas) and the directory's user ids,
/// for building valid submissions and plans.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, body = Object)))]
pub(crate) async fn catalog_document(State(s): State<AppState>, Auth(_caller): Auth) -> Json<Value> {
    Json(with_catalog(&s.catalog()))
}
