//! Notifications: who is told of what (each `channel::Channel`'s `plan`, pure: events in, outbox
//! rows out, written in the same transaction as the events), and how they get there
//! (`dispatch`, with retries). Deployment settings say where messages can go; a policy or step
//! can narrow that.

pub mod channel;
pub mod dispatch;
pub mod email;
pub mod slack;
pub mod webhook;

pub use webhook::WebhookEndpoint;

use serde::Deserialize;
use signoff_engine::{Directory, Event, Policy, RequestState};
use signoff_store::Outgoing;

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

/// Every channel, configured or not: a row of a channel since unconfigured fails for good.
pub struct Channels(Vec<Box<dyn channel::Channel>>);

impl Channels {
    /// The channels `config` sets up, in the order their messages are planned.
    pub fn configured(config: &NotifyConfig) -> Channels {
        Channels(vec![
            Box::new(slack::Slack(config.slack.clone())),
            Box::new(email::Email(config.email.clone())),
            Box::new(webhook::Webhooks(config.webhooks.clone())),
        ])
    }

    /// The names of the configured channels.
    pub fn active(&self) -> Vec<String> {
        self.0.iter().filter(|c| c.is_active()).map(|c| c.name().to_string()).collect()
    }

    /// Whether any channel is configured at all.
    pub fn is_active(&self) -> bool {
        self.0.iter().any(|c| c.is_active())
    }

    /// The notifications a commit's `events` call for, on every channel.
    /// The notifications `events` call for, each carrying the current trace (the submit,
    /// action or timer that queued it), so that its delivery is part of that trace.
    pub fn plan(&self, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
        let mut planned: Vec<Outgoing> = self.0.iter().filter(|c| c.is_active()).flat_map(|c| c.plan(policy, dir, events, state)).collect();
        if let Some(trace) = planned.first().and(crate::traces::current_traceparent()) {
            planned.iter_mut().for_each(|o| o.trace = Some(trace.clone()));
        }
        planned
    }

    pub fn get(&self, name: &str) -> Option<&dyn channel::Channel> {
        self.0.iter().find(|c| c.name() == name).map(|c| &**c)
    }
}

impl Default for Channels {
    fn default() -> Self {
        Channels::configured(&NotifyConfig::default())
    }
}
