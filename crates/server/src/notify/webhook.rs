//! Webhooks signed the Standard Webhooks way: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::WebhookEndpoint;
use super::dispatch::Delivery;

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
    let sent = http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(&secret, id, timestamp, body))
        .body(body.to_string())
        .send()
        .await;
    Delivery::from_http(sent, now).await
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
