//! The metrics an operator scrapes, through the real binary: every family moves as real
//! workflows go (approval, rejection, expiry, escalation, edits applied and refused, acks), the
//! state gauges are right after a restart and the same on two PostgreSQL instances, and the
//! scrape passes `promtool check metrics`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signoff_store_postgres::testing::TestDatabase;
use signoff_testkit::binary::{Server, http};
use signoff_testkit::peers::webhook::{Behaviour, WebhookReceiver};

const BIN: &str = env!("CARGO_BIN_EXE_signoff");

/// A checklist, edits with a bound, and an escalation a second in; and a request that expires
/// in a second.
const FAST: &str = "id: fast\nsteps:\n  - id: review\n    approvers: {users: [mark]}\n    require_acks: [security]\n    escalation: [{after: 1s, to: {users: [dana]}}]\n    edits: {allowed_keys: [amount], schema: {type: object, properties: {amount: {type: number, maximum: 100}}}}\n";
const BRIEF: &str = "id: brief\nexpires_in: 1s\nsteps:\n  - {id: review, approvers: {users: [mark]}}\n";

fn policies(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("fast.yaml"), FAST).unwrap();
    std::fs::write(p.join("brief.yaml"), BRIEF).unwrap();
    p
}

fn post(url: &str, token: &str, path: &str, body: Value) -> Value {
    let resp = http().post(format!("{url}{path}")).bearer_auth(token).json(&body).send().unwrap();
    let status = resp.status();
    let v: Value = resp.json().unwrap();
    assert!(status.is_success() || status.as_u16() == 409 || status.as_u16() == 422, "{path}: {status} {v}");
    v
}

fn submit(url: &str, policy: &str) -> String {
    post(url, "alice-token", "/v1/requests", json!({"policy": policy, "context": {"amount": 10}}))["id"].as_str().unwrap().to_string()
}

fn act(url: &str, token: &str, id: &str, body: Value) -> Value {
    post(url, token, &format!("/v1/requests/{id}/actions"), body)
}

fn scrape(url: &str) -> String {
    let resp = http().get(format!("{url}/metrics")).send().unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    resp.text().unwrap()
}

/// The value of the sample of `family` with every label of `labels`, if there is one.
fn sample(scrape: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits, polling the API, until `done` holds for the request.
fn until(url: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r: Value = http().get(format!("{url}/v1/requests/{id}")).bearer_auth("alice-token").send().unwrap().json().unwrap();
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "never: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `promtool check metrics` on `text`: its complaints, empty when there are none. With `CI`
/// set, promtool must be there (`.ci/run` installs Debian's `prometheus`).
pub fn promtool_check_metrics(text: &str) -> Option<String> {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but promtool is missing: .ci/run installs prometheus");
        eprintln!("promtool check SKIPPED: no promtool on this machine (apt install prometheus)");
        return None;
    }
    let mut child = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(if out.status.success() { String::new() } else { said })
}

#[test]
fn every_family_moves_with_real_workflows_and_the_gauges_survive_a_restart() {
    let receiver = WebhookReceiver::start_blocking(Behaviour { secret: None, hold: 0 });
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    let config = dir.path().join("signoff.toml");
    std::fs::write(&config, format!("[[notify.webhooks]]\nname = \"crm\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"completed\"]\n", receiver.url)).unwrap();
    let data = dir.path().join("data");
    let start = || Server::serve(BIN, &data, &["--policies".as_ref(), policies.as_os_str(), "--config".as_ref(), config.as_os_str()], Stdio::null());
    let server = start();
    let url = server.url.clone();

    // Approved, after the checklist, with an edit refused by the schema and then one applied.
    let approved = submit(&url, "fast");
    act(&url, "mark-token", &approved, json!({"action": "acknowledge", "step": "review", "item": "security"}));
    let refused = act(&url, "mark-token", &approved, json!({"action": "approve", "step": "review", "edits": {"amount": 500}}));
    assert_eq!(refused["code"], "edit_schema_invalid", "{refused}");
    act(&url, "mark-token", &approved, json!({"action": "approve", "step": "review", "edits": {"amount": 50}}));
    // Rejected; expired; and one left pending, escalated.
    let rejected = submit(&url, "fast");
    act(&url, "mark-token", &rejected, json!({"action": "acknowledge", "step": "review", "item": "security"}));
    act(&url, "mark-token", &rejected, json!({"action": "reject", "step": "review", "comment": "no"}));
    let expired = submit(&url, "brief");
    let pending = submit(&url, "fast");
    until(&url, &expired, |r| r["status"] == "expired");
    until(&url, &pending, |r| r["steps"][0]["escalation_level"] == 1);

    let text = scrape(&url);
    let fast = [("policy", "fast")];
    for (family, labels, want) in [
        ("signoff_approval_requests_total", &fast[..], 3.0),
        ("signoff_approval_requests_total", &[("policy", "brief")][..], 1.0),
        ("signoff_approvals_total", &fast[..], 1.0),
        ("signoff_denies_total", &fast[..], 1.0),
        ("signoff_expired_total", &[("policy", "brief")][..], 1.0),
        ("signoff_escalations_total", &fast[..], 1.0),
        ("signoff_param_overrides_total", &[("policy", "fast"), ("outcome", "applied")][..], 1.0),
        ("signoff_param_overrides_total", &[("policy", "fast"), ("outcome", "rejected")][..], 1.0),
        ("signoff_override_rejections_total", &[("policy", "fast"), ("reason", "schema_invalid")][..], 1.0),
        ("signoff_persona_ack_total", &fast[..], 2.0),
        ("signoff_decision_latency_seconds_count", &[("policy", "fast"), ("outcome", "approved")][..], 1.0),
        ("signoff_decision_latency_seconds_count", &[("policy", "brief"), ("outcome", "expired")][..], 1.0),
        ("signoff_timer_lag_seconds_count", &[("kind", "escalation")][..], 1.0),
        ("signoff_timer_lag_seconds_count", &[("kind", "expiry")][..], 1.0),
        ("signoff_pending_requests", &fast[..], 1.0),
        ("signoff_pending_requests", &[("policy", "brief")][..], 0.0),
        ("signoff_pending_acks", &fast[..], 1.0),
    ] {
        assert_eq!(sample(&text, family, labels), Some(want), "{family}{labels:?} in:\n{text}");
    }
    let oldest = sample(&text, "signoff_oldest_open_request_age_seconds", &fast).unwrap();
    assert!(oldest >= 1.0, "the pending one waited through its escalation: {oldest}");
    assert!(sample(&text, "signoff_commit_group_size_count", &[]).unwrap() >= 10.0);
    assert!(sample(&text, "signoff_http_requests_total", &[("route", "/v1/requests/{id}/actions"), ("status", "200")]).unwrap() >= 4.0);
    for family in ["signoff_approvals_total", "signoff_decision_latency_seconds", "signoff_pending_requests", "signoff_outbox_backlog", "signoff_commit_seconds"] {
        assert!(text.contains(&format!("# HELP {family} ")) && text.contains(&format!("# TYPE {family} ")), "{family} has HELP and TYPE:\n{text}");
    }
    if let Some(complaints) = promtool_check_metrics(&text) {
        assert_eq!(complaints, "", "promtool check metrics");
    }
    // Whatever the bundled dashboard and alert rules query, a real scrape has.
    let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(repo.join("deploy/grafana/signoff.json")).unwrap()).unwrap();
    let mut queries: Vec<String> = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string())).collect();
    let rules = std::fs::read_to_string(repo.join("deploy/prometheus/alerts.yaml")).unwrap();
    queries.extend(rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ").map(str::to_string)));
    assert!(queries.len() > 15, "{queries:?}");
    for q in &queries {
        for name in metric_names(q) {
            let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f))).unwrap_or(&name);
            assert!(families.contains(&family), "`{q}` reads {name}, which no scrape has:\n{text}");
        }
    }

    // After a restart the counters start again, the state gauges do not.
    server.kill9();
    let server = start();
    let text = scrape(&server.url);
    assert_eq!(sample(&text, "signoff_pending_requests", &fast), Some(1.0), "from the store, not from memory");
    assert_eq!(sample(&text, "signoff_pending_acks", &fast), Some(1.0));
    assert_eq!(sample(&text, "signoff_approvals_total", &fast), Some(0.0), "counters are this process's, started at zero");
    server.kill9();
}

/// The `signoff_…` names a PromQL query reads.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("signoff_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn the_alert_rules_pass_promtool() {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but promtool is missing: .ci/run installs prometheus");
        return;
    }
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/alerts.yaml");
    let out = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn two_postgres_instances_report_the_same_pending_gauge_and_metrics_listen_serves_the_scrape() {
    let Some(db) = TestDatabase::create("the metrics of two instances") else { return };
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    let start = |name: &str, extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--database-url".as_ref(), db.url.as_ref(), "--policies".as_ref(), policies.as_os_str()];
        args.extend_from_slice(extra);
        Server::serve(BIN, &dir.path().join(name), &args, Stdio::null())
    };
    let a = start("a", &["--metrics-listen".as_ref(), "127.0.0.1:0".as_ref()]);
    let b = start("b", &[]);
    for _ in 0..3 {
        submit(&a.url, "fast");
    }
    submit(&b.url, "fast");
    let on_a = scrape(&a.url);
    let on_b = scrape(&b.url);
    assert_eq!(sample(&on_a, "signoff_pending_requests", &[("policy", "fast")]), Some(4.0));
    assert_eq!(sample(&on_b, "signoff_pending_requests", &[("policy", "fast")]), Some(4.0), "the same on every instance");
    assert_eq!(sample(&on_a, "signoff_approval_requests_total", &[("policy", "fast")]), Some(3.0), "counters are per instance");
    assert_eq!(sample(&on_b, "signoff_approval_requests_total", &[("policy", "fast")]), Some(1.0));
    // a's scrape on its own address too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics_url = loop {
        if let Some(line) = a.stdout.lock().unwrap().iter().find_map(|l| l.strip_prefix("metrics: ").map(str::to_string)) {
            break line;
        }
        assert!(Instant::now() < deadline, "the server never said where its metrics are");
        std::thread::sleep(Duration::from_millis(20));
    };
    let alone = http().get(&metrics_url).send().unwrap().text().unwrap();
    assert_eq!(sample(&alone, "signoff_pending_requests", &[("policy", "fast")]), Some(4.0));
    assert_eq!(http().get(metrics_url.replace("/metrics", "/v1/requests")).send().unwrap().status(), 404, "only /metrics there");
    a.kill9();
    b.kill9();
}

#[test]
fn log_format_json_writes_one_object_a_line_with_the_request_and_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    let mut server = Server::serve(BIN, &dir.path().join("data"), &["--policies".as_ref(), policies.as_os_str(), "--log-format".as_ref(), "json".as_ref()], Stdio::piped());
    let id = submit(&server.url, "fast");
    let refused = act(&server.url, "mark-token", &id, json!({"action": "approve", "step": "review"}));
    assert_eq!(refused["code"], "acks_pending");
    server.child.kill().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().unwrap(), &mut text).unwrap();
    server.child.wait().unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let submitted = lines.iter().find(|l| l["message"] == "committed" && l["request"] == id.as_str() && l["actor"] == "alice").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(submitted["level"], "INFO");
    assert_eq!(submitted["policy"], "fast");
    assert!(submitted["events"].as_str().unwrap().starts_with("submitted,"), "{submitted}");
    let warned = lines.iter().find(|l| l["message"] == "refused" && l["request"] == id.as_str()).unwrap_or_else(|| panic!("{text}"));
    assert_eq!((warned["level"].as_str(), warned["actor"].as_str(), warned["code"].as_str()), (Some("WARN"), Some("mark"), Some("acks_pending")));
}
