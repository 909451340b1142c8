//! The HTTP edge: one module per resource (requests, policies, live, admin, operations,
//! openapi) and per integration (slack, email), each owning its routes, and the web inbox
//! (`web`); handlers parse,
//! authenticate, call the service and render. Every failure, including a malformed body, an
//! unknown route or a panic, leaves as `application/problem+json`.

mod admin;
mod audit;
mod body;
mod email;
mod extract;
mod insights;
mod live;
pub mod openapi;
mod operations;
mod people;
mod policies;
pub mod problem;
mod requests;
mod slack;
mod throttle;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use signoff_engine::Code;

use crate::error::Problem;
use crate::service::Service;

pub use extract::Auth;

type AppState = Arc<Service>;

/// `/metrics` alone, for `--metrics-listen`.
pub fn metrics_router(service: Arc<Service>) -> Router {
    Router::new().route("/metrics", axum::routing::get(operations::metrics_text)).with_state(service)
}

pub fn router(service: Arc<Service>) -> Router {
    let v1 = Router::new()
        .merge(requests::routes())
        .merge(live::routes())
        .merge(policies::routes())
        .merge(admin::routes())
        .merge(people::routes())
        .merge(audit::routes())
        .merge(insights::routes())
        .merge(openapi::v1_routes());
    Router::new()
        .nest("/v1", v1)
        .merge(operations::routes())
        .merge(openapi::routes())
        .merge(slack::routes())
        .merge(email::routes())
        .merge(web::routes())
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async { Problem::new(Code::MethodNotAllowed, "this route does not take that method") })
        // `read_body` bounds every body (`Limits::max_body_bytes`) before an extractor sees it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // Limited after the body is read: a refusal leaves the connection ready for the next call.
        .layer(middleware::from_fn_with_state(service.clone(), throttle::by_address))
        .layer(middleware::from_fn_with_state(service.clone(), body::read_body))
        .layer(middleware::from_fn(operations::record_metrics))
        // A span per call (method, route, status) around everything it logs, continuing the
        // caller's trace (`traceparent`); `record_metrics` logs failures, once.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str());
                    let span = tracing::info_span!("http", otel.name = %format!("{} {route}", req.method()), otel.kind = "server",
                        http.request.method = %req.method(), http.route = route, http.response.status_code = tracing::field::Empty);
                    crate::traces::continue_from(&span, req.headers());
                    span
                })
                .on_response(|resp: &Response, _: std::time::Duration, span: &tracing::Span| {
                    span.record("http.response.status_code", resp.status().as_u16());
                })
                .on_failure(()),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            Problem::internal("a handler panicked").into_response()
        }))
        .with_state(service)
}

/// An error answer that also closes the connection (the rest of the request was not read).
fn closing(e: Problem) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
