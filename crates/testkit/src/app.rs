//! The test app: a real server on 127.0.0.1:0 with its own temporary SQLite database (or a
//! PostgreSQL one), test policies and a directory whose token for user `<id>` is `<id>-token`.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use signoff_engine::directory::token_hash;
use signoff_engine::event::verify_chain;
use signoff_server::{Clock, Config, Database, Sources, SystemClock};

pub const USERS: &[&str] = &["alice", "bob", "mark", "fiona", "frank", "lena", "sam", "sue", "sid", "dana", "vp-sales", "root"];

pub const POLICIES: &[(&str, &str)] = &[
    ("quote.yaml", include_str!("../../../examples/policies/quote-discount.yaml")),
    ("deploy.yaml", include_str!("../../../examples/policies/prod-deploy.yaml")),
    ("seq.yaml", "id: seq\nsteps:\n  - {id: first, approvers: {users: [mark]}}\n  - {id: second, approvers: {users: [fiona]}}\n"),
    ("any.yaml", "id: any\nsteps:\n  - {id: finance, approvers: {groups: [finance]}}\n"),
    ("two-of-three.yaml", "id: two-of-three\nsteps:\n  - {id: sre, approvers: {groups: [sre]}, quorum: 2, rejections: 2}\n"),
    ("all.yaml", "id: all\nsteps:\n  - {id: finance, approvers: {groups: [finance]}, quorum: all}\n"),
    ("cap.yaml", "id: cap\nsteps:\n  - {id: approve, approvers: {users: [mark, vp-sales]}, eligible_if: 'approver.attributes.approval_limit >= amount'}\n"),
    ("edits.yaml", "id: edits\nsteps:\n  - id: review\n    approvers: {users: [mark]}\n    edits: {allowed_keys: [note], max_diff_chars: 10}\n"),
    ("sod.yaml", "id: sod\nsteps:\n  - {id: a, after: [], approvers: {users: [mark, fiona]}}\n  - {id: b, after: [], approvers: {users: [mark, frank]}}\n"),
    ("own.yaml", "id: own\nsteps:\n  - {id: a, approvers: {users: [alice, mark]}}\n"),
    ("expiring.yaml", "id: expiring\nexpires_in: 30m\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n"),
];

pub fn directory_yaml(extra: &str) -> String {
    let mut s = String::from("users:\n");
    for u in USERS {
        let extra = match *u {
            "alice" => ", manager: mark",
            "mark" => ", attributes: {approval_limit: 50000}",
            "vp-sales" => ", attributes: {approval_limit: 1000000}",
            _ => "",
        };
        s.push_str(&format!("  - {{id: {u}, slack: U-{u}, email: {u}@example.com{extra}}}\n"));
    }
    s.push_str(extra);
    s.push_str("groups:\n  sales-managers: [mark]\n  finance: [fiona, frank]\n  legal: [lena]\n  sre: [sam, sue, sid]\nadmins: [root]\ntokens:\n");
    for u in USERS {
        s.push_str(&format!("  - {{user: {u}, sha256: {}}}\n", token_hash(&format!("{u}-token"))));
    }
    s
}

pub struct App {
    pub url: String,
    pub http: reqwest::Client,
    pub service: Arc<signoff_server::Service>,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// The PostgreSQL database of an app on PostgreSQL, dropped after the app.
    pub postgres: Option<signoff_store_postgres::testing::TestDatabase>,
}

/// Which store an app runs on.
pub enum On {
    Sqlite,
    Postgres,
}

/// An app on `store` with the test policies and directory; `None` (after saying so) when the
/// store is PostgreSQL and none is reachable outside CI.
pub async fn spawn_app_on(store: On, what: &str) -> Option<App> {
    match store {
        On::Sqlite => Some(spawn_app().await),
        On::Postgres => {
            let db = signoff_store_postgres::testing::TestDatabase::create(what)?;
            let mut app = spawn_app_full(Arc::new(SystemClock), "", Default::default(), Some(Database::Postgres(db.url.clone()))).await;
            app.postgres = Some(db);
            Some(app)
        }
    }
}

pub async fn spawn_app() -> App {
    spawn_app_with(Arc::new(SystemClock), "").await
}

/// A server with `clock` and `directory_extra` (YAML appended to the directory, e.g.
/// delegations). The timer scheduler does not run: tests fire timers themselves.
pub async fn spawn_app_with(clock: Arc<dyn Clock>, directory_extra: &str) -> App {
    spawn_app_notifying(clock, directory_extra, Default::default()).await
}

/// As `spawn_app_with`, with notification settings.
pub async fn spawn_app_notifying(clock: Arc<dyn Clock>, directory_extra: &str, notify: signoff_server::notify::NotifyConfig) -> App {
    spawn_app_full(clock, directory_extra, notify, None).await
}

/// As `spawn_app`, with what the transport allows each client.
pub async fn spawn_app_limited(limits: signoff_server::transport::Limits) -> App {
    spawn_app_configured(Arc::new(SystemClock), None, |c| c.limits = limits).await
}

/// As `spawn_app_notifying`, on `database` (a temporary SQLite file by default).
pub async fn spawn_app_full(clock: Arc<dyn Clock>, directory_extra: &str, notify: signoff_server::notify::NotifyConfig, database: Option<Database>) -> App {
    build_app(clock, directory_extra, database, |c| c.notify = notify).await
}

/// An app on `database` (a temporary SQLite file by default) with the test policies and
/// directory, and whatever `configure` sets.
pub async fn spawn_app_configured(clock: Arc<dyn Clock>, database: Option<Database>, configure: impl FnOnce(&mut Config)) -> App {
    build_app(clock, "", database, configure).await
}

async fn build_app(clock: Arc<dyn Clock>, directory_extra: &str, database: Option<Database>, configure: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for (name, text) in POLICIES {
        std::fs::write(policies.join(name), text).unwrap();
    }
    let directory = dir.path().join("directory.yaml");
    std::fs::write(&directory, directory_yaml(directory_extra)).unwrap();
    let mut config = Config {
        audit_key: Some(dir.path().join("audit.key")),
        ..Config::new(
            database.unwrap_or_else(|| Database::Sqlite(dir.path().join("signoff.db"))),
            Sources { policies: Some(policies), directory: Some(directory) },
        )
    };
    configure(&mut config);
    let service = signoff_server::build(&config, clock).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(signoff_server::serve_http(service.clone(), listener, async { let _ = stopped.await; }));
    App { url, http: reqwest::Client::new(), service, dir, _stop: stop, postgres: None }
}

impl App {
    pub async fn call(&self, user: &str, method: reqwest::Method, path: &str, body: Option<Value>, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(format!("{user}-token"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let is_problem = resp.headers().get("content-type").is_some_and(|c| c == "application/problem+json");
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_client_error() || status.is_server_error() {
            assert!(is_problem, "errors are problem+json: {status} {body}");
            assert_eq!(body["status"], status.as_u16(), "{body}");
        }
        (status, body)
    }

    pub async fn get(&self, user: &str, path: &str) -> (StatusCode, Value) {
        self.call(user, reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, user: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(user, reqwest::Method::POST, path, Some(body), None).await
    }

    pub async fn submit(&self, user: &str, policy: &str, context: Value) -> Value {
        let (status, body) = self.post(user, "/v1/requests", json!({"policy": policy, "context": context})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn act(&self, user: &str, id: &str, action: Value) -> (StatusCode, Value) {
        self.post(user, &format!("/v1/requests/{id}/actions"), action).await
    }

    pub async fn approve(&self, user: &str, id: &str, step: &str) -> Value {
        let (status, body) = self.act(user, id, json!({"action": "approve", "step": step})).await;
        assert_eq!(status, StatusCode::OK, "{user} approving {step}: {body}");
        body
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get("root", &format!("/v1/requests/{id}/events")).await;
        assert_eq!(status, StatusCode::OK);
        let items = body["items"].as_array().unwrap().clone();
        let typed: Vec<signoff_engine::Event> = serde_json::from_value(Value::Array(items.clone())).unwrap();
        verify_chain(&typed).unwrap();
        items
    }
}

pub fn quote(discount: f64, margin: f64) -> Value {
    json!({"quote": {"total": 48000, "discount": discount, "margin": margin, "nonstandard_clause": false}})
}

pub fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

