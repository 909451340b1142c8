//! The Slack integration's inbound side: button clicks from Slack's interactivity webhook.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use signoff_engine::Code;

use super::AppState;
use super::extract::body_error;
use crate::error::Problem;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/slack/interactions", post(slack_interactions))
}

/// Slack interactivity: verified with the app's signing secret (v0 signature, timestamp within
/// five minutes, each signature accepted once), then acted on as the linked directory user.
#[utoipa::path(post, path = "/slack/interactions", tag = "integrations", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Slack's form with `payload`; signed with X-Slack-Signature"),
    params(("X-Slack-Request-Timestamp" = Option<String>, Header), ("X-Slack-Signature" = Option<String>, Header)),
    responses((status = 200, body = Object, description = "an ephemeral message for the person who clicked")))]
pub(crate) async fn slack_interactions(State(s): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, Problem> {
    use crate::notify::slack;
    let body = body.map_err(body_error)?;
    let config = s.notify_config().slack.clone().ok_or_else(|| Problem::not_found("Slack is not configured"))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (timestamp, signature) = (header("x-slack-request-timestamp"), header("x-slack-signature"));
    slack::verify(&config.signing_secret, &timestamp, &signature, &body, s.now()).map_err(|e| {
        Problem::new(Code::Unauthenticated, match e {
            slack::Unverified::Missing => "missing or malformed X-Slack-Request-Timestamp",
            slack::Unverified::Stale => "the request timestamp is more than five minutes off",
            slack::Unverified::BadSignature => "the Slack signature does not match",
        })
    })?;
    if !s.store().use_once(&format!("slack:{signature}"), s.now()).await? {
        return Err(Problem::new(Code::Unauthenticated, "this Slack request was already received (replay)"));
    }
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form = serde_urlencoded::from_bytes(&body).map_err(|e| Problem::bad_parameter(format!("expected a form with `payload`: {e}")))?;
    let payload: Value = serde_json::from_str(&form.payload).map_err(|e| Problem::new(Code::MalformedJson, format!("payload: {e}")))?;
    let click = slack::click(&payload).ok_or_else(|| Problem::bad_parameter("not an approve or reject button click"))?;
    let text = s.slack_click(click).await?;
    Ok(Json(json!({ "response_type": "ephemeral", "replace_original": false, "text": text })))
}
