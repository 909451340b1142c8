//! Slack: a Block Kit message per task (to the approver, or to a channel) with a reason box and
//! Approve / Reject buttons, kept up to date with `chat.update` as the request changes (rapid
//! updates coalesce in the outbox), with escalations and reminders posted in its thread.
//! Button clicks come back to `/slack/interactions`, verified with Slack's v0 signature.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use signoff_engine::{Directory, Event, EventKind, Policy, RequestState};
use signoff_store::Outgoing;

use super::channel::{Delivery, summary};

/// `[notify.slack]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The Web API base; tests point it at a stand-in server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Bot token (`xoxb-…`).
    pub token: String,
    /// The app's signing secret, for verifying interactions.
    pub signing_secret: String,
    /// Post every task in this channel instead of messaging approvers directly.
    #[serde(default)]
    pub channel: Option<String>,
}

fn default_api_url() -> String {
    "https://slack.com/api".into()
}

/// The outbox id of the task message for (request, step, destination): deterministic, so
/// updates and thread replies can name it before it is sent.
pub fn post_id(request: &str, step: &str, destination: &str) -> String {
    let digest = Sha256::digest(format!("{request}\n{step}\n{destination}").as_bytes());
    format!("slk_{}", &hex::encode(digest)[..32])
}

fn step_view(state: &RequestState, step: &str) -> Value {
    let Some(s) = state.step(step) else { return json!({ "id": step }) };
    json!({
        "id": s.id, "title": s.title, "status": s.status, "reason": s.reason, "due_at": s.due_at,
        "approvers": s.approvers,
        "approved_by": s.approvals.iter().map(|v| &v.by).collect::<Vec<_>>(),
        "rejected_by": s.rejections.iter().map(|v| &v.by).collect::<Vec<_>>(),
    })
}

/// Where a step's task messages go: one channel, or each approver with a Slack id.
fn destinations(config: &SlackConfig, policy: &Policy, dir: &Directory, state: &RequestState, step: &str, people: &[String]) -> Vec<String> {
    let Some(rules) = policy.step(step).map(|s| s.notify.or(&policy.notify)) else { return Vec::new() };
    if !rules.allows("slack") {
        return Vec::new();
    }
    if let Some(channel) = rules.slack_channel.or_else(|| config.channel.clone()) {
        // Channel mode: one message per step, whoever the approvers are.
        return if state.step(step).is_some() { vec![channel] } else { Vec::new() };
    }
    people.iter().filter_map(|u| dir.user(u).and_then(|u| u.slack.clone())).collect()
}

/// Every task message the request has had so far, as (step, destination).
fn existing_posts(config: &SlackConfig, policy: &Policy, dir: &Directory, state: &RequestState) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in state.steps.iter().filter(|s| s.activated_at.is_some()) {
        let mut people = s.approvers.clone();
        people.extend(s.delegations.iter().map(|d| d.from.clone()));
        for d in destinations(config, policy, dir, state, &s.id, &people) {
            if !out.contains(&(s.id.clone(), d.clone())) {
                out.push((s.id.clone(), d));
            }
        }
    }
    out
}

fn message(id: String, state: &RequestState, destination: &str, kind: &str, payload: Value, coalesce_key: Option<String>, at: jiff::Timestamp) -> Outgoing {
    Outgoing {
        id,
        request_id: state.id.to_string(),
        channel: "slack".into(),
        destination: destination.to_string(),
        kind: kind.into(),
        payload,
        coalesce_key,
        trace: None,
        created_at: at,
    }
}

/// Slack messages for people: a message per task, kept up to date, with threads.
pub struct Slack(pub Option<SlackConfig>);

#[async_trait::async_trait]
impl super::channel::Channel for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn is_active(&self) -> bool {
        self.0.is_some()
    }

    fn plan(&self, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
        self.0.as_ref().map_or_else(Vec::new, |config| plan(config, policy, dir, events, state))
    }

    async fn deliver(&self, out: &super::channel::Outbound<'_>, n: &signoff_store::Notification, now: jiff::Timestamp) -> Delivery {
        match &self.0 {
            Some(config) => send(out.http, config, out.store, n, now).await,
            None => Delivery::Failed { status: None, error: "Slack is not configured any more".into(), retry_after: None, permanent: true },
        }
    }
}

/// The Slack messages a commit's events call for.
pub fn plan(config: &SlackConfig, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
    let Some(last) = events.last() else { return Vec::new() };
    let at = last.at;
    let mut out = Vec::new();
    let mut new_posts = Vec::new();
    let mut post = |out: &mut Vec<Outgoing>, step: &str, people: &[String]| {
        for d in destinations(config, policy, dir, state, step, people) {
            let id = post_id(&state.id, step, &d);
            if new_posts.contains(&id) {
                continue;
            }
            new_posts.push(id.clone());
            let payload = json!({ "request": summary(state), "step": step_view(state, step) });
            out.push(message(id, state, &d, "task", payload, None, at));
        }
    };
    for e in events {
        let step = e.step.as_deref().unwrap_or_default();
        match &e.kind {
            EventKind::StepActivated { approvers, .. } => post(&mut out, step, approvers),
            EventKind::Escalated { added, .. } if !added.is_empty() => post(&mut out, step, added),
            EventKind::Delegated { to, .. } => post(&mut out, step, std::slice::from_ref(to)),
            _ => {}
        }
    }
    for e in events {
        let step = e.step.as_deref().unwrap_or_default();
        let text = match &e.kind {
            EventKind::Escalated { level, added, .. } => format!(
                "Escalated (level {level}): {}",
                if added.is_empty() { "nobody new could be added".to_string() } else { format!("added {}", added.join(", ")) }
            ),
            EventKind::Reminded { to, .. } if !to.is_empty() => format!("Reminder: still waiting for {}", to.join(", ")),
            _ => continue,
        };
        for (s, d) in existing_posts(config, policy, dir, state).into_iter().filter(|(s, _)| s == step) {
            let parent = post_id(&state.id, &s, &d);
            if new_posts.contains(&parent) {
                continue;
            }
            let payload = json!({ "post": parent, "text": text });
            out.push(message(format!("slk_{}", uuid::Uuid::now_v7().simple()), state, &d, "thread", payload, None, at));
        }
    }
    // Every earlier message shows the request as it is now; updates to one message coalesce.
    for (step, d) in existing_posts(config, policy, dir, state) {
        let parent = post_id(&state.id, &step, &d);
        if new_posts.contains(&parent) {
            continue;
        }
        let payload = json!({ "post": parent, "request": summary(state), "step": step_view(state, &step) });
        out.push(message(format!("slk_{}", uuid::Uuid::now_v7().simple()), state, &d, "update", payload, Some(format!("update:{parent}")), at));
    }
    out
}

/// The Block Kit blocks of a task message, from its payload.
pub fn blocks(payload: &Value) -> (String, Value) {
    let r = &payload["request"];
    let s = &payload["step"];
    let title = r["title"].as_str().or(r["subject"].as_str()).or(r["id"].as_str()).unwrap_or("request");
    let reason = s["reason"].as_str().or(s["title"].as_str()).or(s["id"].as_str()).unwrap_or("");
    let open = s["status"] == "active" && r["status"] == "pending";
    let status = if open {
        format!("Waiting for approval{}", s["due_at"].as_str().map(|d| format!(", due {d}")).unwrap_or_default())
    } else {
        let by = |k: &str| s[k].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
        match s["status"].as_str().unwrap_or("") {
            "approved" => format!(":white_check_mark: Approved{}", if by("approved_by").is_empty() { String::new() } else { format!(" by {}", by("approved_by")) }),
            "rejected" => format!(":x: Rejected{}", if by("rejected_by").is_empty() { String::new() } else { format!(" by {}", by("rejected_by")) }),
            other => format!("Step {other}; request {}", r["status"].as_str().unwrap_or("")),
        }
    };
    let text = format!("Approval needed: {title} ({reason})");
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{title}*\n{reason}") } }),
        json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("{} · requested by {} · {}", r["policy"].as_str().unwrap_or(""), r["requester"].as_str().unwrap_or(""), status) }] }),
    ];
    if open {
        let value = format!("{}|{}", r["id"].as_str().unwrap_or(""), s["id"].as_str().unwrap_or(""));
        blocks.push(json!({ "type": "input", "block_id": "reason", "optional": true,
            "label": { "type": "plain_text", "text": "Reason (needed to reject)" },
            "element": { "type": "plain_text_input", "action_id": "reason" } }));
        blocks.push(json!({ "type": "actions", "block_id": "decide", "elements": [
            { "type": "button", "action_id": "approve", "style": "primary", "text": { "type": "plain_text", "text": "Approve" }, "value": value },
            { "type": "button", "action_id": "reject", "style": "danger", "text": { "type": "plain_text", "text": "Reject" }, "value": value },
        ]}));
    }
    (text, Value::Array(blocks))
}

async fn call(http: &reqwest::Client, config: &SlackConfig, method: &str, body: Value, now: jiff::Timestamp) -> Delivery {
    let name = if method == "chat.update" { "slack.update" } else { "slack.post" };
    tracing::Instrument::instrument(call_api(http, config, method, body, now), tracing::info_span!("slack", otel.name = name, slack.method = method)).await
}

async fn call_api(http: &reqwest::Client, config: &SlackConfig, method: &str, body: Value, now: jiff::Timestamp) -> Delivery {
    let sent = http
        .post(format!("{}/{method}", config.api_url.trim_end_matches('/')))
        .bearer_auth(&config.token)
        .json(&body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) if r.status().is_success() => r,
        other => return Delivery::from_http(other, now).await,
    };
    let status = resp.status().as_u16();
    match resp.json::<Value>().await {
        Ok(v) if v["ok"] == true => Delivery::Delivered { status: Some(status), result: Some(json!({ "channel": v["channel"], "ts": v["ts"] })) },
        Ok(v) => Delivery::fail(Some(status), format!("slack: {}", v["error"].as_str().unwrap_or("error"))),
        Err(e) => Delivery::fail(Some(status), format!("slack: unreadable answer: {e}")),
    }
}

/// Delivers one Slack outbox row. Updates and thread replies wait for their message.
pub async fn send(http: &reqwest::Client, config: &SlackConfig, store: &dyn signoff_store::Store, n: &signoff_store::Notification, now: jiff::Timestamp) -> Delivery {
    let o = &n.outgoing;
    if o.kind == "task" {
        let (text, blocks) = blocks(&o.payload);
        return call(http, config, "chat.postMessage", json!({ "channel": o.destination, "text": text, "blocks": blocks }), now).await;
    }
    let parent_id = o.payload["post"].as_str().unwrap_or_default();
    let parent = match store.notification(parent_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Delivery::Failed { status: None, error: format!("no message {parent_id} to follow up"), retry_after: None, permanent: true },
        Err(e) => return Delivery::fail(None, e.to_string()),
    };
    let Some(posted) = parent.result.filter(|_| parent.status == signoff_store::DeliveryStatus::Delivered) else {
        return if parent.status == signoff_store::DeliveryStatus::Failed {
            Delivery::Failed { status: None, error: format!("message {parent_id} was never delivered"), retry_after: None, permanent: true }
        } else {
            Delivery::NotYet { until: now + jiff::SignedDuration::from_secs(2) }
        };
    };
    match o.kind.as_str() {
        "update" => {
            let (text, blocks) = blocks(&o.payload);
            call(http, config, "chat.update", json!({ "channel": posted["channel"], "ts": posted["ts"], "text": text, "blocks": blocks }), now).await
        }
        _ => call(http, config, "chat.postMessage", json!({ "channel": posted["channel"], "thread_ts": posted["ts"], "text": o.payload["text"] }), now).await,
    }
}

/// Why an interaction was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Unverified {
    Missing,
    Stale,
    BadSignature,
}

/// Checks Slack's v0 signature and that the timestamp is within five minutes of `now`.
pub fn verify(signing_secret: &str, timestamp: &str, signature: &str, body: &[u8], now: jiff::Timestamp) -> Result<(), Unverified> {
    let ts: i64 = timestamp.parse().map_err(|_| Unverified::Missing)?;
    // Saturating: an extreme header value is stale, not an overflow.
    if now.as_second().saturating_sub(ts).saturating_abs() > 5 * 60 {
        return Err(Unverified::Stale);
    }
    let hex_sig = signature.strip_prefix("v0=").ok_or(Unverified::BadSignature)?;
    let sig = hex::decode(hex_sig).map_err(|_| Unverified::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).map_err(|_| Unverified::BadSignature)?;
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| Unverified::BadSignature)
}

/// The `v0=` signature of `body` (what Slack sends; used by tests and stand-ins).
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A button click: who, which request and step, approve or reject, and the reason typed.
#[derive(Debug, PartialEq, Eq)]
pub struct Click {
    pub slack_user: String,
    pub request: String,
    pub step: String,
    pub action: String,
    pub reason: Option<String>,
}

/// Reads a `block_actions` payload.
pub fn click(payload: &Value) -> Option<Click> {
    let action = payload["actions"].get(0)?;
    let (request, step) = action["value"].as_str()?.split_once('|')?;
    let reason = payload["state"]["values"]["reason"]["reason"]["value"].as_str().map(str::to_string).filter(|r| !r.trim().is_empty());
    Some(Click {
        slack_user: payload["user"]["id"].as_str()?.to_string(),
        request: request.to_string(),
        step: step.to_string(),
        action: action["action_id"].as_str()?.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_slacks_example_signature() {
        // The example from Slack's "Verifying requests from Slack" guide.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = "1531420618";
        let now = jiff::Timestamp::from_second(1531420618).unwrap();
        assert_eq!(sign(secret, ts, body), "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        assert_eq!(verify(secret, ts, "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", body, now), Ok(()));
        assert_eq!(verify(secret, ts, "v0=00", body, now), Err(Unverified::BadSignature));
        let later = jiff::Timestamp::from_second(1531420618 + 301).unwrap();
        assert_eq!(verify(secret, ts, &sign(secret, ts, body), body, later), Err(Unverified::Stale));
        for extreme in [i64::MIN.to_string(), i64::MAX.to_string()] {
            assert_eq!(verify(secret, &extreme, &sign(secret, &extreme, body), body, now), Err(Unverified::Stale), "{extreme}: no overflow");
        }
    }
}
