//! The insights routes: statistics over a window of requests and one person's summary.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, path, query, time};
use crate::error::Problem;
use signoff_insights::heatmap::{self, Measure};
use signoff_insights::stats::{Stats, Summary};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/stats", get(stats)).route("/users/{id}/summary", get(user_summary)).route("/insights/heatmap", get(heatmap)).route("/insights/report", get(report))
}

/// How far back a window reaches when `from` is not given.
const DEFAULT_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsParams {
    /// Requests submitted at or after this time (RFC 3339); 30 days before `to` by default.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Requests submitted before this time (RFC 3339); now by default.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Only this policy's requests.
    policy: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SummaryParams {
    /// Decisions made at or after this time (RFC 3339); 30 days before `to` by default.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Decisions made before this time (RFC 3339); now by default.
    #[param(format = DateTime)]
    to: Option<String>,
}

/// `[from, to)` from the parameters, defaulting to the 30 days up to now.
pub(super) fn window(from: Option<&str>, to: Option<&str>, now: jiff::Timestamp) -> Result<(jiff::Timestamp, jiff::Timestamp), Problem> {
    let to = time("to", to)?.unwrap_or(now);
    let from = time("from", from)?.unwrap_or_else(|| to.checked_sub(DEFAULT_WINDOW).unwrap_or(jiff::Timestamp::MIN));
    if from > to {
        return Err(Problem::bad_parameter(format!("from ({from}) is after to ({to})")));
    }
    Ok((from, to))
}

/// Totals by outcome, decision time percentiles, SLA compliance, escalation, timeout and
/// auto-approval rates, and per step the time waiting and the time to decide, of the requests
/// submitted in `[from, to)`. Admins see every policy; a policy's owners see theirs.
#[utoipa::path(get, path = "/v1/stats", tag = "insights", params(StatsParams), responses((status = 200, body = Object)))]
pub(crate) async fn stats(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<StatsParams>, QueryRejection>) -> Result<Json<Stats>, Problem> {
    let q = query(q)?;
    let (from, to) = window(q.from.as_deref(), q.to.as_deref(), s.now())?;
    Ok(Json(s.stats(&caller, from, to, q.policy).await?))
}

/// One person's pending, urgent (due within 15 minutes) and expiring (within the hour) work,
/// their approvals and rejections in the window, and their median response time. `me` is the
/// caller; others' summaries are for admins.
#[utoipa::path(get, path = "/v1/users/{id}/summary", tag = "insights", params(("id" = String, Path), SummaryParams), responses((status = 200, body = Object)))]
pub(crate) async fn user_summary(
    State(s): State<AppState>,
    Auth(caller): Auth,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Json<Summary>, Problem> {
    let id = path(id)?;
    let q = query(q)?;
    let (from, to) = window(q.from.as_deref(), q.to.as_deref(), s.now())?;
    let user = if id == "me" { caller.id.clone() } else { id };
    Ok(Json(s.user_summary(&caller, &user, from, to).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeatmapParams {
    /// `approver` (step × approver) or `hour_of_week` (step × hour of the week, UTC).
    #[param(inline, value_type = String, pattern = "^(approver|hour_of_week)$")]
    kind: String,
    /// Steps activated at or after this time (RFC 3339); 30 days before `to` by default.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Steps activated before this time (RFC 3339); now by default.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Only this policy's steps.
    policy: Option<String>,
    /// `json` (default) or `svg`, a picture.
    #[param(inline, value_type = Option<String>, pattern = "^(json|svg)$")]
    format: Option<String>,
    /// What an SVG colours by: `wait` (median, default) or `open` (load).
    #[param(inline, value_type = Option<String>, pattern = "^(wait|open)$")]
    measure: Option<String>,
}

/// Where approvals wait: per step and approver (median wait, open now), or per step and hour of
/// the week (median time to decision of steps activated then, mean open). As JSON, or as an SVG
/// picture. Admins see every policy; a policy's owners see theirs.
#[utoipa::path(get, path = "/v1/insights/heatmap", tag = "insights", params(HeatmapParams), responses(
    (status = 200, body = Object),
    (status = 200, description = "with format=svg", content_type = "image/svg+xml", body = String)))]
pub(crate) async fn heatmap(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<HeatmapParams>, QueryRejection>) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    let q = query(q)?;
    let measure = match q.measure.as_deref() {
        None | Some("wait") => Measure::MedianWait,
        Some("open") => Measure::Open,
        Some(other) => return Err(Problem::bad_parameter(format!("measure: `{other}` is neither wait nor open"))),
    };
    let svg = match q.format.as_deref() {
        None | Some("json") => false,
        Some("svg") => true,
        Some(other) => return Err(Problem::bad_parameter(format!("format: `{other}` is neither json nor svg"))),
    };
    let (from, to) = window(q.from.as_deref(), q.to.as_deref(), s.now())?;
    let map = s.heatmap(&caller, &q.kind, from, to, q.policy).await?;
    if !svg {
        return Ok(Json(map).into_response());
    }
    let title = match (map.kind, measure) {
        ("approver", Measure::MedianWait) => "How long each approver keeps each step waiting",
        ("approver", Measure::Open) => "Open now, by step and approver",
        (_, Measure::MedianWait) => "Median time to decision, by the hour of the week a step started (UTC)",
        (_, Measure::Open) => "Steps open at once on average, by hour of the week (UTC)",
    };
    Ok(([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], heatmap::svg(&map, title, measure)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportParams {
    /// Only this policy's requests.
    policy: Option<String>,
    /// The window up to now, in days: 1 to 366, 30 by default (the page offers 7, 30 and 90).
    #[param(minimum = 1, maximum = 366)]
    days: Option<u32>,
}

/// The Insights page as one self-contained HTML file (styles and pictures inside), to keep or
/// send. Admins see every policy; a policy's owners see theirs.
#[utoipa::path(get, path = "/v1/insights/report", tag = "insights", params(ReportParams),
    responses((status = 200, description = "an HTML document", content_type = "text/html", body = String)))]
pub(crate) async fn report(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<ReportParams>, QueryRejection>) -> Result<axum::response::Response, Problem> {
    let q = query(q)?;
    super::web::insights::report(&s, &caller, super::web::insights::Filter { policy: q.policy, days: q.days }).await
}
