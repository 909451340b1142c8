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
}

impl Failure {
    pub fn report(self) -> u8 {
        match self {
            Failure::Refused { code, detail } => {
                eprintln!("error: {code}: {detail}");
                1
            }
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                2
            }
            Failure::Unreachable(m) => {
                eprintln!("error: cannot reach the server: {m}");
                3
            }
        }
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

    pub fn from(remote: &Remote) -> Client {
        Client::new(&remote.url, remote.token.clone())
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
        let resp = req.send().await.map_err(|e| Failure::Unreachable(format!("{}: {e}", self.url)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Failure::Unreachable(e.to_string()))?;
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
        .map(|s| format!("{}:{}", s["id"].as_str().unwrap_or(""), s["due_at"].as_str().unwrap_or("")))
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
    lines
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
        let state = Client::from(remote).call(Method::POST, "/v1/requests", Some(body), key.as_deref()).await?;
        print(remote, &state, vec![submit_line(&state)]);
        Ok(())
    }.await)
}

pub async fn status(remote: &Remote, id: &str) -> u8 {
    finish(async {
        let state = Client::from(remote).call(Method::GET, &format!("/v1/requests/{id}"), None, None).await?;
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

pub async fn action(remote: &Remote, id: &str, a: ActionArgs, key: Option<String>) -> u8 {
    finish(async {
        let edits: Option<Value> = match &a.edits {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|e| Failure::Usage(format!("--edits: not valid JSON: {e}")))?),
        };
        let body = json!({ "action": a.action, "step": a.step, "comment": a.comment, "item": a.item, "to": a.to, "edits": edits });
        let state = Client::from(remote).call(Method::POST, &format!("/v1/requests/{id}/actions"), Some(body), key.as_deref()).await?;
        print(remote, &state, vec![action_line(&state, a.step.as_deref())]);
        Ok(())
    }.await)
}

/// One history line: seq, time, type, actor, step, detail.
pub fn event_line(e: &Value) -> String {
    let detail = match &e["data"] {
        Value::Object(m) => m
            .iter()
            .filter(|(k, v)| !v.is_null() && !matches!(k.as_str(), "context" | "steps" | "evidence" | "separation"))
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    format!(
        "{} {} {} {} {} {}",
        e["seq"],
        e["at"].as_str().unwrap_or(""),
        e["type"].as_str().unwrap_or(""),
        e["actor"].as_str().unwrap_or(""),
        e["step"].as_str().unwrap_or("-"),
        detail
    )
    .trim_end()
    .to_string()
}

pub async fn history(remote: &Remote, id: &str) -> u8 {
    finish(async {
        let events = Client::from(remote).call(Method::GET, &format!("/v1/requests/{id}/events"), None, None).await?;
        let lines = events["items"].as_array().into_iter().flatten().map(event_line).collect();
        print(remote, &events, lines);
        Ok(())
    }.await)
}

pub async fn inbox(remote: &Remote) -> u8 {
    finish(async {
        let inbox = Client::from(remote).call(Method::GET, "/v1/inbox", None, None).await?;
        let lines = inbox["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "request={} step={} policy={} due={} reason={}",
                    t["request"].as_str().unwrap_or(""),
                    t["step"].as_str().unwrap_or(""),
                    t["policy"].as_str().unwrap_or(""),
                    t["due_at"].as_str().unwrap_or("-"),
                    t["reason"].as_str().unwrap_or("")
                )
            })
            .collect();
        print(remote, &inbox, lines);
        Ok(())
    }.await)
}

/// Offline validation: every problem of every file, exit 1 if any.
pub fn policy_check(files: &[std::path::PathBuf]) -> u8 {
    let mut failed = false;
    for f in files {
        match std::fs::read_to_string(f) {
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", f.display());
            }
            Ok(text) => match Policy::from_yaml(&text) {
                Ok(p) => println!("ok file={} id={} hash={}", f.display(), p.id, p.hash),
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
        let plan = Client::from(remote).call(Method::POST, &format!("/v1/policies/{policy}/plan"), Some(body), None).await?;
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

/// Long-polls until the request is closed (or `timeout` passes): 0 if approved, 1 otherwise.
pub async fn wait(remote: &Remote, id: &str, timeout: Option<&str>) -> u8 {
    let limit = match timeout.map(signoff_engine::duration::parse).transpose() {
        Ok(limit) => limit.map(|d| std::time::Instant::now() + std::time::Duration::from_secs(d.as_secs() as u64)),
        Err(e) => return Failure::Usage(format!("--timeout: {e}")).report(),
    };
    let client = Client::from(remote);
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
            return u8::from(status != "approved");
        }
    }
}
