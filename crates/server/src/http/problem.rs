//! How a `Problem` leaves: `application/problem+json` (RFC 9457) with its code's status, and the
//! `Refused` extension the edge logs it by.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use signoff_engine::Code;

use crate::error::Problem;

/// The HTTP status of a code.
pub fn status(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
    pub code: Code,
    pub detail: String,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = status(self.code);
        let mut resp = problem_response(status, self.body());
        resp.extensions_mut().insert(Refused { code: self.code, detail: self.detail.clone() });
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_its_title_is_the_reason_phrase() {
        for &code in Code::ALL {
            let status = status(code);
            assert_eq!(status.as_u16(), code.http_status(), "{code}");
            let body = Problem::new(code, "x").body();
            assert_eq!(body["title"].as_str(), status.canonical_reason(), "{code}");
            assert_eq!(body["code"].as_str(), Some(code.as_str()));
        }
    }
}
