//! A notification channel is one implementation of `Channel`: what it sends for a commit's
//! events, and how it delivers one message. `Channels` is the registry the service plans with
//! and the dispatcher delivers through; a new channel is one file and one line in `configured`.

use async_trait::async_trait;
use jiff::Timestamp;
use signoff_engine::{Directory, Event, Policy, RequestState};
use signoff_store::{Notification, Outgoing, Store};

use super::NotifyConfig;
use super::dispatch::Delivery;

/// What a delivery may use besides its channel's settings.
pub struct Outbound<'a> {
    /// The HTTP client every delivery shares (its connection pool).
    pub http: &'a reqwest::Client,
    /// The store, for messages that follow up earlier ones (Slack updates and threads).
    pub store: &'a dyn Store,
}

#[async_trait]
pub trait Channel: Send + Sync {
    /// The channel's name, as outbox rows record it (`webhook`, `slack`, `email`).
    fn name(&self) -> &'static str;

    /// Whether it is configured to send anything.
    fn is_active(&self) -> bool;

    /// The outbox rows a commit's `events` call for. Pure: they are written in the same
    /// transaction as the events.
    fn plan(&self, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing>;

    /// One attempt to deliver `n` at `now`.
    async fn deliver(&self, out: &Outbound<'_>, n: &Notification, now: Timestamp) -> Delivery;
}

/// Every channel, configured or not: a row of a channel since unconfigured fails for good.
pub struct Channels(Vec<Box<dyn Channel>>);

impl Channels {
    /// The channels `config` sets up, in the order their messages are planned.
    pub fn configured(config: &NotifyConfig) -> Channels {
        Channels(vec![
            Box::new(super::slack::Slack(config.slack.clone())),
            Box::new(super::email::Email(config.email.clone())),
            Box::new(super::webhook::Webhooks(config.webhooks.clone())),
        ])
    }

    /// Whether any channel is configured at all.
    pub fn is_active(&self) -> bool {
        self.0.iter().any(|c| c.is_active())
    }

    /// The notifications a commit's `events` call for, on every channel.
    pub fn plan(&self, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing> {
        self.0.iter().filter(|c| c.is_active()).flat_map(|c| c.plan(policy, dir, events, state)).collect()
    }

    pub fn get(&self, name: &str) -> Option<&dyn Channel> {
        self.0.iter().find(|c| c.name() == name).map(|c| &**c)
    }
}

impl Default for Channels {
    fn default() -> Self {
        Channels::configured(&NotifyConfig::default())
    }
}
