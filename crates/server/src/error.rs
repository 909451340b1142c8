//! The one error type at the HTTP edge: a status, a stable `code` and a human `detail`,
//! rendered as `application/problem+json` (RFC 9457). Internal failures are logged and answered
//! without their details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use signoff_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Extra members of the problem object (e.g. `errors`).
    pub extra: Option<Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// Every stable error code with its HTTP status: the one list `status_of` and
/// `ApiError::from_problem` read.
const CODES: &[(&str, StatusCode)] = &[
    ("malformed_json", StatusCode::BAD_REQUEST),
    ("bad_parameter", StatusCode::BAD_REQUEST),
    ("too_deep", StatusCode::BAD_REQUEST),
    ("malformed_request", StatusCode::BAD_REQUEST),
    ("unauthenticated", StatusCode::UNAUTHORIZED),
    ("not_an_approver", StatusCode::FORBIDDEN),
    ("separation_of_duties", StatusCode::FORBIDDEN),
    ("forbidden", StatusCode::FORBIDDEN),
    ("not_found", StatusCode::NOT_FOUND),
    ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
    ("step_not_active", StatusCode::CONFLICT),
    ("request_closed", StatusCode::CONFLICT),
    ("acks_pending", StatusCode::CONFLICT),
    ("idempotency_conflict", StatusCode::CONFLICT),
    ("not_terminal", StatusCode::CONFLICT),
    ("already_voted", StatusCode::CONFLICT),
    ("already_an_approver", StatusCode::CONFLICT),
    ("request_timeout", StatusCode::REQUEST_TIMEOUT),
    ("too_large", StatusCode::PAYLOAD_TOO_LARGE),
    ("uri_too_long", StatusCode::URI_TOO_LONG),
    ("headers_too_large", StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("invalid_context", StatusCode::UNPROCESSABLE_ENTITY),
    ("invalid_policy", StatusCode::UNPROCESSABLE_ENTITY),
    ("planning_error", StatusCode::UNPROCESSABLE_ENTITY),
    ("no_eligible_approvers", StatusCode::UNPROCESSABLE_ENTITY),
    ("edit_key_not_allowed", StatusCode::UNPROCESSABLE_ENTITY),
    ("edit_schema_invalid", StatusCode::UNPROCESSABLE_ENTITY),
    ("edit_diff_too_large", StatusCode::UNPROCESSABLE_ENTITY),
    ("delegation_cycle", StatusCode::UNPROCESSABLE_ENTITY),
    ("unknown_policy", StatusCode::UNPROCESSABLE_ENTITY),
    ("comment_required", StatusCode::UNPROCESSABLE_ENTITY),
    ("unknown_user", StatusCode::UNPROCESSABLE_ENTITY),
    ("rate_limited", StatusCode::TOO_MANY_REQUESTS),
    ("resubmit_cooldown", StatusCode::TOO_MANY_REQUESTS),
    ("lineage_limit", StatusCode::TOO_MANY_REQUESTS),
    ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    ("busy", StatusCode::SERVICE_UNAVAILABLE),
    ("link_expired", StatusCode::GONE),
    ("internal", StatusCode::INTERNAL_SERVER_ERROR),
];

/// The HTTP status of every stable error code (500 for one it does not know).
pub fn status_of(code: &str) -> StatusCode {
    CODES.iter().find(|(c, _)| *c == code).map_or(StatusCode::INTERNAL_SERVER_ERROR, |(_, s)| *s)
}

impl ApiError {
    /// The problem a saved reply holds, with its own status and code.
    pub fn from_problem(status: StatusCode, problem: &Value) -> Self {
        let code = problem["code"].as_str().and_then(|c| CODES.iter().find(|(k, _)| *k == c)).map_or("internal", |(k, _)| *k);
        ApiError { status, code, detail: problem["detail"].as_str().unwrap_or("refused").to_string(), extra: None, retry_after: None }
    }

    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status: status_of(code), code, detail: detail.into(), extra: None, retry_after: None }
    }

    pub fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_parameter(detail: impl Into<String>) -> Self {
        Self::new("bad_parameter", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new("not_found", detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            detail: "an internal error occurred; it has been logged".into(),
            extra: None,
            retry_after: None,
        }
    }

    /// The problem object.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("https://signoff.dev/problems/{}", self.code.replace('_', "-")),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.extra, &mut body) {
            map.extend(extra.clone());
        }
        body
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                ApiError::new("unavailable", "the database is unavailable; retry shortly")
            }
            StoreError::Invalid(m) => ApiError::bad_parameter(m),
            StoreError::Corrupt(m) => ApiError::internal(m),
        }
    }
}

/// Renders a problem body with its status.
pub fn problem_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    resp
}

/// Carried on a problem response so the edge can log what was refused, once, in one line.
#[derive(Debug, Clone)]
pub struct Refused {
    pub code: &'static str,
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = problem_response(self.status, self.body());
        resp.extensions_mut().insert(Refused { code: self.code, detail: self.detail.clone() });
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
