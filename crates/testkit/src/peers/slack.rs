//! A stand-in for Slack's Web API (`chat.postMessage`, `chat.update`): checks the bot token,
//! records each call, answers like Slack, and can be told to answer 429 with Retry-After.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// The bot token the stand-in accepts.
pub const TOKEN: &str = "xoxb-test-token";
/// The signing secret the tests configure for interactivity.
pub const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A stand-in for Slack's Web API: records calls, answers like Slack, and can be told to
/// answer 429 with Retry-After first.
#[derive(Default)]
pub struct SlackApi {
    pub calls: Mutex<Vec<(String, Value)>>,
    pub throttle: Mutex<VecDeque<u32>>,
    next_ts: Mutex<u64>,
}

pub async fn start_slack() -> (Arc<SlackApi>, String) {
    let api = Arc::new(SlackApi::default());
    let handler = |method: &'static str, api: Arc<SlackApi>| {
        move |headers: HeaderMap, Json(body): Json<Value>| {
            let api = api.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
                    return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
                }
                if let Some(secs) = api.throttle.lock().unwrap().pop_front() {
                    let mut resp = StatusCode::TOO_MANY_REQUESTS.into_response();
                    resp.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
                    return resp;
                }
                api.calls.lock().unwrap().push((method.to_string(), body.clone()));
                let channel = body["channel"].as_str().unwrap_or_default().replace("U-", "D-");
                let ts = match method {
                    "chat.update" => body["ts"].as_str().unwrap().to_string(),
                    _ => {
                        let mut n = api.next_ts.lock().unwrap();
                        *n += 1;
                        format!("1700000000.{:06}", *n)
                    }
                };
                Json(json!({"ok": true, "channel": channel, "ts": ts})).into_response()
            }
        }
    };
    let app = axum::Router::new()
        .route("/api/chat.postMessage", axum::routing::post(handler("chat.postMessage", api.clone())))
        .route("/api/chat.update", axum::routing::post(handler("chat.update", api.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (api, url)
}
