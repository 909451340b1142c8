//! Webhooks signed the Standard Webhooks way: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::json;
use signoff_engine::{Directory, Event, Policy, RequestState};
use signoff_store::{Notification, Outgoing};

use serde::Deserialize;

use super::channel::{Channel, Delivery, Outbound, summary};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// A short name, shown in delivery reports.
    pub name: String,
    pub url: String,
    /// `whsec_` followed by base64 (as Standard Webhooks and svix issue them).
    pub secret: String,
    /// Event types to send (`completed`, `step_activated`, …); all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Policies whose requests are sent; all when absent.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").ok_or("must start with whsec_")?;
    let bytes = STANDARD.decode(b64).map_err(|_| "the part after whsec_ must be base64".to_string())?;
    if bytes.len() < 16 {
        return Err("must hold at least 16 bytes of key".into());
    }
    Ok(bytes)
}

/// The `webhook-signature` header value.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Sends one message to `endpoint`.
pub async fn send(http: &reqwest::Client, endpoint: &WebhookEndpoint, id: &str, body: &str, now: jiff::Timestamp) -> Delivery {
    let secret = match secret_bytes(&endpoint.secret) {
        Ok(s) => s,
        Err(e) => return Delivery::fail(None, format!("bad secret: {e}")),
    };
    let timestamp = now.as_second();
    let mut request = http.post(&endpoint.url);
    // The delivery's trace goes on with the receiver.
    for (name, value) in crate::traces::outgoing_headers() {
        request = request.header(name, value);
    }
    let sent = request
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(&secret, id, timestamp, body))
        .body(body.to_string())
        .send()
        .await;
    Delivery::from_http(sent, now).await
}

/// Signed webhooks to every configured endpoint (that takes the event and the policy).
pub struct Webhooks(pub Vec<WebhookEndpoint>);

#[async_trait]
impl Channel for Webhooks {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn is_active(&self) -> bool {
        !self.0.is_empty()
    }

    fn plan(&self, _policy: &Policy, _dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for endpoint in &self.0 {
            if endpoint.policies.as_ref().is_some_and(|p| !p.contains(&state.policy.id)) {
                continue;
            }
            for event in events {
                let kind = event.kind.type_name();
                if endpoint.events.as_ref().is_some_and(|e| !e.iter().any(|k| k == kind)) {
                    continue;
                }
                out.push(Outgoing {
                    id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                    request_id: state.id.to_string(),
                    channel: "webhook".into(),
                    destination: endpoint.name.clone(),
                    kind: "event".into(),
                    payload: json!({
                        "type": format!("request.{kind}"),
                        "timestamp": event.at,
                        "data": { "event": event, "request": summary(state) },
                    }),
                    coalesce_key: None,
                    trace: None,
                    created_at: event.at,
                });
            }
        }
        out
    }

    async fn deliver(&self, out: &Outbound<'_>, n: &Notification, now: Timestamp) -> Delivery {
        match self.0.iter().find(|w| w.name == n.outgoing.destination) {
            Some(endpoint) => send(out.http, endpoint, &n.outgoing.id, &n.outgoing.payload.to_string(), now).await,
            None => Delivery::Failed {
                status: None,
                error: format!("no webhook endpoint `{}` is configured any more", n.outgoing.destination),
                retry_after: None,
                permanent: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks specification.
        let secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_malformed_secrets() {
        assert!(secret_bytes("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_bytes("whsec_***").is_err());
        assert!(secret_bytes("whsec_c2hvcnQ=").is_err());
    }
}
