//! The HTTP edge: one module per resource (requests, policies, live, admin, operations,
//! openapi) and per integration (slack, email), each owning its routes, and the web inbox
//! (`web`); handlers parse,
//! authenticate, call the service and render. Every failure, including a malformed body, an
//! unknown route or a panic, leaves as `application/problem+json`.

mod admin;
mod body;
mod email;
mod extract;
mod live;
pub mod openapi;
mod operations;
mod policies;
pub mod problem;
mod requests;
mod slack;
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
        .layer(middleware::from_fn_with_state(service.clone(), body::read_body))
        .layer(middleware::from_fn(operations::record_metrics))
        // A span per call (method, path) around everything it logs; `record_metrics` logs failures, once.
        .layer(tower_http::trace::TraceLayer::new_for_http().on_failure(()))
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
