//! The HTTP client behind the client commands, and their stable `key=value` output.

use std::io::Read;
use std::path::Path;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use signoff_api::{ActionBody, ActionFields, Inbox, Me, PlanBody, PolicyList, Problem, RequestState, SubmitBody, Task};
use signoff_engine::{Policy, StepState, StepStatus};

use crate::Remote;

/// Why a client command failed, mapped to its exit code.
pub enum Failure {
    /// The server refused: exit 1 with the problem's code and detail.
    Refused { code: String, detail: String },
    /// Bad usage or input: exit 2.
    Usage(String),
    /// The server cannot be reached: exit 3.
    Unreachable(String),
    /// `wait` gave up while the request was still pending: exit 4.
    TimedOut(String),
}

/// Exit code of `signoff wait` when its `--timeout` passes first.
pub const EXIT_TIMED_OUT: u8 = 4;

impl Failure {
    pub fn report(self) -> u8 {
        match self {
            Failure::Refused { code, detail } => {
                eprintln!("error: {code}: {detail}");
                if let Some(hint) = hint(&code) {
                    eprintln!("hint: {hint}");
                }
                1
            }
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                2
            }
            Failure::Unreachable(m) => {
                eprintln!("error: {m}");
                3
            }
            Failure::TimedOut(m) => {
                eprintln!("error: {m}");
                EXIT_TIMED_OUT
            }
        }
    }
}

/// What to do next after a refusal, where the code alone does not say.
fn hint(code: &str) -> Option<&'static str> {
    match code {
        "unauthenticated" => Some("the server does not know this token; with the demo directory each user's token is <id>-token (e.g. alice-token)"),
        "not_an_approver" => Some("`signoff inbox` lists the steps you can act on"),
        "acks_pending" => Some("acknowledge each item first: signoff action ID --step STEP --action acknowledge --item ITEM"),
        _ => None,
    }
}

pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    /// A client of `remote`'s server (trusting its CA, presenting its client certificate) that
    /// sends `token`.
    pub fn new(remote: &Remote, token: Option<String>) -> Result<Client, Failure> {
        let read = |flag: &str, path: &Path| std::fs::read(path).map_err(|e| Failure::Usage(format!("{flag}: {}: {e}", path.display())));
        let ca = match &remote.ca_cert {
            Some(path) => Some(
                reqwest::Certificate::from_pem(&read("--ca-cert", path)?)
                    .map_err(|e| Failure::Usage(format!("--ca-cert: {}: not a PEM certificate: {e}", path.display())))?,
            ),
            None => None,
        };
        let identity = match (&remote.client_cert, &remote.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let mut pem = read("--client-cert", cert)?;
                pem.push(b'\n');
                pem.extend(read("--client-key", key)?);
                Some(
                    reqwest::Identity::from_pem(&pem)
                        .map_err(|e| Failure::Usage(format!("--client-cert, --client-key: not a PEM certificate and key: {e}")))?,
                )
            }
            _ => return Err(Failure::Usage("--client-cert and --client-key go together".into())),
        };
        let make = || {
            // (The user agent names the CLI in the audit trail's origin of what it does.)
            let mut builder = reqwest::Client::builder().user_agent(concat!("signoff-cli/", env!("CARGO_PKG_VERSION")));
            if let Some(ca) = &ca {
                builder = builder.add_root_certificate(ca.clone());
            }
            if let Some(identity) = &identity {
                builder = builder.identity(identity.clone());
            }
            builder
        };
        let (http, trusted) = signoff_server::outgoing_client(make).map_err(|e| Failure::Usage(format!("cannot set up the HTTP client: {e}")))?;
        // Without the system's authorities, plain HTTP (a container's health check) still works.
        if !trusted && ca.is_none() && remote.url.starts_with("https:") {
            return Err(Failure::Usage("this system has no CA certificates to check the server's with: install them (ca-certificates) or pass --ca-cert".into()));
        }
        Ok(Client { http, url: remote.url.trim_end_matches('/').to_string(), token })
    }

    /// A client for `remote`, once its URL is one and it has a token.
    pub fn from(remote: &Remote) -> Result<Client, Failure> {
        check_url(&remote.url)?;
        match &remote.token {
            Some(t) if !t.trim().is_empty() => Client::new(remote, Some(t.clone())),
            _ => Err(Failure::Usage(
                "no token: set SIGNOFF_TOKEN or pass --token (with the demo directory each user's token is <id>-token, e.g. SIGNOFF_TOKEN=alice-token)".into(),
            )),
        }
    }

    /// Sends `body` (JSON) and reads the answer as a `T`, keeping its JSON for `--json`.
    pub async fn send<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&impl Serialize>, key: Option<&str>) -> Result<Answer<T>, Failure> {
        let body = body.map(serde_json::to_value).transpose().map_err(|e| Failure::Usage(format!("cannot write the request: {e}")))?;
        let raw = self.call(method, path, body, key).await?;
        let value = serde_json::from_value(raw.clone()).map_err(|e| {
            Failure::Unreachable(format!("{}{path} answered something this client cannot read ({e}); is the server the same version?", self.url))
        })?;
        Ok(Answer { value, raw })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>, Failure> {
        self.send(Method::GET, path, None::<&()>, None).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> Result<Value, Failure> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| unreachable(&self.url, &e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Failure::Unreachable(format!("{}: the answer broke off: {e}", self.url)))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        Err(refusal(status, value))
    }

    /// A GET whose answer is read as it arrives (`Response::chunk`); a refusal as `call`'s.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| unreachable(&self.url, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(refusal(status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

fn refusal(status: reqwest::StatusCode, body: Value) -> Failure {
    match serde_json::from_value::<Problem>(body) {
        Ok(p) => Failure::Refused { code: p.code, detail: p.detail },
        Err(_) => Failure::Refused { code: "http_error".into(), detail: format!("HTTP {status}") },
    }
}

/// An answer read as its wire type, with the JSON it came as (what `--json` prints).
pub struct Answer<T> {
    pub value: T,
    pub raw: Value,
}

/// A usage error unless `url` is an http(s) URL with a host.
pub fn check_url(url: &str) -> Result<(), Failure> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(Failure::Usage(format!("--url / SIGNOFF_URL `{url}`: the scheme must be http or https, not `{}` (e.g. http://127.0.0.1:7800)", u.scheme()))),
        Err(e) => Err(Failure::Usage(format!("--url / SIGNOFF_URL `{url}` is not a URL ({e}); e.g. http://127.0.0.1:7800"))),
    }
}

fn unreachable(url: &str, e: &reqwest::Error) -> Failure {
    if e.is_connect() || e.is_timeout() {
        Failure::Unreachable(format!(
            "nothing answers at {url}: start a server with `signoff serve` (or point --url / SIGNOFF_URL at one)"
        ))
    } else {
        Failure::Unreachable(format!("cannot reach the server at {url}: {e}"))
    }
}

/// `at` (RFC 3339) as UTC with exactly three fractional digits, so every time prints alike.
pub fn time(v: &Value) -> String {
    let Some(text) = v.as_str() else { return "-".into() };
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => format!("{}.{:03}Z", t.strftime("%Y-%m-%dT%H:%M:%S"), t.subsec_millisecond()),
        Err(_) => text.to_string(),
    }
}

/// `key=value`, the value quoted (as a JSON string) when it has spaces, quotes or is empty, so
/// every line splits on whitespace.
pub fn kv(key: &str, value: &str) -> String {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == '"') {
        format!("{key}={}", Value::String(value.to_string()))
    } else {
        format!("{key}={value}")
    }
}

fn text<'a>(v: &'a Value, or: &'a str) -> &'a str {
    v.as_str().unwrap_or(or)
}

fn read_json(path: &Path) -> Result<Value, Failure> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::Usage(format!("stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    }
    serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("{}: not valid JSON: {e}", path.display())))
}

fn finish(result: Result<(), Failure>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(f) => f.report(),
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

/// A time as `time` prints it; `-` for none.
fn at(t: Option<jiff::Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| format!("{}.{:03}Z", t.strftime("%Y-%m-%dT%H:%M:%S"), t.subsec_millisecond()))
}

/// `request=… status=… steps=N` (N counts the steps not skipped).
pub fn submit_line(state: &RequestState) -> String {
    let steps = state.steps.iter().filter(|s| s.status != StepStatus::Skipped).count();
    format!("request={} status={} steps={steps}", state.id, state.status.as_str())
}

/// The lines of `signoff status`.
pub fn status_lines(state: &RequestState) -> Vec<String> {
    let due = state
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Active && s.due_at.is_some())
        .map(|s| format!("{}:{}", s.id, at(s.due_at)))
        .collect::<Vec<_>>()
        .join(",");
    let mut lines = vec![
        format!("status={}", state.status.as_str()),
        format!("current_tasks={}", list(state.current_tasks.iter().cloned())),
        format!("pending_reasons={}", list(state.pending_reasons.iter().cloned())),
        format!("due={due}"),
    ];
    if let Some(reason) = &state.decision_reason {
        lines.push(format!("decision_reason={reason}"));
    }
    for step in &state.steps {
        let mut line = format!("step={} status={} progress={}", step.id, step.status.as_str(), progress(step));
        if step.status == StepStatus::Active {
            line.push_str(&format!(" approvers={}", list(step.approvers.iter().cloned())));
            if step.due_at.is_some() {
                line.push_str(&format!(" due={}", at(step.due_at)));
            }
            if step.escalation_level > 0 {
                line.push_str(&format!(" escalation_level={}", step.escalation_level));
            }
        }
        lines.push(line);
    }
    lines
}

/// A step's approvals toward its quorum, `1/2` (`1/all` before an `all` quorum is resolved).
pub fn progress(step: &StepState) -> String {
    format!("{}/{}", step.approvals.len(), step.quorum)
}

/// `manager:1/1,finance:0/1`: each step that is not skipped, with its progress.
fn steps_progress(state: &RequestState) -> String {
    state.steps.iter().filter(|s| s.status != StepStatus::Skipped).map(|s| format!("{}:{}", s.id, progress(s))).collect::<Vec<_>>().join(",")
}

/// The soonest due time of a request's active steps.
fn soonest_due(state: &RequestState) -> String {
    at(state.steps.iter().filter(|s| s.status == StepStatus::Active).filter_map(|s| s.due_at).min())
}

fn print(remote: &Remote, value: &Value, lines: Vec<String>) {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        for l in lines {
            println!("{l}");
        }
    }
}

pub async fn submit(
    remote: &Remote,
    policy: &str,
    context: &Path,
    subject: Option<String>,
    title: Option<String>,
    resubmits: Option<String>,
    key: Option<String>,
) -> u8 {
    finish(async {
        let context = read_json(context)?;
        let body = SubmitBody { policy: policy.into(), title, subject, context, evidence: Vec::new(), resubmits: resubmits.map(Into::into) };
        let state: Answer<RequestState> = Client::from(remote)?.send(Method::POST, "/v1/requests", Some(&body), key.as_deref()).await?;
        print(remote, &state.raw, vec![submit_line(&state.value)]);
        Ok(())
    }.await)
}

pub async fn status(remote: &Remote, id: &str) -> u8 {
    finish(async {
        let state: Answer<RequestState> = Client::from(remote)?.get(&format!("/v1/requests/{id}")).await?;
        print(remote, &state.raw, status_lines(&state.value));
        Ok(())
    }.await)
}

pub struct ActionArgs {
    pub action: String,
    pub step: Option<String>,
    pub comment: Option<String>,
    pub item: Option<String>,
    pub to: Option<String>,
    pub edits: Option<String>,
}

/// `request=… status=… step=… step_status=…`
pub fn action_line(state: &RequestState, step: Option<&str>) -> String {
    let mut line = format!("request={} status={}", state.id, state.status.as_str());
    if let Some(step) = step {
        let status = state.step(step).map_or("", |s| s.status.as_str());
        line.push_str(&format!(" step={step} step_status={status}"));
    }
    line
}

/// Actions that name a step.
const STEP_ACTIONS: &[&str] = &["approve", "reject", "acknowledge", "delegate"];

pub async fn action(remote: &Remote, id: &str, a: ActionArgs, key: Option<String>) -> u8 {
    finish(async {
        let client = Client::from(remote)?;
        if a.step.is_none() && STEP_ACTIONS.contains(&a.action.as_str()) {
            // Say which steps could be meant, if the request can be read.
            let active = match client.get::<RequestState>(&format!("/v1/requests/{id}")).await {
                Ok(state) => format!(" (active steps of {id}: {})", list(state.value.current_tasks.into_iter())),
                Err(_) => String::new(),
            };
            return Err(Failure::Usage(format!("--step is required for {}{active}", a.action)));
        }
        for (needed, flag, for_action) in [(a.action == "acknowledge", &a.item, "--item"), (a.action == "delegate", &a.to, "--to")] {
            if needed && flag.is_none() {
                return Err(Failure::Usage(format!("{for_action} is required for {}", a.action)));
            }
        }
        if a.action == "reject" && a.comment.is_none() {
            return Err(Failure::Usage("--comment is required for reject: say why".into()));
        }
        let edits: Option<Value> = match &a.edits {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|e| Failure::Usage(format!("--edits: not valid JSON: {e}")))?),
        };
        let step = a.step.clone();
        let fields = ActionFields { action: a.action, step: a.step, comment: a.comment, edits, item: a.item, to: a.to };
        let body = ActionBody::try_from(fields).map_err(Failure::Usage)?;
        let state: Answer<RequestState> = client.send(Method::POST, &format!("/v1/requests/{id}/actions"), Some(&body), key.as_deref()).await?;
        print(remote, &state.raw, vec![action_line(&state.value, step.as_deref())]);
        Ok(())
    }.await)
}

/// One history line: `seq=… at=… type=… actor=… step=…` and the event's own fields.
pub fn event_line(e: &Value) -> String {
    let mut parts = vec![
        format!("seq={}", e["seq"]),
        format!("at={}", time(&e["at"])),
        kv("type", text(&e["type"], "")),
        kv("actor", text(&e["actor"], "")),
        kv("step", text(&e["step"], "-")),
    ];
    if let Value::Object(m) = &e["data"] {
        for (k, v) in m.iter().filter(|(k, v)| !v.is_null() && !matches!(k.as_str(), "context" | "steps" | "evidence" | "separation")) {
            match v {
                // One level of an object as `key.member=value` (the policy's id, version, hash).
                Value::Object(members) => parts.extend(members.iter().map(|(m, v)| kv(&format!("{k}.{m}"), &scalar(k, v)))),
                other => parts.push(kv(k, &scalar(k, other))),
            }
        }
    }
    parts.join(" ")
}

/// A history value as text: times at fixed precision, lists as `[a,b]`, the rest as JSON.
fn scalar(key: &str, v: &Value) -> String {
    match v {
        Value::String(_) if key.ends_with("_at") || key == "due" || key == "next_due" => time(v),
        Value::String(s) => s.clone(),
        Value::Array(items) => list(items.iter().map(|i| match i {
            Value::String(s) if key.ends_with("_at") => time(&Value::String(s.clone())),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        other => other.to_string(),
    }
}

pub async fn history(remote: &Remote, id: &str) -> u8 {
    finish(async {
        let events = Client::from(remote)?.call(Method::GET, &format!("/v1/requests/{id}/events"), None, None).await?;
        let lines = events["items"].as_array().into_iter().flatten().map(event_line).collect();
        print(remote, &events, lines);
        Ok(())
    }.await)
}

/// One inbox line: what the task is, whose, under which policy, and when it is due.
pub fn task_line(t: &Task, with_approver: bool) -> String {
    let what = t.title.as_deref().or(t.subject.as_deref()).unwrap_or("-");
    let mut parts = vec![kv("request", &t.request), kv("step", &t.step)];
    if with_approver {
        parts.push(kv("approver", &t.approver));
    }
    parts.extend([
        kv("policy", &t.policy),
        kv("requester", t.requester.as_deref().unwrap_or("-")),
        kv("title", what),
        format!("due={}", at(t.due_at)),
        kv("reason", t.reason.as_deref().unwrap_or("-")),
    ]);
    parts.join(" ")
}

pub async fn inbox(remote: &Remote, all: bool) -> u8 {
    finish(async {
        let path = if all { "/v1/tasks" } else { "/v1/inbox" };
        let inbox: Answer<Inbox> = Client::from(remote)?.get(path).await?;
        let lines = inbox.value.items.iter().map(|t| task_line(t, all)).collect();
        print(remote, &inbox.raw, lines);
        Ok(())
    }.await)
}

/// What `signoff requests` filters on.
pub struct RequestFilter {
    pub status: Option<String>,
    pub policy: Option<String>,
    pub overdue: bool,
    pub limit: u32,
}

/// One line per request: `request=… status=… policy=… subject=… requester=… due=… steps=…`.
pub fn request_line(r: &RequestState) -> String {
    [
        kv("request", &r.id),
        kv("status", r.status.as_str()),
        kv("policy", &r.policy.id),
        kv("subject", r.subject.as_deref().unwrap_or("-")),
        kv("requester", &r.requester),
        format!("due={}", soonest_due(r)),
        format!("steps={}", steps_progress(r)),
    ]
    .join(" ")
}

/// Requests the caller may see: open ones soonest due first; with `--status` other than
/// pending, newest first (only open requests have a due time).
pub async fn requests(remote: &Remote, f: RequestFilter) -> u8 {
    finish(async {
        let mut query = vec![format!("limit={}", f.limit)];
        let by_due = f.status.as_deref().is_none_or(|s| s == "pending");
        query.push(format!("sort={}", if by_due { "due" } else { "newest" }));
        if let Some(s) = &f.status {
            query.push(format!("status={}", urlencode(s)));
        }
        if let Some(p) = &f.policy {
            query.push(format!("policy={}", urlencode(p)));
        }
        if f.overdue {
            query.push("overdue=true".into());
        }
        let page: Answer<signoff_api::RequestPage> = Client::from(remote)?.get(&format!("/v1/requests?{}", query.join("&"))).await?;
        let lines = page.value.items.iter().map(request_line).collect();
        print(remote, &page.raw, lines);
        Ok(())
    }.await)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub async fn whoami(remote: &Remote) -> u8 {
    finish(async {
        let me: Answer<Me> = Client::from(remote)?.get("/v1/me").await?;
        let m = &me.value;
        let line = [
            kv("user", &m.id),
            kv("name", m.name.as_deref().unwrap_or("-")),
            format!("groups={}", list(m.groups.iter().cloned())),
            kv("manager", m.manager.as_deref().unwrap_or("-")),
            format!("admin={}", m.admin),
        ]
        .join(" ");
        print(remote, &me.raw, vec![line]);
        Ok(())
    }.await)
}

pub async fn policy_list(remote: &Remote) -> u8 {
    finish(async {
        let policies: Answer<PolicyList> = Client::from(remote)?.get("/v1/policies").await?;
        let lines = policies
            .value
            .items
            .iter()
            .map(|p| [kv("policy", &p.id), format!("version={}", p.version), kv("hash", &p.hash), kv("title", p.title.as_deref().unwrap_or("-"))].join(" "))
            .collect();
        print(remote, &policies.raw, lines);
        Ok(())
    }.await)
}

/// A fresh random token for `user` and the directory line that lets it in (offline).
pub fn token_new(user: &str) -> u8 {
    if !signoff_engine::policy::valid_id(user) {
        return Failure::Usage(format!("`{user}` is not a user id ([a-z0-9][a-z0-9._-]*)")).report();
    }
    let token = match signoff_server::service::random_hex() {
        Ok(hex) => format!("so_{hex}"),
        Err(e) => return Failure::Usage(format!("no randomness from the system: {e}")).report(),
    };
    println!("token={token}");
    println!("# add under `tokens:` in the directory file (only the hash is stored; keep the token secret):");
    println!("  - {{ user: {user}, sha256: {} }}", signoff_engine::directory::token_hash(&token));
    0
}

/// The policy files `paths` name: files as given, directories as their `*.yaml` / `*.yml`.
fn policy_files(paths: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = signoff_server::catalog::policy_files(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if found.is_empty() {
                return Err(format!("{}: no *.yaml or *.yml files in this directory", p.display()));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Offline validation: every problem of every file (exit 1 if any), and warnings against the
/// directory (`directory`, else the demo directory), which never fail the check.
pub fn policy_check(paths: &[std::path::PathBuf], directory: Option<&Path>) -> u8 {
    let files = match policy_files(paths) {
        Ok(f) => f,
        Err(e) => return Failure::Usage(e).report(),
    };
    let dir = match directory {
        None => signoff_engine::Directory::from_yaml(include_str!("../../../examples/directory.yaml")).map_err(|e| e.join("; ")),
        Some(d) => std::fs::read_to_string(d)
            .map_err(|e| e.to_string())
            .and_then(|text| signoff_engine::Directory::from_yaml(&text).map_err(|e| e.join("; "))),
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => return Failure::Usage(format!("--directory {}: {e}", directory.map_or("(demo)".into(), |d| d.display().to_string()))).report(),
    };
    let mut failed = false;
    for f in files {
        match std::fs::read_to_string(&f) {
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", f.display());
            }
            Ok(text) => match Policy::from_yaml(&text) {
                Ok(p) => {
                    let warnings = p.warnings(&dir);
                    println!("ok file={} id={} hash={} warnings={}", f.display(), p.id, p.hash, warnings.len());
                    for w in warnings {
                        eprintln!("warning: {}: {}: {}", f.display(), w.path, w.message);
                    }
                }
                Err(problems) => {
                    failed = true;
                    for p in problems {
                        let path = if p.path.is_empty() { "(document)".to_string() } else { p.path };
                        eprintln!("{}: {path}: {}", f.display(), p.message);
                    }
                }
            },
        }
    }
    u8::from(failed)
}

pub async fn plan(remote: &Remote, policy: &str, context: &Path, requester: Option<String>) -> u8 {
    finish(async {
        let body = PlanBody { context: read_json(context)?, requester };
        let plan: Answer<RequestState> = Client::from(remote)?.send(Method::POST, &format!("/v1/policies/{policy}/plan"), Some(&body), None).await?;
        let mut lines = vec![format!("status={}", plan.value.status.as_str())];
        for s in &plan.value.steps {
            let mut line = format!("step={} status={}", s.id, s.status.as_str());
            if s.status == StepStatus::Active {
                // The quorum as JSON: a number, or "all" in quotes.
                let q = serde_json::to_string(&s.quorum).unwrap_or_default();
                line.push_str(&format!(" approvers={} quorum={q}", list(s.approvers.iter().cloned())));
            }
            if let Some(b) = &s.skipped_because {
                line.push_str(&format!(" because={b}"));
            } else if let Some(r) = &s.reason {
                line.push_str(&format!(" reason={r}"));
            }
            lines.push(line);
        }
        print(remote, &plan.raw, lines);
        Ok(())
    }.await)
}

/// Long-polls until the request is closed (or `timeout` passes): 0 if approved, 1 if rejected,
/// expired or cancelled, `EXIT_TIMED_OUT` if still pending at the timeout.
pub async fn wait(remote: &Remote, id: &str, timeout: Option<&str>) -> u8 {
    let limit = match timeout.map(signoff_engine::duration::parse).transpose() {
        Ok(limit) => limit.map(|d| std::time::Instant::now() + std::time::Duration::from_secs(d.as_secs() as u64)),
        Err(e) => return Failure::Usage(format!("--timeout: {e}")).report(),
    };
    let client = match Client::from(remote) {
        Ok(c) => c,
        Err(f) => return f.report(),
    };
    loop {
        let left = limit.map(|l| l.saturating_duration_since(std::time::Instant::now()).as_secs());
        let poll = left.map_or(60, |s| s.clamp(1, 60));
        let state: Answer<RequestState> = match client.get(&format!("/v1/requests/{id}/wait?timeout={poll}s")).await {
            Ok(s) => s,
            Err(f) => return f.report(),
        };
        let status = state.value.status.as_str();
        if status != "pending" || left.is_some_and(|s| s <= 1) {
            print(remote, &state.raw, vec![format!("request={id} status={status}")]);
            return match status {
                "approved" => 0,
                "pending" => Failure::TimedOut(format!("still pending after {}", timeout.unwrap_or(""))).report(),
                _ => 1,
            };
        }
    }
}

/// Which statistics `signoff stats` asks for.
pub struct StatsArgs {
    /// How far back: a duration (`30d`) or an RFC 3339 time.
    pub since: Option<String>,
    pub until: Option<String>,
    pub policy: Option<String>,
    /// A person's summary instead (`me` for the caller).
    pub user: Option<String>,
}

/// A duration in seconds as people read it: `45s`, `12m`, `3h20m`, `2d4h`.
pub fn seconds(v: &Value) -> String {
    let Some(s) = v.as_f64() else { return "-".into() };
    let s = s.round() as i64;
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => match (s % 3600) / 60 { 0 => format!("{}h", s / 3600), m => format!("{}h{m}m", s / 3600) },
        _ => match (s % 86_400) / 3600 { 0 => format!("{}d", s / 86_400), h => format!("{}d{h}h", s / 86_400) },
    }
}

/// `count/of (rate%)`.
fn rate(v: &Value) -> String {
    format!("{}/{}({:.1}%)", v["count"], v["of"], v["rate"].as_f64().unwrap_or(0.0) * 100.0)
}

fn percentiles(prefix: &str, v: &Value) -> String {
    if v.is_null() {
        return format!("{prefix}=-");
    }
    ["p50", "p90", "p99"].iter().map(|p| format!("{prefix}_{p}={}", seconds(&v[*p]))).collect::<Vec<_>>().join(" ")
}

/// `since`/`until` as RFC 3339: a duration counts back from now.
fn since_time(name: &str, value: &str) -> Result<String, Failure> {
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t.to_string());
    }
    let d = signoff_engine::duration::parse(value).map_err(|e| Failure::Usage(format!("{name}: `{value}` is neither a duration (30d) nor an RFC 3339 time: {e}")))?;
    jiff::Timestamp::now().checked_sub(d).map(|t| t.to_string()).map_err(|e| Failure::Usage(format!("{name}: {e}")))
}

/// `--since`/`--until` as the query of an insights route.
fn window_query(a: &StatsArgs) -> Result<Vec<String>, Failure> {
    let mut query = Vec::new();
    if let Some(s) = &a.since {
        query.push(format!("from={}", urlencode(&since_time("--since", s)?)));
    }
    if let Some(u) = &a.until {
        query.push(format!("to={}", urlencode(&since_time("--until", u)?)));
    }
    Ok(query)
}

/// What-if: the candidate in `file` against the past requests of `policy` (its own id by default).
pub async fn simulate(remote: &Remote, file: &Path, policy: Option<String>, window: StatsArgs, examples: u32) -> u8 {
    finish(async {
        let source = std::fs::read_to_string(file).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
        let candidate = signoff_engine::Policy::from_yaml(&source).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
            Failure::Usage(format!("{}: {}", file.display(), lines.join("; ")))
        })?;
        let id = policy.unwrap_or_else(|| candidate.id.clone());
        let mut query = window_query(&window)?;
        query.push(format!("examples={examples}"));
        let client = Client::from(remote)?;
        let raw = client.call(Method::POST, &format!("/v1/policies/{}/simulate?{}", urlencode(&id), query.join("&")), Some(candidate.source.clone()), None).await?;
        let v = &raw;
        let mut lines = vec![format!(
            "policy={} requests={} differ={} auto_approved_before={} auto_approved_after={}",
            text(&v["policy"], "-"), v["requests"], v["differ"], rate(&v["auto_approval_before"]), rate(&v["auto_approval_after"])
        )];
        for (kind, d) in v["differences"].as_object().into_iter().flatten() {
            lines.push(format!("difference={kind} count={}", d["count"]));
            for e in d["examples"].as_array().into_iter().flatten() {
                lines.push(format!("  {} {}", text(&e["request"], "-"), kv("detail", text(&e["detail"], "-"))));
            }
        }
        for l in v["load"].as_array().into_iter().flatten() {
            lines.push(format!("load {}={} before={} after={} change={:+}", text(&l["kind"], "-"), text(&l["id"], "-"), l["before"], l["after"], l["change"].as_i64().unwrap_or(0)));
        }
        let t = &v["decision_time"];
        let change = t["mean_change"].as_f64().unwrap_or(0.0);
        lines.push(format!(
            "decision_time before_p50={} after_p50={} mean_change={}{}",
            seconds(&t["before_median"]), seconds(&t["after_median"]), if change < 0.0 { "-" } else { "+" }, seconds(&Value::from(change.abs()))
        ));
        print(remote, &raw, lines);
        Ok(())
    }.await)
}

/// `/healthz` (or `/readyz`): `status=ok` and exit 0, or the refusal and exit 1.
pub async fn health(remote: &Remote, ready: bool) -> u8 {
    finish(async {
        let path = if ready { "/readyz" } else { "/healthz" };
        let v = Client::new(remote, None)?.call(Method::GET, path, None, None).await?;
        print(remote, &v, vec![kv("status", v["status"].as_str().unwrap_or("ok"))]);
        Ok(())
    }.await)
}

/// The Insights report, written to `out`.
pub async fn report(remote: &Remote, out: &Path, policy: Option<&str>, days: u32) -> u8 {
    finish(async {
        let mut path = format!("/v1/insights/report?days={days}");
        if let Some(p) = policy {
            path.push_str(&format!("&policy={}", urlencode(p)));
        }
        let html = match Client::from(remote)?.call(Method::GET, &path, None, None).await? {
            Value::String(html) => html,
            other => return Err(Failure::Unreachable(format!("{}{path} answered JSON, not a report: {other}", remote.url))),
        };
        std::fs::write(out, &html).map_err(|e| Failure::Usage(format!("--out {}: {e}", out.display())))?;
        println!("{}", [kv("report", &out.display().to_string()), format!("bytes={}", html.len())].join(" "));
        Ok(())
    }.await)
}

/// Statistics of a window of requests, or one person's summary.
pub async fn stats(remote: &Remote, a: StatsArgs) -> u8 {
    finish(async {
        let mut query = window_query(&a)?;
        let client = Client::from(remote)?;
        if let Some(user) = &a.user {
            let path = format!("/v1/users/{}/summary?{}", urlencode(user), query.join("&"));
            let s: Answer<Value> = client.get(&path).await?;
            let v = &s.value;
            let line = [
                kv("user", text(&v["user"], "-")),
                format!("pending={} urgent={} expiring={}", v["pending"], v["urgent"], v["expiring"]),
                format!("approved={} rejected={} delegated={}", v["approved"], v["rejected"], v["delegated"]),
                format!("median_response={}", seconds(&v["median_response"])),
            ]
            .join(" ");
            print(remote, &s.raw, vec![line]);
            return Ok(());
        }
        if let Some(p) = &a.policy {
            query.push(format!("policy={}", urlencode(p)));
        }
        let s: Answer<Value> = client.get(&format!("/v1/stats?{}", query.join("&"))).await?;
        let v = &s.value;
        let outcomes = ["approved", "rejected", "expired", "cancelled", "pending"].iter().map(|o| format!("{o}={}", v["outcomes"][*o])).collect::<Vec<_>>().join(" ");
        let mut lines = vec![
            format!("requests={} {outcomes}", v["requests"]),
            format!("decided={} {}", v["decision_time"]["count"].as_u64().unwrap_or(0), percentiles("decision", &v["decision_time"])),
            format!(
                "sla_met={} escalated={} timed_out={} auto_approved={}",
                rate(&v["sla_compliance"]), rate(&v["escalation_rate"]), rate(&v["timeout_rate"]), rate(&v["auto_approval_rate"])
            ),
        ];
        for st in v["steps"].as_array().into_iter().flatten() {
            lines.push(format!(
                "step={}/{} activated={} open={} {} {} sla_met={}",
                text(&st["policy"], "-"), text(&st["step"], "-"), st["activated"], st["open"],
                percentiles("waiting", &st["waiting"]), percentiles("deciding", &st["deciding"]), rate(&st["sla_compliance"])
            ));
        }
        print(remote, &s.raw, lines);
        Ok(())
    }.await)
}
