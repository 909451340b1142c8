//! The Insights page, for policy owners and admins: a window's statistics, each step's waiting
//! and deciding times, and the bottleneck heatmaps; and the same as one self-contained HTML
//! report (`GET /v1/insights/report`, `signoff report`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signoff_insights::heatmap::{self, Measure, short};
use signoff_insights::stats::{Percentiles, Rate, Stats, Window};

use super::{AppState, Page, Visitor};
use crate::error::Problem;
use crate::service::{Caller, Service};

#[derive(Deserialize, Default)]
pub(crate) struct Filter {
    pub policy: Option<String>,
    /// 7, 30 (the default) or 90.
    pub days: Option<u32>,
}

/// A headline number.
pub(crate) struct Card {
    label: &'static str,
    value: String,
    note: String,
}

pub(crate) struct StepRow {
    name: String,
    activated: usize,
    open: usize,
    waiting: String,
    deciding: String,
    deciding_p90: String,
    sla: String,
}

pub(crate) struct Picture {
    title: &'static str,
    /// SVG markup drawn by `plotters` from ids signoff validated.
    svg: String,
}

/// What the page and the report show.
pub(crate) struct Insights {
    pub heading: String,
    pub window: String,
    pub cards: Vec<Card>,
    pub outcomes: Vec<(&'static str, usize)>,
    pub steps: Vec<StepRow>,
    pub pictures: Vec<Picture>,
    pub policies: Vec<String>,
    pub policy: String,
    pub days: u32,
}

fn pct(r: &Rate) -> String {
    if r.of == 0 { "–".into() } else { format!("{:.0}%", r.rate * 100.0) }
}

fn of(p: &Option<Percentiles>, f: impl Fn(&Percentiles) -> f64) -> String {
    p.as_ref().map_or_else(|| "–".into(), |p| short(f(p)))
}

impl Insights {
    /// The window of `days` up to now, of `policy` (every policy `caller` may see when empty).
    pub(crate) async fn gather(s: &Service, caller: &Caller, policy: Option<String>, days: u32) -> Result<Insights, Problem> {
        let to = s.now();
        let from = to.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days))).unwrap_or(jiff::Timestamp::MIN);
        // One read of the projection for the numbers and both heatmaps.
        let (now, window) = (to.as_millisecond(), Window::between(from, to, policy.clone()));
        let (stats, by_approver, by_hour): (Stats, _, _) = s
            .read_insights(caller, policy.as_deref(), |facts| {
                (signoff_insights::stats::stats(facts.iter().copied(), &window, now), heatmap::by_approver(facts.iter().copied(), &window, now), heatmap::by_hour(facts, &window, now))
            })
            .await?;
        let policies = s.insight_policies(caller);
        let cards = vec![
            Card { label: "Requests", value: stats.requests.to_string(), note: format!("{} pending", stats.outcomes.get("pending").copied().unwrap_or(0)) },
            Card { label: "Decided in (median)", value: of(&stats.decision_time, |p| p.p50), note: format!("p90 {} · p99 {}", of(&stats.decision_time, |p| p.p90), of(&stats.decision_time, |p| p.p99)) },
            Card { label: "SLA met", value: pct(&stats.sla_compliance), note: format!("{} of {}", stats.sla_compliance.count, stats.sla_compliance.of) },
            Card { label: "Escalated", value: pct(&stats.escalation_rate), note: format!("{} requests", stats.escalation_rate.count) },
            Card { label: "Timed out", value: pct(&stats.timeout_rate), note: format!("{} requests", stats.timeout_rate.count) },
            Card { label: "Auto-approved", value: pct(&stats.auto_approval_rate), note: format!("{} requests", stats.auto_approval_rate.count) },
        ];
        let steps = stats
            .steps
            .iter()
            .filter(|st| st.activated > 0)
            .map(|st| StepRow {
                name: format!("{}/{}", st.policy, st.step),
                activated: st.activated,
                open: st.open,
                waiting: of(&st.waiting, |p| p.p50),
                deciding: of(&st.deciding, |p| p.p50),
                deciding_p90: of(&st.deciding, |p| p.p90),
                sla: pct(&st.sla_compliance),
            })
            .collect();
        let pictures = vec![
            Picture { title: "Who keeps each step waiting", svg: heatmap::svg(&by_approver, "Median wait by step and approver (and open now)", Measure::MedianWait) },
            Picture { title: "When steps take longest", svg: heatmap::svg(&by_hour, "Median time to decision by the hour of the week a step started (UTC)", Measure::MedianWait) },
            Picture { title: "When the queue is longest", svg: heatmap::svg(&by_hour, "Steps open at once on average, by hour of the week (UTC)", Measure::Open) },
        ];
        Ok(Insights {
            heading: policy.clone().map_or_else(|| "Insights".to_string(), |p| format!("Insights: {p}")),
            window: format!("Requests submitted {} to {} ({days} days)", from.strftime("%Y-%m-%d"), to.strftime("%Y-%m-%d %H:%M UTC")),
            cards,
            outcomes: stats.outcomes.iter().map(|(k, v)| (*k, *v)).collect(),
            steps,
            pictures,
            policies,
            policy: policy.unwrap_or_default(),
            days,
        })
    }
}

fn days(filter: &Filter) -> Result<u32, Problem> {
    match filter.days.unwrap_or(30) {
        d @ 1..=366 => Ok(d),
        d => Err(Problem::bad_parameter(format!("days: {d} is not between 1 and 366"))),
    }
}

#[derive(askama::Template)]
#[template(path = "insights.html")]
struct InsightsPage {
    user: String,
    csrf: String,
    admin: bool,
    insights: bool,
    view: Insights,
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, filter: Result<Query<Filter>, QueryRejection>) -> Response {
    let filter = filter.map(|Query(f)| f).unwrap_or_default();
    if !s.sees_insights(&visitor.caller) {
        return Page::refused(StatusCode::FORBIDDEN, "Insights are for admins and the owners of a policy (forbidden).");
    }
    let days = match days(&filter) {
        Ok(d) => d,
        Err(e) => return Page::problem(e),
    };
    let policy = filter.policy.filter(|p| !p.is_empty());
    match Insights::gather(&s, &visitor.caller, policy, days).await {
        Ok(view) => Page::of(StatusCode::OK, &InsightsPage { user: visitor.caller.id, csrf: visitor.csrf, admin: visitor.caller.admin, insights: true, view }).into_response(),
        Err(e) => Page::problem(e),
    }
}

#[derive(askama::Template)]
#[template(path = "report.html")]
struct Report<'a> {
    view: Insights,
    css: &'a str,
    generated: String,
}

/// The report as one HTML file with its styles inside.
pub(crate) async fn report(s: &Service, caller: &Caller, filter: Filter) -> Result<Response, Problem> {
    let days = days(&filter)?;
    let view = Insights::gather(s, caller, filter.policy.filter(|p| !p.is_empty()), days).await?;
    let generated = s.now().strftime("%Y-%m-%d %H:%M UTC").to_string();
    let html = askama::Template::render(&Report { view, css: include_str!("../../../assets/app.css"), generated }).map_err(|e| Problem::internal(format!("cannot draw the report: {e}")))?;
    let mut resp = html.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"signoff-insights.html\""));
    Ok(resp)
}
