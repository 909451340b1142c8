//! Traces through the real binary, to a real OTLP receiver on loopback: the spans exist under
//! their names, with the right parents, a `traceparent` sent in is continued, and an outgoing
//! webhook carries one. Renaming a span fails here.

use std::process::Stdio;

use serde_json::{Value, json};
use signoff_testkit::binary::{Server, http};
use signoff_testkit::peers::otlp::{OtlpReceiver, Span};
use signoff_testkit::peers::webhook::{Behaviour, WebhookReceiver};

const BIN: &str = env!("CARGO_BIN_EXE_signoff");
const FAST: &str = "id: fast\nsteps:\n  - id: review\n    approvers: {users: [mark]}\n    require_acks: [security]\n    escalation: [{after: 1s, to: {users: [dana]}}]\n";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name}: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()))
}

#[test]
fn spans_reach_the_otlp_receiver_parented_and_continuing_the_callers_trace() {
    let otlp = OtlpReceiver::start();
    let hook = WebhookReceiver::start_blocking(Behaviour { secret: None, hold: 0 });
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("fast.yaml"), FAST).unwrap();
    let config = dir.path().join("signoff.toml");
    let secret = signoff_testkit::peers::webhook::SECRET;
    std::fs::write(&config, format!("[[notify.webhooks]]\nname = \"crm\"\nurl = \"{}\"\nsecret = \"{secret}\"\nevents = [\"submitted\"]\n", hook.url)).unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.as_str()), ("OTEL_SERVICE_NAME", "signoff-test"), ("OTEL_BSP_SCHEDULE_DELAY", "100"), ("OTEL_TRACES_SAMPLER", "always_on")];
    let args = ["--policies".as_ref(), policies.as_os_str(), "--config".as_ref(), config.as_os_str(), "--log-format".as_ref(), "json".as_ref()];
    let mut server = Server::serve_with(BIN, &dir.path().join("data"), &args, Stdio::piped(), &env);

    let submitted: Value = http()
        .post(format!("{}/v1/requests", server.url))
        .bearer_auth("alice-token")
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"policy": "fast", "context": {}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = submitted["id"].as_str().unwrap();
    let acked = http()
        .post(format!("{}/v1/requests/{id}/actions", server.url))
        .bearer_auth("mark-token")
        .json(&json!({"action": "acknowledge", "step": "review", "item": "security"}))
        .send()
        .unwrap();
    assert!(acked.status().is_success());

    let spans = otlp.wait_for(&["POST /v1/requests", "submit", "store.commit", "POST /v1/requests/{id}/actions", "action acknowledge", "timer escalate", "webhook"]);
    let call = named(&spans, "POST /v1/requests");
    assert_eq!((call.trace_id.as_str(), call.parent_span_id.as_str()), (TRACE, CALLER_SPAN), "the caller's trace goes on");
    assert_eq!(call.service, "signoff-test");
    assert_eq!(call.attribute("http.response.status_code"), Some("201"));
    assert_eq!(call.attribute("http.route"), Some("/v1/requests"));
    let submit = named(&spans, "submit");
    assert_eq!((submit.trace_id.as_str(), submit.parent_span_id.as_str()), (TRACE, call.span_id.as_str()), "submit runs in the call");
    let commit = spans.iter().find(|s| s.name == "store.commit" && s.parent_span_id == submit.span_id).expect("submit's commit");
    assert_eq!(commit.trace_id, TRACE);
    let action = named(&spans, "action acknowledge");
    let action_call = named(&spans, "POST /v1/requests/{id}/actions");
    assert_eq!(action.parent_span_id, action_call.span_id, "the action runs in its call");
    assert_ne!(action.trace_id, TRACE, "a call without traceparent starts its own trace");
    let timer = named(&spans, "timer escalate");
    assert!(spans.iter().any(|s| s.name == "store.commit" && s.parent_span_id == timer.span_id), "the timer's commit is its child");
    // The webhook delivery joins the trace of the submission that queued it, and that trace
    // goes on with the receiver.
    let delivery = named(&spans, "webhook");
    assert_eq!((delivery.trace_id.as_str(), delivery.parent_span_id.as_str()), (TRACE, submit.span_id.as_str()), "queued by submit");
    let sent = hook.traceparents.lock().unwrap().clone();
    assert!(sent.iter().any(|tp| tp.starts_with(&format!("00-{}-", delivery.trace_id))), "{sent:?} vs {}", delivery.trace_id);
    // The log line of the submission names its trace.
    server.child.kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().unwrap(), &mut log).unwrap();
    server.child.wait().unwrap();
    let committed = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "committed" && l["actor"] == "alice")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(committed["trace_id"], TRACE, "{committed}");
    assert_eq!(committed["request"], id);
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_a_bad_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTLP_TIMEOUT_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_EXPORTER_OTLP_TIMEOUT: `soon` is not a number of milliseconds"), "the plan's alias is read, and a bad value named: {err}");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OTEL_TRACES_SAMPLER: `sometimes` is not one of"), "an unknown sampler is named");
}
