//! Tests through the real `signoff` binary: the server's start-up contract, the client
//! commands and their exit codes, and a kill -9 right after acknowledged writes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use signoff_store_postgres::testing::TestDatabase;
use signoff_testkit::binary::{Server, http};
use signoff_testkit::peers::webhook::{Behaviour, WebhookReceiver};

const BIN: &str = env!("CARGO_BIN_EXE_signoff");

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn cli_golden_path_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let quote = dir.path().join("quote.json");
    std::fs::write(&quote, include_str!("../../../../examples/requests/quote-discount.json")).unwrap();
    let quote = quote.to_str().unwrap();

    let (code, out, err) = server.client("alice-token", &["submit", "--policy", "quote-discount", "--subject", "Q-2026-0120", "--context", quote]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("status=pending steps=2\n"), "{out}");
    let id = field(&out, "request").to_string();

    let (code, out, _) = server.client("alice-token", &["status", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("current_tasks=[manager,finance]\n"), "{out}");
    assert!(out.contains("pending_reasons=[discount above 10%,margin below floor]\n"), "{out}");

    let (code, out, _) = server.client("mark-token", &["inbox"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("request={id} step=manager")), "{out}");

    let (code, out, _) = server.client("mark-token", &["action", &id, "--step", "manager", "--action", "approve", "--comment", "ok"]);
    assert_eq!((code, out.trim()), (0, format!("request={id} status=pending step=manager step_status=approved").as_str()));
    let (code, _, err) = server.client("mark-token", &["action", &id, "--step", "finance", "--action", "approve"]);
    assert_eq!(code, 1, "a refusal exits 1");
    assert!(err.contains("not_an_approver"), "mark is not in finance: {err}");
    let (code, out, _) = server.client("fiona-token", &["action", &id, "--step", "finance", "--action", "approve"]);
    assert_eq!(code, 0);
    assert!(out.contains("status=approved"), "{out}");

    let (code, out, _) = server.client("alice-token", &["history", &id]);
    assert_eq!(code, 0);
    let types: Vec<&str> = out.lines().map(|l| field(l, "type")).collect();
    assert_eq!(types.first(), Some(&"submitted"));
    assert_eq!(types.last(), Some(&"completed"));
    assert!(types.contains(&"refused"));

    let (code, out, _) = server.client("alice-token", &["status", &id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["status"], "approved");

    let (code, out, _) = server.client("alice-token", &["policy", "plan", "--policy", "quote-discount", "--context", quote]);
    assert_eq!(code, 0);
    assert!(out.contains("step=manager status=active approvers=[mark]"), "{out}");
    assert!(out.contains("step=legal status=skipped"), "{out}");

    let (code, _, err) = server.client("wrong-token", &["status", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthenticated"), "{err}");
    let (code, _, _) = server.client("alice-token", &["submit", "--policy", "x"]);
    assert_eq!(code, 2, "a usage error exits 2");
    let out = Command::new(BIN).args(["status", "req_x"]).env("SIGNOFF_URL", "http://127.0.0.1:1").env("SIGNOFF_TOKEN", "alice-token").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "an unreachable server exits 3");
    server.kill9();
}

#[test]
fn policy_check_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "id: Bad\ncolour: 1\nsteps:\n  - {id: a, approvers: {}, when: 'x >'}\n").unwrap();
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policies/quote-discount.yaml");
    let out = Command::new(BIN).args(["policy", "check", good]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("ok file=") && stdout.contains("id=quote-discount"), "{stdout}");
    for path in [": id:", ": colour:", ": steps.a.approvers:", ": steps.a.when:"] {
        assert!(stderr.contains(path), "missing {path} in {stderr}");
    }
}

#[test]
fn bad_configuration_stops_the_server_with_one_line() {
    let out = Command::new(BIN).args(["serve", "--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("listen"), "{stderr}");
}

#[test]
fn demo_tokens_are_made_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .env_remove("SIGNOFF_LISTEN")
        .env_remove("SIGNOFF_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "the server must not start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("-token"), "no demo token is printed: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("loopback") && errors[0].contains("--directory"), "{stderr}");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(BIN, dir.path());
    let (code, _, _) = server.client("alice-token", &["inbox"]);
    assert_eq!(code, 0);
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
}

#[test]
fn sigterm_with_streams_and_waits_open_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(BIN, dir.path());
    let body = serde_json::json!({"policy": "quote-discount", "context": {"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}});
    let created: Value = http().post(format!("{}/v1/requests", server.url)).bearer_auth("alice-token").json(&body).send().unwrap().json().unwrap();
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_string();
    // Two streams and a long poll, each answered at once (headers) and then held open.
    let open = |path: String, token: &'static str| {
        let url = format!("{}{path}", server.url);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
            let mut resp = client.get(url).bearer_auth(token).send().unwrap();
            tx.send(resp.status().as_u16()).unwrap();
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut resp, &mut text);
            text
        });
        assert_eq!(rx.recv().unwrap(), 200);
        reader
    };
    let stream = open(format!("/v1/requests/{id}/stream"), "alice-token");
    let feed = open("/v1/stream".into(), "mark-token");
    let (tx, rx) = std::sync::mpsc::channel();
    let wait_url = format!("{}/v1/requests/{id}/wait?timeout=10m", server.url);
    let waiter = std::thread::spawn(move || {
        // The long poll answers only at the end, so its status comes with its body.
        let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
        tx.send(()).unwrap();
        let resp = client.get(wait_url).bearer_auth("alice-token").send().unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    });
    rx.recv().unwrap();
    // SIGTERM once the server holds all three: its gauges say so.
    let started = std::time::Instant::now();
    loop {
        let metrics = http().get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
        let gauge = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map(|v| v.trim().to_string());
        if gauge("signoff_long_polls").as_deref() == Some("1") && gauge("signoff_sse_streams").as_deref() == Some("2") {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the streams and the long poll never opened: {metrics}");
        std::thread::yield_now();
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the server did not exit after SIGTERM");
        std::thread::yield_now();
    };
    assert_eq!(code, Some(0), "a clean exit");
    let text = stream.join().unwrap();
    assert!(text.contains("event: state"), "{text}");
    let text = feed.join().unwrap();
    assert!(text.contains("event: inbox"), "{text}");
    let (status, state) = waiter.join().unwrap();
    assert_eq!(status, 200, "the long poll is answered: {state}");
    assert_eq!(state["status"], "pending");
}

#[test]
fn kill_9_after_acknowledged_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(BIN, &data);
    let http = http();
    let post = |token: &str, path: &str, body: Value| {
        let resp = http.post(format!("{}{path}", server.url)).bearer_auth(token).json(&body).send().unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json::<Value>().unwrap()
    };
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let body = serde_json::json!({"policy": "quote-discount", "context": {"quote": {"total": 5000 + i, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}});
        let r = post("alice-token", "/v1/requests", body);
        let id = r["id"].as_str().unwrap().to_string();
        let r = post("mark-token", &format!("/v1/requests/{id}/actions"), serde_json::json!({"action": "approve", "step": "manager"}));
        acknowledged.push((id, r["version"].as_u64().unwrap()));
    }
    // The last 2xx has been read; kill at once, without any chance to flush.
    server.kill9();

    let server = Server::start(BIN, &data);
    for (id, version) in &acknowledged {
        let r: Value = http
            .get(format!("{}/v1/requests/{id}", server.url))
            .bearer_auth("alice-token")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["version"].as_u64(), Some(*version), "{id} lost acknowledged events");
        assert_eq!(r["steps"][0]["status"], "approved");
        let events: Value = http
            .get(format!("{}/v1/requests/{id}/events", server.url))
            .bearer_auth("alice-token")
            .send()
            .unwrap()
            .json()
            .unwrap();
        let events: Vec<signoff_engine::Event> = serde_json::from_value(events["items"].clone()).unwrap();
        signoff_engine::event::verify_chain(&events).unwrap();
    }
    server.kill9();
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_previous_set() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("one.yaml"), "id: one\nsteps: [{id: a, approvers: {users: [mark]}}]\n").unwrap();
    let mut server = Server::serve(BIN, &dir.path().join("data"), &["--policies".as_ref(), policies.as_os_str()], Stdio::piped());
    let mut stderr = BufReader::new(server.child.stderr.take().unwrap()).lines();
    let http = http();
    let ids = || -> Vec<String> {
        let v: Value = http.get(format!("{}/v1/policies", server.url)).bearer_auth("alice-token").send().unwrap().json().unwrap();
        v["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(), ["one"]);
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    let mut wait_for_log_line = |needles: &[&str]| {
        for line in stderr.by_ref() {
            let line = line.unwrap();
            if needles.iter().all(|n| line.contains(n)) {
                return;
            }
        }
        panic!("the server never logged a line with {needles:?}");
    };

    // A policy that is legal but names someone the directory lacks: loaded, with a warning
    // naming file, step and problem.
    std::fs::write(policies.join("two.yaml"), "id: two\nsteps: [{id: a, approvers: {users: [fiona, ghost]}}]\n").unwrap();
    hup(server.child.id());
    wait_for_log_line(&["policy warning", "two.yaml", "step=a ", "no user `ghost` in the directory"]);
    wait_for_log_line(&["reloaded policies and directory"]);
    assert_eq!(ids(), ["one", "two"]);
    // Every refused call is one line, with what was asked and why.
    let resp = http.post(format!("{}/v1/admin/reload", server.url)).bearer_auth("alice-token").send().unwrap();
    assert_eq!(resp.status(), 403);
    wait_for_log_line(&["refused", "/v1/admin/reload", "403", "forbidden"]);
    let mut wait_for_log = |needle: &str| wait_for_log_line(&[needle]);

    std::fs::write(policies.join("three.yaml"), "id: three\nsteps: [{id: a, approvers: {users: [x]}, when: '1 +'}]\n").unwrap();
    hup(server.child.id());
    wait_for_log("three.yaml");
    assert_eq!(ids(), ["one", "two"], "an invalid file keeps the previous set");
    let resp = http.post(format!("{}/v1/admin/reload", server.url)).bearer_auth("root-token").send().unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().unwrap();
    assert!(problem["file"].as_str().unwrap().ends_with("three.yaml"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("steps.a.when"), "{problem}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Starts the binary with `policies` (a directory) on `data`.
fn start_with_policies(data: &std::path::Path, policies: &std::path::Path) -> Server {
    Server::serve(BIN, data, &["--policies".as_ref(), policies.as_os_str()], Stdio::null())
}

fn get_json(url: &str) -> Value {
    http().get(url).bearer_auth("alice-token").send().unwrap().json().unwrap()
}

/// Polls `id` until `done` holds, for at most `secs` seconds of real time.
fn wait_for(server: &Server, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let r = get_json(&format!("{}/v1/requests/{id}", server.url));
        if done(&r) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {r}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn timed_events(server: &Server, id: &str, kind: &str) -> Vec<Value> {
    let v = get_json(&format!("{}/v1/requests/{id}/events", server.url));
    v["items"].as_array().unwrap().iter().filter(|e| e["type"] == kind).cloned().collect()
}

fn drift_ms(event: &Value) -> i64 {
    let at: jiff::Timestamp = event["at"].as_str().unwrap().parse().unwrap();
    let due: jiff::Timestamp = event["data"]["due"].as_str().unwrap().parse().unwrap();
    at.duration_since(due).as_millis() as i64
}

const SECOND_SCALE: &str = "id: quick\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    sla: 2s\n    on_timeout: approve\n    remind_every: 1s\n    escalation: [{after: 1s, to: {users: [fiona]}}]\n  - {id: b, approvers: {users: [lena]}, sla: 1s, on_timeout: reject}\n";

#[test]
/// That second-scale timers fire, each once and never early, through the real binary; how
/// soon after their due time is the timers benchmark's to measure (`signoff-bench timers`).
fn second_scale_timers_fire_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("quick.yaml"), SECOND_SCALE).unwrap();
    let server = start_with_policies(&dir.path().join("data"), &policies);
    let (code, out, err) = server.client("alice-token", &["submit", "--policy", "quick", "--context", "-"]);
    assert_eq!(code, 2, "usage error: stdin is empty: {out}{err}");
    let ctx = dir.path().join("ctx.json");
    std::fs::write(&ctx, "{}").unwrap();
    let (code, out, _) = server.client("alice-token", &["submit", "--policy", "quick", "--context", ctx.to_str().unwrap()]);
    assert_eq!(code, 0);
    let id = field(&out, "request").to_string();
    // a escalates at 1 s, reminds at 1 s and 2 s (the second may be covered by the timeout),
    // times out at 2 s (approve); then b times out 1 s later (reject).
    let r = wait_for(&server, &id, 15, |r| r["status"] != "pending");
    assert_eq!(r["status"], "rejected");
    for kind in ["escalated", "step_timed_out", "reminded"] {
        let events = timed_events(&server, &id, kind);
        assert!(!events.is_empty(), "no {kind}");
        for e in &events {
            let drift = drift_ms(e);
            assert!(drift >= 0, "{kind} fired {drift} ms before its due time");
        }
    }
    assert_eq!(timed_events(&server, &id, "escalated").len(), 1);
    assert_eq!(timed_events(&server, &id, "step_timed_out").len(), 2);
    server.kill9();
}

#[test]
fn timers_due_while_the_server_was_down_fire_right_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("quick.yaml"), SECOND_SCALE).unwrap();
    let data = dir.path().join("data");
    let server = start_with_policies(&data, &policies);
    let http = http();
    let mut ids = Vec::new();
    let mut latest_due = None;
    for _ in 0..5 {
        let r: Value = http
            .post(format!("{}/v1/requests", server.url))
            .bearer_auth("alice-token")
            .json(&serde_json::json!({"policy": "quick", "context": {}}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_string());
        let due: jiff::Timestamp = r["steps"][0]["due_at"].as_str().unwrap().parse().unwrap();
        latest_due = latest_due.max(Some(due));
    }
    server.kill9();
    // Stay down past every due time (a's timeout at 2 s), then start again.
    let latest = latest_due.expect("the requests have due steps");
    signoff_testkit::poll::until("the due times to pass", std::time::Duration::from_secs(10), || (jiff::Timestamp::now() > latest).then_some(()));
    let started = jiff::Timestamp::now();
    let server = start_with_policies(&data, &policies);
    for id in &ids {
        let r = wait_for(&server, id, 15, |r| r["steps"][0]["status"] == "approved");
        assert_eq!(r["steps"][0]["decision_reason"], "step `a` timed out");
        let timeouts = timed_events(&server, id, "step_timed_out");
        let fired: jiff::Timestamp = timeouts[0]["at"].as_str().unwrap().parse().unwrap();
        assert!(fired >= started, "fired by the restarted server, at {fired}");
        assert_eq!(timed_events(&server, id, "escalated").len(), 1, "each level once, even across a crash");
    }
    for id in &ids {
        wait_for(&server, id, 15, |r| r["status"] == "rejected");
        assert_eq!(timed_events(&server, id, "step_timed_out").len(), 2, "exactly once each");
    }
    server.kill9();
}

#[test]
fn signoff_wait_blocks_until_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let quote = dir.path().join("quote.json");
    std::fs::write(&quote, include_str!("../../../../examples/requests/quote-discount.json")).unwrap();
    let submit = |server: &Server| {
        let (code, out, _) = server.client("alice-token", &["submit", "--policy", "quote-discount", "--context", quote.to_str().unwrap()]);
        assert_eq!(code, 0);
        field(&out, "request").to_string()
    };
    let spawn_wait = |server: &Server, id: &str| {
        Command::new(BIN)
            .args(["wait", id])
            .env("SIGNOFF_URL", &server.url)
            .env("SIGNOFF_TOKEN", "alice-token")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let id = submit(&server);
    let waiter = spawn_wait(&server, &id);
    server.client("mark-token", &["action", &id, "--step", "manager", "--action", "approve"]);
    server.client("fiona-token", &["action", &id, "--step", "finance", "--action", "approve"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "approved exits 0");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("request={id} status=approved"));

    let id = submit(&server);
    let waiter = spawn_wait(&server, &id);
    server.client("fiona-token", &["action", &id, "--step", "finance", "--action", "reject", "--comment", "no"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "rejected exits 1");

    let id = submit(&server);
    let (code, out, err) = server.client("alice-token", &["wait", &id, "--timeout", "1s"]);
    assert_eq!((code, out.trim()), (4, format!("request={id} status=pending").as_str()), "still pending at the timeout exits 4, not 1: {err}");
    server.kill9();
}

#[test]
fn killing_the_server_mid_delivery_loses_nothing() {
    let receiver = WebhookReceiver::start_blocking(Behaviour { secret: None, hold: 5 });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signoff.toml");
    std::fs::write(
        &config,
        format!("[[notify.webhooks]]\nname = \"crm\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"submitted\"]\n", receiver.url),
    )
    .unwrap();
    let data = dir.path().join("data");
    let start = || Server::serve(BIN, &data, &["--config".as_ref(), config.as_os_str()], Stdio::null());
    let server = start();
    let http = http();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let r: Value = http
            .post(format!("{}/v1/requests", server.url))
            .bearer_auth("alice-token")
            .json(&serde_json::json!({"policy": "quote-discount", "context": {"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    // Wait until deliveries are in flight (held by the receiver), then kill the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while receiver.arrivals.lock().unwrap().len() < 5 {
        assert!(std::time::Instant::now() < deadline, "no delivery started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill9();
    receiver.release.notify_waiters();

    let server = start();
    let mut expected = std::collections::HashSet::new();
    for id in &ids {
        let report: Value = http.get(format!("{}/v1/requests/{id}/notifications", server.url)).bearer_auth("alice-token").send().unwrap().json().unwrap();
        for n in report["items"].as_array().unwrap() {
            expected.insert(n["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(expected.len(), ids.len(), "one webhook per submission");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let seen: std::collections::HashSet<String> = receiver.arrivals.lock().unwrap().iter().cloned().collect();
        if seen == expected {
            break;
        }
        assert!(seen.is_subset(&expected), "unexpected messages");
        assert!(std::time::Instant::now() < deadline, "lost: {:?}", expected.difference(&seen).collect::<Vec<_>>());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let arrivals = receiver.arrivals.lock().unwrap().len();
    assert!(arrivals > expected.len(), "the deliveries cut short were sent again ({arrivals} arrivals)");
    // And every one is recorded as delivered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for id in &ids {
        loop {
            let report: Value = http.get(format!("{}/v1/requests/{id}/notifications", server.url)).bearer_auth("alice-token").send().unwrap().json().unwrap();
            if report["items"][0]["status"] == "delivered" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{report}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    server.kill9();
}

#[test]
fn export_import_moves_everything_between_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(BIN, &data);
    let quote = dir.path().join("quote.json");
    std::fs::write(&quote, include_str!("../../../../examples/requests/quote-discount.json")).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, out, _) = server.client("alice-token", &["submit", "--policy", "quote-discount", "--context", quote.to_str().unwrap()]);
        let id = field(&out, "request").to_string();
        if i % 2 == 0 {
            server.client("mark-token", &["action", &id, "--step", "manager", "--action", "approve"]);
        }
        ids.push(id);
    }
    // A context at the nesting limit goes in, and comes out before and after a restart; one
    // level more is refused at the door.
    let deep = |levels: usize| -> Value {
        let text = format!("{{\"policy\": \"quote-discount\", \"context\": {{\"quote\": {{\"total\": 1, \"discount\": 0, \"margin\": 1, \"nonstandard_clause\": false, \"deep\": {}}}}}}}", signoff_engine::nesting::nested(levels, "1"));
        serde_json::from_str(&text).unwrap()
    };
    let limit = signoff_engine::nesting::MAX_DEPTH;
    let submit = |server: &Server, body: &Value| http().post(format!("{}/v1/requests", server.url)).bearer_auth("alice-token").json(body).send().unwrap();
    let resp = submit(&server, &deep(limit - 3));
    assert_eq!(resp.status().as_u16(), 201);
    let deep_id = resp.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let resp = submit(&server, &deep(limit - 2));
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().unwrap()["code"], "too_deep");
    let read_events = |server: &Server, id: &str| -> Value {
        let resp = http().get(format!("{}/v1/requests/{id}/events", server.url)).bearer_auth("alice-token").send().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().unwrap()
    };
    let before = read_events(&server, &deep_id);
    // A person added through the API moves with the data.
    let zoe = http().put(format!("{}/v1/admin/users/zoe", server.url)).bearer_auth("root-token").json(&serde_json::json!({"name": "Zoe"})).send().unwrap();
    assert_eq!(zoe.status().as_u16(), 200);
    server.kill9();
    let server = Server::start(BIN, &data);
    assert_eq!(read_events(&server, &deep_id), before, "the same history after a restart");
    server.kill9();
    ids.push(deep_id);
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let first = dir.path().join("first.jsonl");
    let report = run(&["export", "--data", data.to_str().unwrap(), "--out", first.to_str().unwrap()]);
    assert!(report.contains("requests=6") && report.contains("directory_changes=1"), "{report}");

    // SQLite -> SQLite always; SQLite -> PostgreSQL -> SQLite when PostgreSQL runs here.
    let source = if let Some(middle) = TestDatabase::create("export/import through PostgreSQL") {
        let url = middle.url.as_str();
        run(&["import", "--database-url", url, "--in", first.to_str().unwrap()]);
        // What arrived verifies there: chains, states, and every event queued for its log.
        let verified = Command::new(BIN).args(["verify", "--database-url", url]).output().unwrap();
        let said = String::from_utf8_lossy(&verified.stdout);
        assert_eq!(verified.status.code(), Some(0), "{said}");
        assert!(said.starts_with("verified: 6 requests"), "{said}");
        let second = dir.path().join("second.jsonl");
        run(&["export", "--database-url", url, "--out", second.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(&first).unwrap(), std::fs::read_to_string(&second).unwrap(), "PostgreSQL holds exactly what SQLite did");
        second
    } else {
        first.clone()
    };
    let back = dir.path().join("back");
    run(&["import", "--data", back.to_str().unwrap(), "--in", source.to_str().unwrap()]);
    let verified = Command::new(BIN).args(["verify", "--data"]).arg(&back).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));
    let third = dir.path().join("third.jsonl");
    run(&["export", "--data", back.to_str().unwrap(), "--out", third.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), std::fs::read_to_string(&third).unwrap(), "the round trip is lossless");
    // Importing twice is refused rather than duplicating.
    let out = Command::new(BIN).args(["import", "--data", back.to_str().unwrap(), "--in", first.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The moved data serves: chains verify, states are intact.
    let server = Server::start(BIN, &back);
    for id in &ids {
        let events: Value = http().get(format!("{}/v1/requests/{id}/events", server.url)).bearer_auth("alice-token").send().unwrap().json().unwrap();
        let events: Vec<signoff_engine::Event> = serde_json::from_value(events["items"].clone()).unwrap();
        signoff_engine::event::verify_chain(&events).unwrap();
    }
    let zoe = http().get(format!("{}/v1/users/zoe/directory", server.url)).bearer_auth("root-token").send().unwrap();
    assert_eq!(zoe.status().as_u16(), 200, "the API's directory changes came along");
    server.kill9();
}

/// Reads SSE `state` events from a stream until the stream ends; returns each state's status
/// and version.
fn follow_stream(url: String) -> std::thread::JoinHandle<Vec<(String, u64)>> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut resp = reqwest::blocking::Client::builder().timeout(None).build().unwrap().get(&url).bearer_auth("alice-token").send().unwrap();
        let mut text = String::new();
        let mut buf = [0u8; 8192];
        loop {
            match resp.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text.split("\n\n")
            .filter(|b| b.contains("event: state"))
            .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| {
                let state = serde_json::from_str::<Value>(d).unwrap();
                (state["status"].as_str().unwrap().to_string(), state["version"].as_u64().unwrap())
            })
            .collect()
    })
}

/// A thread following one request's stream: the (event, version) pairs it saw.
type Follower = std::thread::JoinHandle<Vec<(String, u64)>>;

/// What the fault test's clients saw.
#[derive(Default)]
struct Load {
    /// Requests created, each with the thread following its stream.
    requests: Vec<(String, Follower)>,
    /// Acknowledged approvals: (request, step, actor).
    acknowledged: Vec<(String, &'static str, &'static str)>,
    /// Calls cut off mid-flight (sent, then the connection dropped) and retried elsewhere.
    cut: usize,
    /// Calls refused by the dead instance and sent to another.
    refused: usize,
}

#[test]
fn three_instances_on_postgres_survive_a_kill_9_mid_load() {
    let Some(db) = TestDatabase::create("the three-instance fault test") else { return };
    let url = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("pair.yaml"), "id: pair\nsteps:\n  - {id: manager, after: [], approvers: {users: [mark]}, sla: 3s, on_timeout: approve}\n  - {id: finance, after: [], approvers: {groups: [finance]}}\n").unwrap();
    let start = |name: &str| Server::serve(BIN, &dir.path().join(name), &["--database-url".as_ref(), url.as_ref(), "--policies".as_ref(), policies.as_os_str()], Stdio::null());
    let mut instances: Vec<Option<Server>> = vec![Some(start("a")), Some(start("b")), Some(start("c"))];
    let urls: Vec<String> = instances.iter().map(|s| s.as_ref().unwrap().url.clone()).collect();
    let http = http();
    let load = std::sync::Mutex::new(Load::default());
    let acked = std::sync::atomic::AtomicUsize::new(0);
    // Calls sent to instance a and not yet answered.
    let on_a = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // POST with an idempotency key to the given instance; when the call fails (the instance is
    // down, or died while the call was in flight), the same call goes to the next instance.
    let post = |first: usize, path: &str, token: &str, key: &str, body: &Value| -> Value {
        for i in 0..6 {
            let instance = (first + i) % 3;
            let base = &urls[instance];
            if instance == 0 {
                on_a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let sent = http.post(format!("{base}{path}")).bearer_auth(token).header("Idempotency-Key", key).json(body).send();
            let answer = sent.and_then(|resp| {
                let status = resp.status();
                resp.json::<Value>().map(|body| (status, body))
            });
            if instance == 0 {
                on_a.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
            match answer {
                Ok((status, body)) => {
                    assert!(status.is_success(), "{path}: {status} {body}");
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return body;
                }
                Err(e) if e.is_connect() => load.lock().unwrap().refused += 1,
                Err(_) => load.lock().unwrap().cut += 1,
            }
        }
        panic!("no instance answered {path}");
    };
    std::thread::scope(|scope| {
        // Eight clients run workflows concurrently, each call to a different instance: submit,
        // finance approves, and for every other request the manager approves (the others time out).
        for client in 0..8 {
            let (post, load, stop, urls) = (&post, &load, &stop, &urls);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let tag = format!("{client}-{n}");
                    let r = post(n + client, "/v1/requests", "alice-token", &format!("submit-{tag}"), &serde_json::json!({"policy": "pair", "context": {}}));
                    let id = r["id"].as_str().unwrap().to_string();
                    // A stream client on an instance that survives.
                    let stream = follow_stream(format!("{}/v1/requests/{id}/stream", urls[1 + (n + client) % 2]));
                    load.lock().unwrap().requests.push((id.clone(), stream));
                    let action = format!("/v1/requests/{id}/actions");
                    post(n + client + 1, &action, "fiona-token", &format!("fin-{tag}"), &serde_json::json!({"action": "approve", "step": "finance"}));
                    load.lock().unwrap().acknowledged.push((id.clone(), "finance", "fiona"));
                    if n % 2 == 0 {
                        post(n + client + 2, &action, "mark-token", &format!("man-{tag}"), &serde_json::json!({"action": "approve", "step": "manager"}));
                        load.lock().unwrap().acknowledged.push((id.clone(), "manager", "mark"));
                    }
                    n += 1;
                }
            });
        }
        // Kill instance a while at least three calls to it are in flight, then keep the load going.
        let wait_for = |calls: usize| {
            while acked.load(std::sync::atomic::Ordering::SeqCst) < calls {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        };
        wait_for(60);
        while on_a.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        instances[0].take().unwrap().kill9();
        let at_kill = acked.load(std::sync::atomic::Ordering::SeqCst);
        wait_for(at_kill + 60);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let load = load.into_inner().unwrap();
    assert!(load.cut + load.refused > 0, "no call met the dead instance");
    eprintln!("fault test: {} requests, {} calls cut mid-flight, {} refused", load.requests.len(), load.cut, load.refused);
    // The managers who did not act time out (3 s, on_timeout: approve) on a surviving instance;
    // timers the dead instance had claimed are fired after their 15 s lease.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut finals = std::collections::HashMap::new();
    for (id, _) in &load.requests {
        loop {
            let r: Value = http.get(format!("{}/v1/requests/{id}", urls[1])).bearer_auth("alice-token").send().unwrap().json().unwrap();
            if r["status"] == "approved" {
                finals.insert(id.clone(), r["version"].as_u64().unwrap());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{id} never completed: {r}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    for (id, _) in &load.requests {
        let events: Value = http.get(format!("{}/v1/requests/{id}/events", urls[2])).bearer_auth("alice-token").send().unwrap().json().unwrap();
        let events: Vec<signoff_engine::Event> = serde_json::from_value(events["items"].clone()).unwrap();
        signoff_engine::event::verify_chain(&events).unwrap();
        assert_eq!(events.len() as u64, finals[id], "{id}: no event lost or duplicated");
        let count = |kind: &str, step: &str| events.iter().filter(|e| e.kind.type_name() == kind && e.step.as_deref() == Some(step)).count();
        assert_eq!(count("step_decided", "manager"), 1, "{id}: the manager step was decided once");
        assert_eq!(count("step_decided", "finance"), 1, "{id}: the finance step was decided once");
        assert_eq!(count("approved", "finance"), 1, "{id}: finance approved once");
        assert!(count("step_timed_out", "manager") <= 1, "{id}: a timer fired at most once");
        assert_eq!(count("approved", "manager") + count("step_timed_out", "manager"), 1, "{id}: a decision or a timeout, never both");
        assert_eq!(events.iter().filter(|e| e.kind.type_name() == "completed").count(), 1, "{id}: no duplicated completion");
        for (_, step, actor) in load.acknowledged.iter().filter(|a| &a.0 == id) {
            assert!(events.iter().any(|e| e.kind.type_name() == "approved" && e.step.as_deref() == Some(*step) && e.actor == *actor), "{id}: an acknowledged approval by {actor} was lost");
        }
    }
    for (id, stream) in load.requests {
        let seen = stream.join().unwrap();
        assert_eq!(seen.last(), Some(&("approved".to_string(), finals[&id])), "{id}: the stream client saw the final state: {seen:?}");
    }
    for s in instances.into_iter().flatten() {
        s.kill9();
    }
}


/// Every policy in `examples/policies/` with its example context `examples/requests/<id>.json`,
/// submitted against the built-in demo directory and driven to `approved` by the people the
/// plan names (acknowledging checklists first).
#[test]
fn every_bundled_example_runs_to_approved() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let http = http();
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/policies")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3);
    for file in files {
        let policy = signoff_engine::Policy::from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let context_file = format!("{root}/requests/{}.json", policy.id);
        let context: Value = serde_json::from_str(&std::fs::read_to_string(&context_file).unwrap_or_else(|_| panic!("{context_file}: every example needs a request"))).unwrap();
        let submitted: Value = http
            .post(format!("{}/v1/requests", server.url))
            .bearer_auth("alice-token")
            .json(&serde_json::json!({"policy": policy.id, "context": context, "subject": "example"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = submitted["id"].as_str().unwrap_or_else(|| panic!("{}: {submitted}", policy.id)).to_string();
        let mut state = submitted;
        for _ in 0..10 {
            if state["status"] != "pending" {
                break;
            }
            let step = state["steps"].as_array().unwrap().iter().find(|s| s["status"] == "active").unwrap().clone();
            let voted = |who: &str| state["steps"].as_array().unwrap().iter().any(|s| s["approvals"].as_array().unwrap().iter().any(|v| v["by"] == who));
            let approver = step["approvers"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).find(|a| *a != "alice" && !voted(a));
            let approver = approver.unwrap_or_else(|| panic!("{}: nobody left to approve step {}: {state}", policy.id, step["id"])).to_string();
            let act = |body: Value| -> Value {
                let resp = http.post(format!("{}/v1/requests/{id}/actions", server.url)).bearer_auth(format!("{approver}-token")).json(&body).send().unwrap();
                let status = resp.status();
                let v: Value = resp.json().unwrap();
                assert!(status.is_success(), "{}: {approver} {body}: {v}", policy.id);
                v
            };
            for item in step["require_acks"].as_array().into_iter().flatten() {
                act(serde_json::json!({"action": "acknowledge", "step": step["id"], "item": item}));
            }
            state = act(serde_json::json!({"action": "approve", "step": step["id"], "comment": "ok"}));
        }
        assert_eq!(state["status"], "approved", "{}: {state}", policy.id);
    }
    let screen = server.stdout.lock().unwrap().join("\n");
    assert!(!screen.contains("policy warnings"), "the examples fit the demo directory: {screen}");
    server.kill9();
}

#[test]
fn the_first_screen_says_who_is_who_and_where_the_data_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(BIN, &data);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let screen = loop {
        let lines = server.stdout.lock().unwrap().clone();
        if lines.iter().any(|l| l.starts_with("data: ")) {
            break lines.join("\n");
        }
        assert!(std::time::Instant::now() < deadline, "no data line: {lines:?}");
        std::thread::yield_now();
    };
    for expected in [
        "  alice: alice-token  (Alice Adams; reports to mark)",
        "  mark: mark-token  (Mark Mendes; in sales-managers)",
        "  fiona: fiona-token  (Fiona Fox; in finance)",
        "  root: root-token  (Admin; admin)",
    ] {
        assert!(screen.contains(expected), "missing {expected:?} in\n{screen}");
    }
    let db = std::path::absolute(data.join("signoff.db")).unwrap();
    assert!(screen.contains(&format!("data: {}", db.display())), "{screen}");
    server.kill9();
}

#[test]
fn the_approvers_view_in_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let quote = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/requests/quote-discount.json");
    let (_, out, err) = server.client("alice-token", &["submit", "--policy", "quote-discount", "--subject", "Q-1", "--title", "ACME renewal", "--context", quote]);
    let id = field(&out, "request").to_string();
    let _ = err;

    let (code, out, _) = server.client("mark-token", &["inbox"]);
    assert_eq!(code, 0);
    let line = out.lines().next().unwrap();
    for (k, v) in [("request", id.as_str()), ("step", "manager"), ("policy", "quote-discount"), ("requester", "alice"), ("title", "\"ACME renewal\"")] {
        assert!(line.contains(&format!("{k}={v}")), "{k} in {line}");
    }
    assert!(field(line, "due").len() == "2026-12-01T19:16:11.123Z".len(), "three fractional digits: {line}");

    let (_, out, _) = server.client("mark-token", &["action", &id, "--step", "manager", "--action", "approve"]);
    assert!(out.contains("step_status=approved"), "{out}");
    let (_, out, _) = server.client("alice-token", &["status", &id]);
    assert!(out.contains("step=manager status=approved progress=1/1"), "{out}");
    assert!(out.contains("step=finance status=active progress=0/1 approvers=[fiona,frank] due="), "{out}");
    assert!(out.contains("step=legal status=skipped progress=0/1"), "{out}");

    let (_, out, _) = server.client("alice-token", &["history", &id]);
    for line in out.lines() {
        assert!(line.starts_with("seq=") && line.contains(" at=") && line.contains(" type=") && line.contains(" actor=") && line.contains(" step="), "{line}");
    }
    assert!(out.contains("type=approved actor=mark step=manager\n"), "{out}");
    assert!(out.contains(" policy.hash=sha256:") && out.contains(" policy.id=quote-discount policy.version=1 "), "{out}");
    assert!(out.contains(" approvers=[fiona,frank] "), "{out}");

    let (code, out, _) = server.client("alice-token", &["requests"]);
    assert_eq!(code, 0);
    assert_eq!(field(out.lines().next().unwrap(), "steps"), "manager:1/1,finance:0/1", "{out}");
    let (_, out, _) = server.client("alice-token", &["requests", "--overdue"]);
    assert_eq!(out, "", "nothing is overdue yet");
    let (_, out, _) = server.client("alice-token", &["requests", "--status", "approved"]);
    assert_eq!(out, "");
    let (code, out, _) = server.client("root-token", &["inbox", "--all"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("approver=fiona")) && out.lines().any(|l| l.contains("approver=frank")), "{out}");
    let (code, _, err) = server.client("mark-token", &["inbox", "--all"]);
    assert_eq!(code, 1, "only admins: {err}");

    let (_, out, _) = server.client("fiona-token", &["whoami"]);
    assert_eq!(out.trim(), "user=fiona name=\"Fiona Fox\" groups=[finance] manager=- admin=false");
    let (_, out, _) = server.client("fiona-token", &["policy", "list"]);
    assert!(out.lines().any(|l| l.starts_with("policy=prod-deploy version=")), "{out}");

    let out = Command::new(BIN).args(["token", "new", "nina"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let token = field(&text, "token");
    assert!(token.len() > 40, "{text}");
    assert!(text.contains(&format!("- {{ user: nina, sha256: {} }}", signoff_engine::directory::token_hash(token))), "{text}");
    server.kill9();
}

#[test]
fn errors_say_what_to_do_next() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let quote = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/requests/quote-discount.json");
    let (_, out, _) = server.client("alice-token", &["submit", "--policy", "quote-discount", "--context", quote]);
    let id = field(&out, "request").to_string();

    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(args).env("SIGNOFF_URL", &server.url).env_remove("SIGNOFF_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = run(&["inbox"], &[]);
    assert!(code == 2 && err.contains("SIGNOFF_TOKEN") && err.contains("--token"), "{code} {err}");
    let (code, err) = run(&["inbox"], &[("SIGNOFF_TOKEN", "mark-token"), ("SIGNOFF_URL", "http://127.0.0.1:1")]);
    assert!(code == 3 && err.contains("nothing answers at http://127.0.0.1:1") && err.contains("signoff serve"), "{code} {err}");
    let (code, err) = run(&["inbox", "--url", "localhost:7800"], &[("SIGNOFF_TOKEN", "mark-token")]);
    assert!(code == 2 && err.contains("http or https"), "{code} {err}");
    let (code, err) = run(&["action", &id, "--action", "aprove", "--step", "manager"], &[("SIGNOFF_TOKEN", "mark-token")]);
    assert!(code == 2 && err.contains("approve") && err.contains("reject"), "lists the valid actions: {code} {err}");
    let (code, err) = run(&["action", &id, "--action", "approve"], &[("SIGNOFF_TOKEN", "mark-token")]);
    assert!(code == 2 && err.contains("--step is required") && err.contains("[manager,finance]"), "{code} {err}");
    let (code, err) = run(&["action", &id, "--action", "approve", "--step", "managr"], &[("SIGNOFF_TOKEN", "mark-token")]);
    assert!(code == 1 && err.contains("did you mean `manager`"), "{code} {err}");
    let (code, err) = run(&["submit", "--policy", "quote-discont", "--context", quote], &[("SIGNOFF_TOKEN", "alice-token")]);
    assert!(code == 1 && err.contains("did you mean `quote-discount`") && err.contains("prod-deploy"), "{code} {err}");

    // policy check: a directory, warnings against a directory file, a quorum that is neither.
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("ops.yaml"), "id: ops\nsteps: [{id: a, approvers: {groups: [sre]}, sla: 1h, escalation: [{after: 2h, to: {users: [nobody]}}]}]\n").unwrap();
    let (code, err) = run(&["policy", "check", policies.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "warnings never fail a check: {err}");
    assert!(err.contains("warning: ") && err.contains("steps.a.escalation[0].after") && err.contains("no user `nobody`"), "{err}");
    let directory = dir.path().join("directory.yaml");
    std::fs::write(&directory, "users: [{id: nobody}]\n").unwrap();
    let (code, err) = run(&["policy", "check", "--directory", directory.to_str().unwrap(), policies.to_str().unwrap()], &[]);
    assert!(code == 0 && err.contains("no group `sre` in the directory") && !err.contains("no user `nobody`"), "{err}");
    std::fs::write(policies.join("q.yml"), "id: q\nsteps: [{id: a, approvers: {users: [x]}, quorum: two}]\n").unwrap();
    let (code, err) = run(&["policy", "check", policies.to_str().unwrap()], &[]);
    assert!(code == 1 && err.contains("steps.a.quorum: must be a number or \"all\""), "{err}");

    // The server logged each refusal as one line; exporting while it serves works.
    let export = dir.path().join("export.jsonl");
    let out = Command::new(BIN).args(["export", "--data"]).arg(dir.path().join("data")).arg("--out").arg(&export).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&export).unwrap().contains(&id), "the export holds the request");
    let (code, _, _) = server.client("mark-token", &["action", &id, "--step", "manager", "--action", "approve"]);
    assert_eq!(code, 0, "the server kept serving");
    server.kill9();
}

#[test]
fn the_readme_curl_tour_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let after = &readme[readme.find("### With curl").expect("a curl tour")..];
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let script = &after[start..start + after[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let address = server.url.trim_start_matches("http://").to_string();
    let out = Command::new("bash").args(["-euo", "pipefail", "-c"]).arg(script.replace("localhost:7800", &address)).output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the tour failed:\n{script}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim_end().lines().last(), Some("approved"), "{stdout}");
    server.kill9();
}

/// Insights through the real binary: a seeded history, then statistics, a person's summary,
/// the report and a what-if simulation from the command line.
#[test]
fn seeded_history_gives_statistics_a_report_and_a_simulation_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN).args(["seed", "--requests", "600", "--days", "14", "--data"]).arg(&data).output().unwrap();
    let seeded = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{seeded}{}", String::from_utf8_lossy(&out.stderr));
    let requests: usize = field(&seeded, "requests").parse().unwrap();
    assert!(requests >= 600, "{seeded}");
    let server = Server::start(BIN, &data);

    let (code, stats, err) = server.client("root-token", &["stats", "--since", "15d"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(stats.lines().next().unwrap(), "requests"), requests.to_string(), "{stats}");
    assert!(stats.lines().any(|l| l.starts_with("step=quote-discount/manager ")), "{stats}");
    // dana owns the deal desk: her statistics are its alone; alice owns nothing.
    let (code, dana, _) = server.client("dana-token", &["stats", "--since", "15d"]);
    assert_eq!(code, 0);
    assert!(dana.lines().skip(3).all(|l| l.starts_with("step=quote-discount/")), "{dana}");
    let (code, _, err) = server.client("alice-token", &["stats"]);
    assert_eq!(code, 1, "refused: {err}");
    assert!(err.contains("forbidden"), "{err}");
    let (code, me, _) = server.client("mark-token", &["stats", "--user", "me", "--since", "15d"]);
    assert_eq!(code, 0);
    assert!(field(&me, "approved").parse::<u32>().unwrap() > 0, "{me}");

    let report = dir.path().join("insights.html");
    let (code, _, err) = server.client("dana-token", &["report", "--out", report.to_str().unwrap(), "--days", "30"]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("Insights") && html.matches("<svg").count() == 3, "the report holds its pictures");

    let live = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policies/quote-discount.yaml")).unwrap();
    let candidate = dir.path().join("candidate.yaml");
    std::fs::write(&candidate, live.replace("'quote.total < 1000'", "'quote.total < 20000'")).unwrap();
    let (code, sim, err) = server.client("dana-token", &["policy", "simulate", candidate.to_str().unwrap(), "--since", "15d"]);
    assert_eq!(code, 0, "{err}");
    let first = sim.lines().next().unwrap();
    assert!(field(first, "differ").parse::<u32>().unwrap() > 0, "{sim}");
    assert!(sim.lines().any(|l| l.starts_with("difference=auto_approved ")), "{sim}");
    std::fs::write(&candidate, &live).unwrap();
    let (_, same, _) = server.client("dana-token", &["policy", "simulate", candidate.to_str().unwrap(), "--since", "15d"]);
    assert_eq!(field(same.lines().next().unwrap(), "differ"), "0", "{same}");
    server.kill9();
}
