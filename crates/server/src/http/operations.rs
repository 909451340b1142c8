//! What operators and orchestrators call: liveness, readiness and Prometheus metrics, and the
//! middleware that counts and logs every call.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::error::Problem;
use crate::telemetry;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_text))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Object, description = "`{\"status\": \"ok\"}`")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses((status = 200, body = Object, description = "`{\"status\": \"ready\"}`")))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    s.store().ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}

/// Prometheus metrics, in the text exposition format: this instance's counters and histograms,
/// and the state gauges as the store has them now.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format 0.0.4")))]
pub(crate) async fn metrics_text(State(s): State<AppState>) -> Response {
    let policies: Vec<String> = s.catalog().policies.keys().cloned().collect();
    let channels = s.channel_names();
    telemetry::known(&policies, &channels);
    let mut text = telemetry::install().render();
    match s.store().gauges(s.now()).await {
        Ok(g) => {
            text.push_str(&telemetry::render_gauges(&g, &policies, &channels));
        }
        // The scrape still says what this instance counted; the missing gauges say the rest.
        Err(e) => tracing::warn!(error = %e, "the state gauges could not be read from the store"),
    }
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

pub(super) async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let address = req.extensions().get::<crate::transport::Peer>().map(|p| p.0.ip());
    let start = Instant::now();
    let resp = next.run(req).await;
    // Every refused or failed call is one log line: what was asked, the answer and why.
    if let Some(r) = resp.extensions().get::<super::problem::Refused>() {
        let status = resp.status().as_u16();
        let trace_id = crate::traces::current_trace_id();
        let address = address.map_or_else(String::new, |a| a.to_string());
        if status >= 500 {
            tracing::warn!(%method, %path, status, code = r.code.as_str(), detail = %r.detail, %address, %trace_id, "failed");
        } else if r.code == signoff_engine::Code::RateLimited {
            // A flood is counted (`signoff_rate_limited_total`), not logged line by line.
            tracing::debug!(%method, %path, status, code = r.code.as_str(), detail = %r.detail, %address, %trace_id, "refused");
        } else {
            tracing::warn!(%method, %path, status, code = r.code.as_str(), detail = %r.detail, %address, %trace_id, "refused");
        }
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!(telemetry::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
