//! The web inbox: server-rendered pages (askama templates in `templates/`, checked when the
//! server compiles) for people who approve, served at `/` by the same binary, with every asset
//! from the binary. Pages send a strict Content-Security-Policy: no inline script or style,
//! nothing from another origin.

mod admin;
mod field;
mod graph;
mod inbox;
pub(crate) mod insights;
mod mine;
mod new;
mod request;
pub mod session;
mod sso;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::AppState;
use crate::error::Problem;
use crate::service::{Caller, Service};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(inbox::page))
        .route("/mine", get(mine::page))
        .route("/new", get(new::page).post(new::post))
        .route("/admin", get(admin::page))
        .route("/insights", get(insights::page))
        .route("/admin/reload", post(admin::reload))
        .route("/requests/{id}", get(request::page))
        .route("/requests/{id}/act", post(request::act))
        .route("/signin", get(session::page).post(session::sign_in))
        .route("/signin/sso", get(sso::start))
        .route("/signin/sso/callback", get(sso::callback))
        .route("/signout", post(session::sign_out))
        .route("/assets/{name}", get(asset))
        // Pages and assets go out compressed to a browser that takes it (never the SSE feeds,
        // which are not under these routes and which the layer's predicate leaves alone anyway).
        .layer(tower_http::compression::CompressionLayer::new())
}

/// What every page sends besides its HTML.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A rendered page with the headers every page carries.
pub(super) struct Page(StatusCode, Result<String, askama::Error>);

impl Page {
    pub(super) fn of(status: StatusCode, template: &impl Template) -> Page {
        Page(status, template.render())
    }

    /// A page that says what was refused and offers the way back.
    pub(super) fn refused(status: StatusCode, message: &str) -> Response {
        Page::of(status, &Refused { message }).into_response()
    }

    /// The answer to a form that did not come from signoff's own page.
    pub(super) fn not_ours() -> Response {
        Page::refused(StatusCode::FORBIDDEN, "This form did not come from signoff's own page.")
    }

    /// `refused` for a problem the service answered, with its status.
    pub(super) fn problem(e: Problem) -> Response {
        Page::refused(super::problem::status(e.code), &sentence(&e))
    }
}

/// A page for a call refused by a rate limit, with its `Retry-After`.
pub(super) fn limited(e: Problem) -> Response {
    let retry = e.retry_after;
    let mut resp = Page::problem(e);
    if let Some(secs) = retry {
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    resp
}

/// A problem as a page says it: its detail, then its code.
pub(super) fn sentence(e: &Problem) -> String {
    format!("{} ({})", e.detail, e.code)
}

/// A time to the minute, as the pages show times in lists.
pub(super) fn minute(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// How far `at` is from `now`, as a person says it: `in 8 h 5 min`, `in 12 min`, `3 h ago`.
/// (The script's countdowns say it the same way: `assets/app.js`, `relative`.)
pub(super) fn relative(at: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = at.duration_since(now).as_secs();
    let (ahead, secs) = (secs >= 0, secs.unsigned_abs());
    let span = match secs {
        0..60 => "under a minute".to_string(),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 if secs % 3600 >= 60 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    };
    if ahead { format!("in {span}") } else { format!("{span} ago") }
}

/// A time a step falls due or a timer fires: its instant (for the script's countdown), the
/// minute it falls on, and how far away it is now.
pub(super) struct When {
    pub iso: String,
    pub minute: String,
    pub relative: String,
    pub past: bool,
}

impl When {
    pub(super) fn of(t: jiff::Timestamp, now: jiff::Timestamp) -> When {
        When { iso: t.to_string(), minute: minute(t), relative: relative(t, now), past: t <= now }
    }
}

/// A prediction in words: `about 3h (9 in 10 within 9h)`; empty without a median.
pub(super) fn expected(e: &signoff_insights::predict::Estimate) -> String {
    use signoff_insights::heatmap::short;
    let Some(p50) = e.p50 else { return String::new() };
    let p90 = e.p90.map_or_else(|| "longer than seen before".to_string(), |p| format!("within {}", short(p)));
    format!("about {} (9 in 10 {p90})", short(p50))
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let (status, html) = match self.1 {
            Ok(html) => (self.0, html),
            Err(e) => {
                tracing::error!(error = %e, "a page did not render");
                (StatusCode::INTERNAL_SERVER_ERROR, "<!doctype html><title>signoff</title><p>This page could not be shown; it has been logged.".into())
            }
        };
        let mut resp = (status, Html(html)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

#[derive(Template)]
#[template(path = "refused.html")]
struct Refused<'a> {
    message: &'a str,
}

/// The sign-in page, with the demo users when the demo directory is loaded.
#[derive(Template)]
#[template(path = "signin.html")]
pub(super) struct SignIn {
    error: Option<String>,
    demo: Vec<(String, String)>,
    /// Single sign-on is configured: offer it first.
    sso: bool,
}

impl SignIn {
    pub(super) fn new(service: &Service, error: Option<&str>) -> SignIn {
        SignIn { error: error.map(str::to_string), demo: service.catalog().demo_tokens.clone(), sso: service.oidc().is_some() }
    }
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let status = if self.error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        Page::of(status, &self).into_response()
    }
}

/// The signed-in person of a page; without a live session, the page sends them to sign in.
pub(super) struct Visitor {
    pub caller: Caller,
    /// For the page's forms and its script's API calls.
    pub csrf: String,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, service: &AppState) -> Result<Self, Response> {
        let Some(secret) = session::secret(&parts.headers) else { return Err(Redirect::to("/signin").into_response()) };
        match service.session_caller(&secret).await {
            Ok(Some((caller, session))) => Ok(Visitor { caller, csrf: session.csrf }),
            Ok(None) => Err(Redirect::to("/signin").into_response()),
            Err(e) => Err(Page::problem(e)),
        }
    }
}

impl Visitor {
    /// Whether a form came from one of signoff's own pages: it carries this session's CSRF
    /// token and no other site's `Origin`. (`Page::not_ours` answers one that did not.)
    pub(super) fn posted_here(&self, csrf: &str, headers: &axum::http::HeaderMap) -> bool {
        csrf == self.csrf && session::same_origin(headers)
    }
}

/// The stylesheet and the script, from the binary, each at an address that names its content
/// (`/assets/app.3f2a9c01.css`): a browser keeps them for a year, and a new build is a new
/// address.
pub(crate) struct Asset {
    pub href: String,
    body: &'static str,
    content_type: &'static str,
}

impl Asset {
    fn named(name: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
        let digest = signoff_engine::canonical::digest_bytes(body.as_bytes());
        let short = &digest["sha256:".len()..][..12];
        Asset { href: format!("/assets/{name}.{short}.{ext}"), body, content_type }
    }
}

static ASSETS: std::sync::LazyLock<[Asset; 2]> = std::sync::LazyLock::new(|| {
    [
        Asset::named("app", "css", include_str!("../../../assets/app.css"), "text/css; charset=utf-8"),
        Asset::named("app", "js", include_str!("../../../assets/app.js"), "text/javascript; charset=utf-8"),
    ]
});

/// The stylesheet's address, for the pages' `<link>`.
pub(crate) fn stylesheet() -> &'static str {
    &ASSETS[0].href
}

/// The script's address: the one script, which keeps live pages up to date and runs dialogs.
pub(crate) fn script() -> &'static str {
    &ASSETS[1].href
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.href.strip_prefix("/assets/") == Some(name.as_str())) else {
        return Problem::not_found("no such asset").into_response();
    };
    let mut resp = a.body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
