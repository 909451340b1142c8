//! Notifications: who is told of what (each `channel::Channel`'s `plan`, pure: events in, outbox
//! rows out, written in the same transaction as the events), and how they get there
//! (`dispatch`, with retries). Deployment settings say where messages can go; a policy or step
//! can narrow that.

pub mod channel;
pub mod dispatch;
pub mod email;
pub mod slack;
pub mod webhook;

use serde::Deserialize;
use serde_json::{Value, json};
use signoff_engine::RequestState;

/// `[notify]` in the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Signed webhooks (Standard Webhooks) for machines.
    #[serde(default)]
    pub webhooks: Vec<WebhookEndpoint>,
    /// Slack messages for people.
    #[serde(default)]
    pub slack: Option<slack::SlackConfig>,
    /// Email for people.
    #[serde(default)]
    pub email: Option<email::EmailConfig>,
}

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

impl NotifyConfig {
    /// Every problem, each naming the setting.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = format!("notify.webhooks[{i}]");
            if !names.insert(&w.name) {
                return Err(format!("{at}.name: `{}` is used twice", w.name));
            }
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!("{at}.url: `{}` must be an http(s) URL", w.url));
            }
            webhook::secret_bytes(&w.secret).map_err(|e| format!("{at}.secret: {e}"))?;
        }
        if let Some(email) = &self.email {
            email.check()?;
        }
        Ok(())
    }

    pub fn endpoint(&self, name: &str) -> Option<&WebhookEndpoint> {
        self.webhooks.iter().find(|w| w.name == name)
    }
}

/// A compact view of the request for messages; receivers fetch the rest from the API.
pub fn summary(state: &RequestState) -> Value {
    json!({
        "id": state.id,
        "status": state.status,
        "policy": state.policy.id,
        "title": state.title,
        "subject": state.subject,
        "requester": state.requester,
        "current_tasks": state.current_tasks,
        "pending_reasons": state.pending_reasons,
        "version": state.version,
    })
}

