//! Live updates over HTTP: SSE streams, the caller-wide stream and long-poll waits, with an
//! injected clock so heartbeats and timeouts happen when the test says.

use std::sync::Arc;

use signoff_testkit::app::*;
use jiff::SignedDuration;
use serde_json::{Value, json};
use signoff_server::ManualClock;

/// One parsed Server-Sent Event.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Reads events from a streaming response.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(app: &App, user: &str, path: &str, last_id: Option<&str>) -> Events {
        let mut req = app.http.get(format!("{}{path}", app.url)).bearer_auth(format!("{user}-token"));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events { resp, buf: String::new() }
    }

    /// The next event, or None when the server closed the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_empty() {
                    continue;
                }
                return Some(Sse { event, id, data: serde_json::from_str(&data).unwrap_or(Value::Null) });
            }
            let chunk = self.resp.chunk().await.unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn app() -> (App, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new("2026-11-22T09:00:00Z".parse().unwrap()));
    (spawn_app_with(clock.clone(), "").await, clock)
}

/// Waits (without real time) until `n` tasks sleep on the clock.
async fn sleepers(clock: &ManualClock, n: usize) {
    while clock.sleepers() < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_request_stream_sends_every_change_and_closes_after_the_end() {
    let (app, _) = app().await;
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    let id = r["id"].as_str().unwrap();
    let mut stream = Events::open(&app, "alice", &format!("/v1/requests/{id}/stream"), None).await;
    let first = stream.next().await.unwrap();
    assert_eq!(first.event, "state");
    assert_eq!(first.id.as_deref(), Some(r["version"].to_string().as_str()));
    assert_eq!(first.data["status"], "pending");
    app.approve("mark", id, "manager").await;
    let second = stream.next().await.unwrap();
    assert_eq!(second.data["steps"][0]["status"], "approved");
    let done = app.approve("fiona", id, "finance").await;
    let last = stream.next().await.unwrap();
    assert_eq!((last.data["status"].as_str(), last.id), (Some("approved"), Some(done["version"].to_string())));
    assert!(stream.next().await.is_none(), "the stream closes after the terminal state");
}

#[tokio::test]
async fn last_event_id_resumes_without_loss() {
    let (app, _) = app().await;
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    let id = r["id"].as_str().unwrap();
    let seen = r["version"].to_string();
    // A change the client missed while disconnected arrives at once on reconnection.
    app.approve("mark", id, "manager").await;
    let mut stream = Events::open(&app, "alice", &format!("/v1/requests/{id}/stream"), Some(&seen)).await;
    let missed = stream.next().await.unwrap();
    assert_eq!(missed.data["steps"][0]["status"], "approved");
    // Up to date: nothing is repeated, the next change comes when it happens.
    let current = missed.id.unwrap();
    let mut stream = Events::open(&app, "alice", &format!("/v1/requests/{id}/stream"), Some(&current)).await;
    app.approve("fiona", id, "finance").await;
    let next = stream.next().await.unwrap();
    assert_eq!(next.data["status"], "approved");
    assert!(next.id.unwrap().parse::<u64>().unwrap() > current.parse::<u64>().unwrap());
    // A closed request the client has fully seen: the stream ends at once.
    let (_, closed) = app.get("alice", &format!("/v1/requests/{id}")).await;
    let mut stream = Events::open(&app, "alice", &format!("/v1/requests/{id}/stream"), Some(&closed["version"].to_string())).await;
    assert!(stream.next().await.is_none());
    let (status, body) = app.get("alice", &format!("/v1/requests/{id}/stream")).await;
    assert_eq!(status, 200, "{body}");
    let resp = app.http.get(format!("{}/v1/requests/{id}/stream", app.url)).bearer_auth("alice-token").header("Last-Event-ID", "x").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn heartbeats_follow_the_clock() {
    let (app, clock) = app().await;
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let mut stream = Events::open(&app, "alice", &format!("/v1/requests/{id}/stream"), None).await;
    assert_eq!(stream.next().await.unwrap().event, "state");
    sleepers(&clock, 1).await;
    clock.advance(SignedDuration::from_secs(15));
    let beat = stream.next().await.unwrap();
    assert_eq!(beat.event, "heartbeat");
    assert_eq!(beat.data["at"], "2026-11-22T09:00:15Z");
}

#[tokio::test]
async fn the_caller_stream_carries_the_inbox_and_its_changes() {
    let (app, _) = app().await;
    let before = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let mut stream = Events::open(&app, "fiona", "/v1/stream", None).await;
    let inbox = stream.next().await.unwrap();
    assert_eq!(inbox.event, "inbox");
    assert_eq!(inbox.data["items"][0]["request"], before.as_str());
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let new_task = stream.next().await.unwrap();
    assert_eq!((new_task.event.as_str(), new_task.data["id"].as_str()), ("request", Some(id.as_str())));
    app.approve("frank", &before, "finance").await;
    let done = stream.next().await.unwrap();
    assert_eq!((done.data["id"].as_str(), done.data["status"].as_str()), (Some(before.as_str()), Some("approved")));
}

#[tokio::test]
async fn wait_answers_when_the_request_closes_or_times_out() {
    let (app, clock) = app().await;
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let waiting = {
        let (http, url, id) = (app.http.clone(), app.url.clone(), id.clone());
        tokio::spawn(async move {
            http.get(format!("{url}/v1/requests/{id}/wait?timeout=5m")).bearer_auth("alice-token").send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    sleepers(&clock, 1).await;
    app.approve("fiona", &id, "finance").await;
    assert_eq!(waiting.await.unwrap()["status"], "approved");
    let (_, closed) = app.get("alice", &format!("/v1/requests/{id}/wait")).await;
    assert_eq!(closed["status"], "approved", "a closed request answers at once");

    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let waiting = {
        let (http, url, id) = (app.http.clone(), app.url.clone(), id.clone());
        tokio::spawn(async move {
            http.get(format!("{url}/v1/requests/{id}/wait?timeout=30s")).bearer_auth("alice-token").send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    sleepers(&clock, 1).await;
    clock.advance(SignedDuration::from_secs(30));
    assert_eq!(waiting.await.unwrap()["status"], "pending", "the timeout answers with the request as it is");
    for bad in ["timeout=soon", "timeout=0s", "colour=1"] {
        let (status, body) = app.get("alice", &format!("/v1/requests/{id}/wait?{bad}")).await;
        assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("bad_parameter")), "{bad}");
    }
    let (status, _) = app.get("bob", &format!("/v1/requests/{id}/wait")).await;
    assert_eq!(status, 404);
}
