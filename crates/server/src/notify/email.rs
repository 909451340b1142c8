//! Email over SMTP: a message per task with approve and reject links. Links are signed (HMAC),
//! expire, and work once; following one only shows a confirmation page, and only the page's
//! POST acts, so mail scanners that prefetch links cannot approve anything.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use signoff_engine::{Directory, Event, EventKind, Policy, RequestState};
use signoff_store::Outgoing;

use super::channel::{Delivery, summary};

/// `[notify.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:port` (plain, for a local relay), `smtp://host?tls=required` (STARTTLS) or
    /// `smtps://user:password@host` (implicit TLS).
    pub smtp_url: String,
    /// The sender, e.g. `signoff <signoff@example.com>`.
    pub from: String,
    /// Where people reach this server, for the links.
    pub public_url: String,
    /// Key that signs the links (keep it secret; changing it voids links already sent).
    pub link_secret: String,
    /// How long a link works; 72h by default.
    #[serde(default)]
    pub link_ttl: Option<String>,
}

impl EmailConfig {
    pub fn check(&self) -> Result<(), String> {
        self.from.parse::<Mailbox>().map_err(|e| format!("notify.email.from: {e}"))?;
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.smtp_url).map_err(|e| format!("notify.email.smtp_url: {e}"))?;
        if self.link_secret.len() < 16 {
            return Err("notify.email.link_secret: use at least 16 characters".into());
        }
        self.ttl()?;
        Ok(())
    }

    fn ttl(&self) -> Result<SignedDuration, String> {
        match &self.link_ttl {
            None => Ok(SignedDuration::from_hours(72)),
            Some(t) => signoff_engine::duration::parse(t).map_err(|e| format!("notify.email.link_ttl: {e}")),
        }
    }
}

/// What a link lets its holder do, once, until `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaim {
    /// Request, step, user, action.
    pub r: String,
    pub s: String,
    pub u: String,
    pub a: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Makes each link single-use on its own.
    pub n: String,
}

fn mac(secret: &str, data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn seal(secret: &str, claim: &LinkClaim) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claim).unwrap_or_default());
    let sig = URL_SAFE_NO_PAD.encode(mac(secret, body.as_bytes()));
    format!("{body}.{sig}")
}

/// Why a link does not work.
#[derive(Debug, PartialEq, Eq)]
pub enum BadLink {
    Forged,
    Expired,
}

/// Checks a link's signature and expiry (not whether it was used: that is the store's).
pub fn open(secret: &str, token: &str, now: Timestamp) -> Result<LinkClaim, BadLink> {
    let (body, sig) = token.split_once('.').ok_or(BadLink::Forged)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| BadLink::Forged)?;
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| BadLink::Forged)?;
    m.update(body.as_bytes());
    m.verify_slice(&sig).map_err(|_| BadLink::Forged)?;
    let claim: LinkClaim = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).map_err(|_| BadLink::Forged)?).map_err(|_| BadLink::Forged)?;
    if now.as_second() >= claim.exp {
        return Err(BadLink::Expired);
    }
    Ok(claim)
}

/// Task emails with signed approve and reject links.
pub struct Email(pub Option<EmailConfig>);

#[async_trait::async_trait]
impl super::channel::Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn is_active(&self) -> bool {
        self.0.is_some()
    }

    fn plan(&self, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
        plan(policy, dir, events, state)
    }

    async fn deliver(&self, _out: &super::channel::Outbound<'_>, n: &signoff_store::Notification, now: Timestamp) -> Delivery {
        match &self.0 {
            Some(config) => send(config, n, now).await,
            None => Delivery::Failed { status: None, error: "email is not configured any more".into(), retry_after: None, permanent: true },
        }
    }
}

/// The task emails a commit's events call for.
pub fn plan(policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for e in events {
        let step = e.step.as_deref().unwrap_or_default();
        let people: Vec<String> = match &e.kind {
            EventKind::StepActivated { approvers, .. } => approvers.clone(),
            EventKind::Escalated { added, .. } => added.clone(),
            EventKind::Delegated { to, .. } => vec![to.clone()],
            _ => continue,
        };
        let allowed = policy.step(step).map(|s| s.notify.or(&policy.notify).allows("email")).unwrap_or(false);
        if !allowed {
            continue;
        }
        let s = state.step(step);
        for user in people {
            let Some(address) = dir.user(&user).and_then(|u| u.email.clone()) else { continue };
            out.push(Outgoing {
                id: format!("eml_{}", uuid::Uuid::now_v7().simple()),
                request_id: state.id.to_string(),
                channel: "email".into(),
                destination: address,
                kind: "task".into(),
                payload: json!({
                    "request": summary(state), "user": user,
                    "step": { "id": step, "reason": s.and_then(|s| s.reason.clone()), "due_at": s.and_then(|s| s.due_at) },
                }),
                coalesce_key: None,
                trace: None,
                created_at: e.at,
            });
        }
    }
    out
}

fn link(config: &EmailConfig, payload: &Value, action: &str, now: Timestamp) -> String {
    let exp = now + config.ttl().unwrap_or(SignedDuration::from_hours(72));
    let claim = LinkClaim {
        r: payload["request"]["id"].as_str().unwrap_or_default().into(),
        s: payload["step"]["id"].as_str().unwrap_or_default().into(),
        u: payload["user"].as_str().unwrap_or_default().into(),
        a: action.into(),
        exp: exp.as_second(),
        n: uuid::Uuid::now_v7().simple().to_string(),
    };
    format!("{}/email/act?token={}", config.public_url.trim_end_matches('/'), seal(&config.link_secret, &claim))
}

/// Sends one task email.
pub async fn send(config: &EmailConfig, n: &signoff_store::Notification, now: Timestamp) -> Delivery {
    let p = &n.outgoing.payload;
    let r = &p["request"];
    let title = r["title"].as_str().or(r["subject"].as_str()).or(r["id"].as_str()).unwrap_or("a request");
    let reason = p["step"]["reason"].as_str().unwrap_or("");
    let text = format!(
        "{requester} asks for your approval: {title}\n{reason}\n\nApprove:\n{approve}\n\nReject:\n{reject}\n\nEach link works once, until {until}, and asks you to confirm.\nRequest {id}, step {step}.\n",
        requester = r["requester"].as_str().unwrap_or(""),
        approve = link(config, p, "approve", now),
        reject = link(config, p, "reject", now),
        until = now + config.ttl().unwrap_or(SignedDuration::from_hours(72)),
        id = r["id"].as_str().unwrap_or(""),
        step = p["step"]["id"].as_str().unwrap_or(""),
    );
    let to: Mailbox = match n.outgoing.destination.parse() {
        Ok(m) => m,
        Err(e) => return Delivery::Failed { status: None, error: format!("bad address: {e}"), retry_after: None, permanent: true },
    };
    let from: Mailbox = match config.from.parse() {
        Ok(m) => m,
        Err(e) => return Delivery::Failed { status: None, error: format!("bad sender: {e}"), retry_after: None, permanent: true },
    };
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(format!("Approval needed: {title}"))
        .message_id(Some(format!("<{}@signoff>", n.outgoing.id)))
        .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).header(ContentTransferEncoding::Base64).body(text));
    let message = match message {
        Ok(m) => m,
        Err(e) => return Delivery::Failed { status: None, error: format!("cannot build the message: {e}"), retry_after: None, permanent: true },
    };
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url) {
        Ok(t) => t.timeout(Some(super::channel::TIMEOUT)).build(),
        Err(e) => return Delivery::Failed { status: None, error: format!("smtp_url: {e}"), retry_after: None, permanent: true },
    };
    match transport.send(message).await {
        Ok(resp) => Delivery::Delivered { status: Some(u16::from(resp.code())), result: None },
        Err(e) => {
            let status = e.status().map(u16::from);
            // 5xx answers are permanent in SMTP.
            let permanent = e.is_permanent();
            Delivery::Failed { status, error: format!("smtp: {e}"), retry_after: None, permanent }
        }
    }
}
