//! The one error of the service: a stable `Code` (its HTTP status comes with it), a human
//! `detail`, and what a client may need besides (`errors`, when to retry). Internal failures
//! are logged and answered without their details. `http::problem` renders it as
//! `application/problem+json` (RFC 9457).

use serde_json::{Value, json};
use signoff_engine::Code;
use signoff_store::StoreError;

#[derive(Debug, Clone)]
pub struct Problem {
    pub code: Code,
    pub detail: String,
    /// Extra members of the problem object (e.g. `errors`).
    pub extra: Option<Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Problem { code, detail: detail.into(), extra: None, retry_after: None }
    }

    /// The problem a saved reply holds (`internal` if it names no code this server knows).
    pub fn from_body(problem: &Value) -> Self {
        let code = problem["code"].as_str().and_then(Code::parse).unwrap_or(Code::Internal);
        Problem::new(code, problem["detail"].as_str().unwrap_or("refused"))
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
        Self::new(Code::BadParameter, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Code::NotFound, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Problem::new(Code::Internal, "an internal error occurred; it has been logged")
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    /// The problem object.
    pub fn body(&self) -> Value {
        let status = self.status();
        let mut body = json!({
            "type": format!("https://signoff.dev/problems/{}", self.code.as_str().replace('_', "-")),
            "title": reason(status),
            "status": status,
            "detail": self.detail,
            "code": self.code,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.extra, &mut body) {
            map.extend(extra.clone());
        }
        body
    }
}

/// The reason phrase of an error status, as the problem's `title`.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                Problem::new(Code::Unavailable, "the database is unavailable; retry shortly")
            }
            StoreError::Invalid(m) => Problem::bad_parameter(m),
            StoreError::Corrupt(m) => Problem::internal(m),
        }
    }
}

/// Why the server could not start; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong; the message names it (`notify.webhooks[0].url: …`).
    #[error("{0}")]
    Setting(String),
    /// A policy or the directory does not load.
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The data directory cannot be created.
    #[error("data: cannot create {}: {error}", path.display())]
    DataDir { path: std::path::PathBuf, error: std::io::Error },
    /// The database does not open (or does not take the policies).
    #[error("database: {}{error}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
    Database { file: Option<std::path::PathBuf>, error: StoreError },
}

impl From<StoreError> for StartError {
    fn from(error: StoreError) -> Self {
        StartError::Database { file: None, error }
    }
}
