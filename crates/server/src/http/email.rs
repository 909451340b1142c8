//! The email integration's inbound side: the pages an emailed approve or reject link opens.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/email/act", get(email_confirm).post(email_act))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\"><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html).into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LinkQuery {
    /// The signed link.
    token: String,
}

#[derive(Deserialize)]
struct LinkForm {
    token: String,
    #[serde(default)]
    comment: Option<String>,
}

/// The page an emailed link opens: it shows what the link would do and asks to confirm.
/// Nothing happens until the form is posted.
#[utoipa::path(get, path = "/email/act", tag = "integrations", security(()), params(LinkQuery),
    responses((status = 200, content_type = "text/html", body = String, description = "a page asking to confirm")))]
pub(crate) async fn email_confirm(State(s): State<AppState>, q: Result<Query<LinkQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else { return page(StatusCode::BAD_REQUEST, "Invalid link", "<p>The link is incomplete.</p>") };
    match s.email_link(&q.token) {
        Err(e) => page(super::problem::status(e.code), "This link does not work", &format!("<p>{}</p>", escape(&e.detail))),
        Ok(claim) => confirm_form(&q.token, &claim, None),
    }
}

fn confirm_form(token: &str, claim: &crate::notify::email::LinkClaim, note: Option<&str>) -> Response {
    let reject = claim.a == "reject";
    let body = format!(
        "{note}<p>{who}, you are about to <strong>{action}</strong> step <code>{step}</code> of request <code>{request}</code>.</p>\
         <form method=\"post\" action=\"/email/act\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <p><label>{label}<br><textarea name=\"comment\" rows=\"3\" cols=\"60\"{required}></textarea></label></p>\
         <p><button type=\"submit\">Confirm: {action}</button></p></form>",
        note = note.map(|n| format!("<p><strong>{}</strong></p>", escape(n))).unwrap_or_default(),
        who = escape(&claim.u),
        action = escape(&claim.a),
        step = escape(&claim.s),
        request = escape(&claim.r),
        token = escape(token),
        label = if reject { "Reason (required)" } else { "Comment (optional)" },
        required = if reject { " required" } else { "" },
    );
    page(StatusCode::OK, &format!("Confirm: {}", claim.a), &body)
}

/// The confirmation form's POST: spends the link and acts as its user.
#[utoipa::path(post, path = "/email/act", tag = "integrations", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`token` and, to reject, `comment`"),
    responses((status = 200, content_type = "text/html", body = String, description = "a page saying what was done")))]
pub(crate) async fn email_act(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let form: Option<LinkForm> = body.ok().and_then(|b| serde_urlencoded::from_bytes(&b).ok());
    let Some(form) = form else { return page(StatusCode::BAD_REQUEST, "Invalid form", "<p>The form is incomplete.</p>") };
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    match s.email_act(&form.token, comment).await {
        Ok(done) => page(StatusCode::OK, "Done", &format!("<p>{}</p>", escape(&done))),
        Err(crate::service::LinkOutcome::NeedsReason(claim)) => confirm_form(&form.token, &claim, Some("A reason is required to reject.")),
        Err(crate::service::LinkOutcome::Refused(e)) => page(super::problem::status(e.code), "Not done", &format!("<p>{}</p>", escape(&e.detail))),
    }
}
