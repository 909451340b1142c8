//! The HTTP client behind the client commands, and their stable `key=value` output.

use std::io::Read;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};
use signoff_engine::Policy;

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
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client { http: reqwest::Client::new(), url: url.trim_end_matches('/').to_string(), token }
    }

    /// A client for `remote`, once its URL is one and it has a token.
    pub fn from(remote: &Remote) -> Result<Client, Failure> {
        check_url(&remote.url)?;
        match &remote.token {
            Some(t) if !t.trim().is_empty() => Ok(Client::new(&remote.url, Some(t.clone()))),
            _ => Err(Failure::Usage(
                "no token: set SIGNOFF_TOKEN or pass --token (with the demo directory each user's token is <id>-token, e.g. SIGNOFF_TOKEN=alice-token)".into(),
            )),
        }
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
            Ok(value)
        } else {
            Err(Failure::Refused {
                code: value["code"].as_str().unwrap_or("http_error").to_string(),
                detail: value["detail"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}")),
            })
        }
    }
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

fn strings(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap_or_default().to_string())
}

/// `request=… status=… steps=N` (N counts the steps not skipped).
pub fn submit_line(state: &Value) -> String {
    let steps = state["steps"].as_array().map_or(0, |s| s.iter().filter(|s| s["status"] != "skipped").count());
    format!("request={} status={} steps={steps}", state["id"].as_str().unwrap_or(""), state["status"].as_str().unwrap_or(""))
}

/// The lines of `signoff status`.
pub fn status_lines(state: &Value) -> Vec<String> {
    let due = state["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"] == "active" && s["due_at"].is_string())
        .map(|s| format!("{}:{}", s["id"].as_str().unwrap_or(""), time(&s["due_at"])))
        .collect::<Vec<_>>()
        .join(",");
    let mut lines = vec![
        format!("status={}", state["status"].as_str().unwrap_or("")),
        format!("current_tasks={}", list(strings(&state["current_tasks"]))),
        format!("pending_reasons={}", list(strings(&state["pending_reasons"]))),
        format!("due={due}"),
    ];
    if let Some(reason) = state["decision_reason"].as_str() {
        lines.push(format!("decision_reason={reason}"));
    }
    for step in state["steps"].as_array().into_iter().flatten() {
        let mut line = format!("step={} status={} progress={}", text(&step["id"], ""), text(&step["status"], ""), progress(step));
        if step["status"] == "active" {
            line.push_str(&format!(" approvers={}", list(strings(&step["approvers"]))));
            if step["due_at"].is_string() {
                line.push_str(&format!(" due={}", time(&step["due_at"])));
            }
            if let Some(level) = step["escalation_level"].as_u64().filter(|l| *l > 0) {
                line.push_str(&format!(" escalation_level={level}"));
            }
        }
        lines.push(line);
    }
    lines
}

/// A step's approvals toward its quorum, `1/2` (`1/all` before an `all` quorum is resolved).
pub fn progress(step: &Value) -> String {
    let approvals = step["approvals"].as_array().map_or(0, Vec::len);
    let quorum = match &step["quorum"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "?".into(),
    };
    format!("{approvals}/{quorum}")
}

/// `manager:1/1,finance:0/1`: each step that is not skipped, with its progress.
fn steps_progress(state: &Value) -> String {
    state["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"] != "skipped")
        .map(|s| format!("{}:{}", text(&s["id"], ""), progress(s)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The soonest due time of a request's active steps.
fn soonest_due(state: &Value) -> String {
    let due = state["steps"].as_array().into_iter().flatten().filter(|s| s["status"] == "active").filter_map(|s| s["due_at"].as_str()).min();
    due.map_or_else(|| "-".to_string(), |d| time(&Value::String(d.to_string())))
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
        let body = json!({ "policy": policy, "context": context, "subject": subject, "title": title, "resubmits": resubmits });
        let state = Client::from(remote)?.call(Method::POST, "/v1/requests", Some(body), key.as_deref()).await?;
        print(remote, &state, vec![submit_line(&state)]);
        Ok(())
    }.await)
}

pub async fn status(remote: &Remote, id: &str) -> u8 {
    finish(async {
        let state = Client::from(remote)?.call(Method::GET, &format!("/v1/requests/{id}"), None, None).await?;
        print(remote, &state, status_lines(&state));
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
pub fn action_line(state: &Value, step: Option<&str>) -> String {
    let mut line = format!("request={} status={}", state["id"].as_str().unwrap_or(""), state["status"].as_str().unwrap_or(""));
    if let Some(step) = step {
        let st = state["steps"].as_array().into_iter().flatten().find(|s| s["id"] == step);
        line.push_str(&format!(" step={step} step_status={}", st.and_then(|s| s["status"].as_str()).unwrap_or("")));
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
            let active = match client.call(Method::GET, &format!("/v1/requests/{id}"), None, None).await {
                Ok(state) => format!(" (active steps of {id}: {})", list(strings(&state["current_tasks"]))),
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
        let body = json!({ "action": a.action, "step": a.step, "comment": a.comment, "item": a.item, "to": a.to, "edits": edits });
        let state = client.call(Method::POST, &format!("/v1/requests/{id}/actions"), Some(body), key.as_deref()).await?;
        print(remote, &state, vec![action_line(&state, a.step.as_deref())]);
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
pub fn task_line(t: &Value, with_approver: bool) -> String {
    let what = t["title"].as_str().or(t["subject"].as_str()).unwrap_or("-");
    let mut parts = vec![kv("request", text(&t["request"], "")), kv("step", text(&t["step"], ""))];
    if with_approver {
        parts.push(kv("approver", text(&t["approver"], "")));
    }
    parts.extend([
        kv("policy", text(&t["policy"], "")),
        kv("requester", text(&t["requester"], "-")),
        kv("title", what),
        format!("due={}", time(&t["due_at"])),
        kv("reason", text(&t["reason"], "-")),
    ]);
    parts.join(" ")
}

pub async fn inbox(remote: &Remote, all: bool) -> u8 {
    finish(async {
        let path = if all { "/v1/tasks" } else { "/v1/inbox" };
        let inbox = Client::from(remote)?.call(Method::GET, path, None, None).await?;
        let lines = inbox["items"].as_array().into_iter().flatten().map(|t| task_line(t, all)).collect();
        print(remote, &inbox, lines);
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
pub fn request_line(r: &Value) -> String {
    [
        kv("request", text(&r["id"], "")),
        kv("status", text(&r["status"], "")),
        kv("policy", text(&r["policy"]["id"], "")),
        kv("subject", text(&r["subject"], "-")),
        kv("requester", text(&r["requester"], "")),
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
        let page = Client::from(remote)?.call(Method::GET, &format!("/v1/requests?{}", query.join("&")), None, None).await?;
        let lines = page["items"].as_array().into_iter().flatten().map(request_line).collect();
        print(remote, &page, lines);
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
        let me = Client::from(remote)?.call(Method::GET, "/v1/me", None, None).await?;
        let line = [
            kv("user", text(&me["id"], "")),
            kv("name", text(&me["name"], "-")),
            format!("groups={}", list(strings(&me["groups"]))),
            kv("manager", text(&me["manager"], "-")),
            format!("admin={}", me["admin"].as_bool().unwrap_or(false)),
        ]
        .join(" ");
        print(remote, &me, vec![line]);
        Ok(())
    }.await)
}

pub async fn policy_list(remote: &Remote) -> u8 {
    finish(async {
        let policies = Client::from(remote)?.call(Method::GET, "/v1/policies", None, None).await?;
        let lines = policies["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                [kv("policy", text(&p["id"], "")), format!("version={}", p["version"]), kv("hash", text(&p["hash"], "")), kv("title", text(&p["title"], "-"))].join(" ")
            })
            .collect();
        print(remote, &policies, lines);
        Ok(())
    }.await)
}

/// A fresh random token for `user` and the directory line that lets it in (offline).
pub fn token_new(user: &str) -> u8 {
    if !signoff_engine::policy::valid_id(user) {
        return Failure::Usage(format!("`{user}` is not a user id ([a-z0-9][a-z0-9._-]*)")).report();
    }
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        return Failure::Usage(format!("no randomness from the system: {e}")).report();
    }
    let token = format!("so_{}", hex::encode(bytes));
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
            let mut found: Vec<_> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            if found.is_empty() {
                return Err(format!("{}: no *.yaml or *.yml files in this directory", p.display()));
            }
            found.sort();
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
        let context = read_json(context)?;
        let body = json!({ "context": context, "requester": requester });
        let plan = Client::from(remote)?.call(Method::POST, &format!("/v1/policies/{policy}/plan"), Some(body), None).await?;
        let mut lines = vec![format!("status={}", plan["status"].as_str().unwrap_or(""))];
        for s in plan["steps"].as_array().into_iter().flatten() {
            let mut line = format!("step={} status={}", s["id"].as_str().unwrap_or(""), s["status"].as_str().unwrap_or(""));
            if s["status"] == "active" {
                line.push_str(&format!(" approvers={} quorum={}", list(strings(&s["approvers"])), s["quorum"]));
            }
            if let Some(b) = s["skipped_because"].as_str() {
                line.push_str(&format!(" because={b}"));
            } else if let Some(r) = s["reason"].as_str() {
                line.push_str(&format!(" reason={r}"));
            }
            lines.push(line);
        }
        print(remote, &plan, lines);
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
        let state = match client.call(Method::GET, &format!("/v1/requests/{id}/wait?timeout={poll}s"), None, None).await {
            Ok(s) => s,
            Err(f) => return f.report(),
        };
        let status = state["status"].as_str().unwrap_or("");
        if status != "pending" || left.is_some_and(|s| s <= 1) {
            print(remote, &state, vec![format!("request={id} status={status}")]);
            return match status {
                "approved" => 0,
                "pending" => Failure::TimedOut(format!("still pending after {}", timeout.unwrap_or(""))).report(),
                _ => 1,
            };
        }
    }
}
