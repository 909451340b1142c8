//! What signoff tells its operators in numbers: the Prometheus recorder (installed once, at
//! start, with every family described), what each durable commit counts and logs, and the
//! state gauges, which are read from the store at every scrape so that they are right after a
//! restart and the same on every instance sharing a database. `docs/metrics.md` lists them all.

use std::fmt::Write as _;
use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use signoff_engine::{Event, EventKind, RequestState, RequestStatus};
use signoff_store::Gauges;

/// Counters: per instance (a cluster's dashboards `sum` them).
pub const APPROVAL_REQUESTS: &str = "signoff_approval_requests_total";
pub const APPROVALS: &str = "signoff_approvals_total";
pub const DENIES: &str = "signoff_denies_total";
pub const EXPIRED: &str = "signoff_expired_total";
pub const CANCELLED: &str = "signoff_cancelled_total";
pub const ESCALATIONS: &str = "signoff_escalations_total";
pub const PARAM_OVERRIDES: &str = "signoff_param_overrides_total";
pub const OVERRIDE_REJECTIONS: &str = "signoff_override_rejections_total";
pub const PERSONA_ACKS: &str = "signoff_persona_ack_total";
pub const ACTIONS: &str = "signoff_actions_total";
pub const COMMIT_CONFLICTS: &str = "signoff_commit_conflicts_total";
pub const REFUSALS_UNRECORDED: &str = "signoff_refusals_unrecorded_total";
pub const NOTIFICATION_ATTEMPTS: &str = "signoff_notification_attempts_total";
pub const NOTIFICATION_FAILURES: &str = "signoff_notification_failures_total";
pub const HTTP_REQUESTS: &str = "signoff_http_requests_total";
pub const CONNECTIONS_REFUSED: &str = "signoff_connections_refused_total";
pub const RATE_LIMITED: &str = "signoff_rate_limited_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "signoff_tls_handshake_failures_total";
/// Histograms.
pub const DECISION_LATENCY: &str = "signoff_decision_latency_seconds";
pub const TIMER_LAG: &str = "signoff_timer_lag_seconds";
pub const HTTP_DURATION: &str = "signoff_http_request_duration_seconds";
pub const COMMIT_GROUP: &str = "signoff_commit_group_size";
pub const COMMIT_SECONDS: &str = "signoff_commit_seconds";
/// Gauges this process keeps.
pub const SSE_STREAMS: &str = "signoff_sse_streams";
pub const LONG_POLLS: &str = "signoff_long_polls";
/// Gauges read from the store (a cluster's dashboards take `max`, not `sum`).
pub const PENDING: &str = "signoff_pending_requests";
pub const OLDEST_OPEN: &str = "signoff_oldest_open_request_age_seconds";
pub const MEAN_OPEN: &str = "signoff_open_request_age_seconds_mean";
pub const PENDING_ACKS: &str = "signoff_pending_acks";
pub const OVERDUE_STEPS: &str = "signoff_overdue_steps";
pub const OUTBOX_BACKLOG: &str = "signoff_outbox_backlog";
pub const OUTBOX_OLDEST: &str = "signoff_outbox_oldest_undelivered_age_seconds";

/// Decision times run from seconds (auto-approval) to days.
const DECISION_BUCKETS: &[f64] = &[1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4.0 * 3600.0, 8.0 * 3600.0, 86_400.0, 3.0 * 86_400.0, 7.0 * 86_400.0];
/// Timer lag, HTTP calls and commits: from a millisecond to a minute.
const FAST_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process's recorder: installed by the first call (at start), the same handle after.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DECISION_LATENCY.into()), DECISION_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMMIT_GROUP.into()), GROUP_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), FAST_BUCKETS))
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // `SIGNOFF_METRICS=off` leaves the recorder out (the metric calls do nothing, the scrape
        // says only the store's gauges): for measuring what metrics cost (`signoff-bench telemetry`).
        // Another recorder may already be installed (several servers in one test process).
        if std::env::var("SIGNOFF_METRICS").as_deref() != Ok("off") {
            let _ = metrics::set_global_recorder(recorder);
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(APPROVAL_REQUESTS, "Requests submitted, by policy.");
    describe_counter!(APPROVALS, "Requests that ended approved (auto-approved included), by policy.");
    describe_counter!(DENIES, "Requests that ended rejected, by policy.");
    describe_counter!(EXPIRED, "Requests that ended expired (a step's time-out or the request's expiry), by policy.");
    describe_counter!(CANCELLED, "Requests cancelled by their requester or an admin, by policy.");
    describe_counter!(ESCALATIONS, "Escalation levels fired, by policy.");
    describe_counter!(PARAM_OVERRIDES, "Approvals with edits, by policy and outcome (applied, rejected).");
    describe_counter!(OVERRIDE_REJECTIONS, "Refused edits, by policy and reason (key_not_allowed, schema_invalid, diff_too_large).");
    describe_counter!(PERSONA_ACKS, "Checklist items acknowledged, by policy.");
    describe_counter!(ACTIONS, "Actions answered, by action and HTTP status.");
    describe_counter!(COMMIT_CONFLICTS, "Commits that lost a race to another writer of the same request and were decided again.");
    describe_counter!(REFUSALS_UNRECORDED, "Refusals answered but not recorded: the actor had used up the refusals a history records.");
    describe_counter!(NOTIFICATION_ATTEMPTS, "Delivery attempts, by channel.");
    describe_counter!(NOTIFICATION_FAILURES, "Delivery attempts that failed, by channel.");
    describe_counter!(HTTP_REQUESTS, "HTTP calls answered, by method, route and status.");
    describe_counter!(CONNECTIONS_REFUSED, "Connections refused because the server was at its connection limit.");
    describe_counter!(TLS_HANDSHAKE_FAILURES, "TLS handshakes that failed or timed out (a client without a valid certificate, when one is required, among them).");
    describe_counter!(RATE_LIMITED, "Calls refused 429 by a rate limit, by class (submissions, actions, reads, failed_auth) and by whom the limit counts (caller, address).");
    describe_histogram!(DECISION_LATENCY, Unit::Seconds, "Time from submission to a terminal status, by policy and outcome.");
    describe_histogram!(TIMER_LAG, Unit::Seconds, "Time from a timer's due time to its firing, by kind (escalation, reminder, timeout, expiry).");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to answer an HTTP call, by method and route.");
    describe_histogram!(COMMIT_GROUP, "Writes committed in one database transaction (group commit).");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Time to commit one database transaction, its fsync included.");
    describe_gauge!(SSE_STREAMS, "Server-sent event streams open on this instance.");
    describe_gauge!(LONG_POLLS, "Long polls waiting on this instance.");
}

/// Starts every counter a dashboard or an alert reads at zero, for every loaded policy and
/// configured channel, so that a family exists before its first event (and `rate` sees its
/// first increase). Cheap and idempotent; the scrape calls it.
pub fn known(policies: &[String], channels: &[String]) {
    for policy in policies {
        for family in [APPROVAL_REQUESTS, APPROVALS, DENIES, EXPIRED, CANCELLED, ESCALATIONS, PERSONA_ACKS] {
            metrics::counter!(family, "policy" => policy.clone()).increment(0);
        }
    }
    for channel in channels {
        metrics::counter!(NOTIFICATION_ATTEMPTS, "channel" => channel.clone()).increment(0);
        metrics::counter!(NOTIFICATION_FAILURES, "channel" => channel.clone()).increment(0);
    }
    for family in [COMMIT_CONFLICTS, REFUSALS_UNRECORDED, CONNECTIONS_REFUSED, TLS_HANDSHAKE_FAILURES] {
        metrics::counter!(family).increment(0);
    }
    for family in [SSE_STREAMS, LONG_POLLS] {
        metrics::gauge!(family).increment(0.0);
    }
    for (class, by) in [("submissions", "caller"), ("submissions", "address"), ("actions", "caller"), ("actions", "address"), ("reads", "caller"), ("reads", "address"), ("failed_auth", "address")] {
        metrics::counter!(RATE_LIMITED, "class" => class, "by" => by).increment(0);
    }
}

/// What one durable commit counts, tallied from its events before the commit and recorded
/// once the commit is durable (a lost race records nothing).
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    policy: String,
    request: String,
    version: u64,
    actor: String,
    events: Vec<&'static str>,
    submitted: bool,
    /// The terminal status reached, and the time from submission to it.
    decided: Option<(RequestStatus, f64)>,
    escalations: u64,
    acks: u64,
    overrides_applied: u64,
    overrides_refused: Vec<&'static str>,
    /// (timer kind, seconds late).
    timers: Vec<(&'static str, f64)>,
    refusals: Vec<(String, String)>,
}

impl Tally {
    pub fn of(events: &[Event], state: &RequestState) -> Tally {
        let mut t = Tally {
            policy: state.policy.id.clone(),
            request: state.id.to_string(),
            version: state.version,
            actor: events.first().map(|e| e.actor.clone()).unwrap_or_default(),
            ..Tally::default()
        };
        let late = |at: jiff::Timestamp, due: jiff::Timestamp| at.duration_since(due).as_secs_f64().max(0.0);
        for e in events {
            t.events.push(e.kind.type_name());
            // A request ends with `completed`, or with `expired` or `cancelled` alone.
            let ends = matches!(e.kind, EventKind::Completed { .. } | EventKind::Expired { .. } | EventKind::Cancelled { .. });
            if ends && state.status.is_terminal() {
                t.decided = Some((state.status, e.at.duration_since(state.created_at).as_secs_f64().max(0.0)));
            }
            match &e.kind {
                EventKind::Submitted { .. } => t.submitted = true,
                EventKind::Escalated { due, .. } => {
                    t.escalations += 1;
                    t.timers.push(("escalation", late(e.at, *due)));
                }
                EventKind::Reminded { due, .. } => t.timers.push(("reminder", late(e.at, *due))),
                EventKind::StepTimedOut { due, .. } => t.timers.push(("timeout", late(e.at, *due))),
                EventKind::Expired { .. } => {
                    if let Some(due) = state.expires_at.filter(|d| *d <= e.at) {
                        t.timers.push(("expiry", late(e.at, due)));
                    }
                }
                EventKind::Acknowledged { .. } => t.acks += 1,
                EventKind::Approved { edits: Some(edits), .. } if edits.as_object().is_some_and(|m| !m.is_empty()) => t.overrides_applied += 1,
                EventKind::EditsRefused { code, detail, .. } => {
                    t.overrides_refused.push(override_reason(code));
                    t.refusals.push((code.clone(), detail.clone()));
                }
                EventKind::Refused { code, detail, .. } => t.refusals.push((code.clone(), detail.clone())),
                _ => {}
            }
        }
        t
    }

    /// Counts and logs what was committed: one line per state change at info, one per refusal
    /// at warn.
    pub fn record(self) {
        let policy = self.policy;
        if self.submitted {
            metrics::counter!(APPROVAL_REQUESTS, "policy" => policy.clone()).increment(1);
        }
        if let Some((status, seconds)) = self.decided {
            let family = match status {
                RequestStatus::Approved => APPROVALS,
                RequestStatus::Rejected => DENIES,
                RequestStatus::Expired => EXPIRED,
                RequestStatus::Cancelled | RequestStatus::Pending => CANCELLED,
            };
            metrics::counter!(family, "policy" => policy.clone()).increment(1);
            metrics::histogram!(DECISION_LATENCY, "policy" => policy.clone(), "outcome" => status.as_str()).record(seconds);
        }
        if self.escalations > 0 {
            metrics::counter!(ESCALATIONS, "policy" => policy.clone()).increment(self.escalations);
        }
        if self.acks > 0 {
            metrics::counter!(PERSONA_ACKS, "policy" => policy.clone()).increment(self.acks);
        }
        if self.overrides_applied > 0 {
            metrics::counter!(PARAM_OVERRIDES, "policy" => policy.clone(), "outcome" => "applied").increment(self.overrides_applied);
        }
        for reason in &self.overrides_refused {
            metrics::counter!(PARAM_OVERRIDES, "policy" => policy.clone(), "outcome" => "rejected").increment(1);
            metrics::counter!(OVERRIDE_REJECTIONS, "policy" => policy.clone(), "reason" => *reason).increment(1);
        }
        for (kind, seconds) in &self.timers {
            metrics::histogram!(TIMER_LAG, "kind" => *kind).record(*seconds);
        }
        // A timer's span is named for what fired, now that it is known (the span has started by
        // now, so its OpenTelemetry side is renamed directly; without tracing this does nothing).
        if let Some((kind, _)) = self.timers.first() {
            let what = match *kind {
                "escalation" => "timer escalate",
                "reminder" => "timer remind",
                "timeout" => "timer time_out",
                _ => "timer expire",
            };
            use opentelemetry::trace::TraceContextExt as _;
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            tracing::Span::current().context().span().update_name(what);
        }
        let events = self.events.join(",");
        let status = self.decided.map(|(s, _)| s.as_str()).unwrap_or("pending");
        let trace_id = crate::traces::current_trace_id();
        tracing::info!(request = %self.request, version = self.version, actor = %self.actor, %policy, %events, status, %trace_id, "committed");
        for (code, detail) in self.refusals {
            tracing::warn!(request = %self.request, actor = %self.actor, %policy, %code, %detail, %trace_id, "refused");
        }
    }
}

/// A refused edit's reason label, from its code.
fn override_reason(code: &str) -> &'static str {
    match code {
        "edit_key_not_allowed" => "key_not_allowed",
        "edit_schema_invalid" => "schema_invalid",
        "edit_diff_too_large" => "diff_too_large",
        _ => "other",
    }
}

/// The store's gauges in the Prometheus text format, each family with its HELP and TYPE; every
/// loaded policy and configured channel appears, at zero when nothing is open.
pub fn render_gauges(g: &Gauges, policies: &[String], channels: &[String]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, label: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (value_of, v) in rows {
            let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(&value_of));
        }
    };
    let per_policy = |f: fn(&signoff_store::PolicyGauges) -> f64| labelled(policies, &g.policies, |p| &p.policy, f);
    family(PENDING, "Requests pending now, by policy (from the store).", "policy", per_policy(|p| p.pending as f64));
    family(OLDEST_OPEN, "Age of the oldest pending request, by policy (from the store).", "policy", per_policy(|p| p.oldest_age_seconds));
    family(MEAN_OPEN, "Mean age of the pending requests, by policy (from the store).", "policy", per_policy(|p| p.mean_age_seconds));
    family(PENDING_ACKS, "Checklist items not yet acknowledged on active steps, by policy (from the store).", "policy", per_policy(|p| p.pending_acks as f64));
    family(OVERDUE_STEPS, "Active steps past their due time (their SLA), by policy (from the store).", "policy", per_policy(|p| p.overdue_steps as f64));
    let per_channel = |f: fn(&signoff_store::ChannelGauges) -> f64| labelled(channels, &g.channels, |c| &c.channel, f);
    family(OUTBOX_BACKLOG, "Notifications not yet delivered, by channel (from the store).", "channel", per_channel(|c| c.backlog as f64));
    family(OUTBOX_OLDEST, "Age of the oldest undelivered notification, by channel (from the store).", "channel", per_channel(|c| c.oldest_age_seconds));
    out
}

/// One sample per label value, sorted: every `known` one (at zero where `rows` has none) and
/// every one `rows` has, each `value` of its row.
fn labelled<T>(known: &[String], rows: &[T], label: impl Fn(&T) -> &String, value: fn(&T) -> f64) -> Vec<(String, f64)> {
    let mut names: Vec<&String> = known.iter().chain(rows.iter().map(&label)).collect();
    names.sort();
    names.dedup();
    names.into_iter().map(|n| (n.clone(), rows.iter().find(|r| label(r) == n).map_or(0.0, value))).collect()
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_engine::machine::{self, Action, Command, Submission};
    use signoff_engine::{Directory, Policy};

    const POLICY: &str = "id: p\nsteps:\n  - id: review\n    approvers: {users: [mark]}\n    require_acks: [security]\n    edits: {allowed_keys: [amount], schema: {type: object, properties: {amount: {type: number, maximum: 100}}}}\n";
    const DIRECTORY: &str = "users:\n  - {id: alice}\n  - {id: mark}\n";

    fn at(minutes: i64) -> jiff::Timestamp {
        "2026-12-01T09:00:00Z".parse::<jiff::Timestamp>().unwrap() + jiff::SignedDuration::from_mins(minutes)
    }

    #[test]
    fn a_commit_counts_what_its_events_say() {
        let (policy, dir) = (Policy::from_yaml(POLICY).unwrap(), Directory::from_yaml(DIRECTORY).unwrap());
        let sub = Submission { id: "req_t".into(), requester: "alice".into(), title: None, subject: None, context: serde_json::json!({"amount": 10}), evidence: vec![], lineage: None, resubmits: None };
        let (events, state) = machine::submit(&policy, &dir, sub, at(0)).unwrap();
        let t = Tally::of(&events, &state);
        assert!(t.submitted && t.decided.is_none());
        assert_eq!((t.policy.as_str(), t.actor.as_str()), ("p", "alice"));

        let run = |state: &RequestState, action: Action, minutes: i64| machine::decide(&policy, &dir, state, &Command { actor: "mark".into(), action }, at(minutes));
        let acked = run(&state, Action::Acknowledge { step: "review".into(), item: "security".into() }, 1);
        assert_eq!(Tally::of(&acked.events, &acked.state).acks, 1);
        let refused = run(&acked.state, Action::Approve { step: "review".into(), comment: None, edits: Some(serde_json::json!({"amount": 500})) }, 2);
        let t = Tally::of(&refused.events, &refused.state);
        assert_eq!((t.overrides_refused.as_slice(), t.overrides_applied, t.refusals.len()), (&["schema_invalid"][..], 0, 1));
        let approved = run(&refused.state, Action::Approve { step: "review".into(), comment: None, edits: Some(serde_json::json!({"amount": 50})) }, 90);
        let t = Tally::of(&approved.events, &approved.state);
        assert_eq!(t.overrides_applied, 1);
        assert_eq!(t.decided, Some((RequestStatus::Approved, 90.0 * 60.0)), "decided 90 minutes after submission");
    }

    #[test]
    fn the_store_gauges_render_every_policy_and_channel_at_zero_or_more() {
        let g = Gauges {
            policies: vec![signoff_store::PolicyGauges { policy: "a".into(), pending: 2, oldest_age_seconds: 60.0, mean_age_seconds: 30.0, pending_acks: 1, overdue_steps: 0 }],
            channels: vec![],
        };
        let text = render_gauges(&g, &["a".into(), "b".into()], &["slack".into()]);
        for line in ["signoff_pending_requests{policy=\"a\"} 2", "signoff_pending_requests{policy=\"b\"} 0", "signoff_outbox_backlog{channel=\"slack\"} 0", "# TYPE signoff_overdue_steps gauge"] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }
}
