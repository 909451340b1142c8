//! Rows both SQL stores read back, decoded once. Each store pulls a row's column values out
//! with its own driver; what those values mean (JSON text, timestamps, statuses) is decided
//! here, and a value that means nothing is `Corrupt`: a default would pass a damaged row off
//! as a real one (a notification with an empty payload, created at 1970).

use jiff::Timestamp;

use crate::{DeliveryStatus, Notification, Outgoing, PolicyRecord, Result, StoreError, decode};

/// The outbox columns an `OutboxRow` holds, in its order.
pub const NOTIFICATION_COLUMNS: &str = "id, request_id, channel, destination, kind, payload, coalesce_key, created_at, status, attempts, revision, next_attempt_at, last_error, result, delivered_at, trace";

/// An outbox row's values as stored (the columns of `NOTIFICATION_COLUMNS`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxRow {
    pub id: String,
    pub request_id: String,
    pub channel: String,
    pub destination: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub coalesce_key: Option<String>,
    /// A timestamp as text (RFC 3339).
    pub created_at: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub revision: i64,
    /// Unix milliseconds.
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    /// JSON text.
    pub result: Option<String>,
    /// A timestamp as text (RFC 3339).
    pub delivered_at: Option<String>,
    /// A W3C `traceparent`.
    pub trace: Option<String>,
}

impl OutboxRow {
    /// The notification this row holds. The channel is not checked: the outbox keeps whatever
    /// channel a commit named, and the dispatcher fails a notification for one it does not know.
    pub fn decode(self) -> Result<Notification> {
        let bad = |column: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("outbox row {}: {column}: {e}", self.id));
        let json = |column: &str, text: &str| decode(text).map_err(|e| bad(column, &e));
        let time = |column: &str, text: &str| text.parse::<Timestamp>().map_err(|e| bad(column, &format!("`{text}`: {e}")));
        let count = |column: &str, n: i64| u32::try_from(n).map_err(|e| bad(column, &format!("{n}: {e}")));
        let status = match self.status.as_str() {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            other => return Err(bad("status", &format!("`{other}` is not a delivery status"))),
        };
        let payload = json("payload", &self.payload)?;
        let created_at = time("created_at", &self.created_at)?;
        let attempts = count("attempts", self.attempts)?;
        let revision = count("revision", self.revision)?;
        let next_attempt_at = self.next_attempt_at.map(from_millis).transpose().map_err(|e| bad("next_attempt_at", &e))?;
        let result = self.result.as_deref().map(|t| json("result", t)).transpose()?;
        let delivered_at = self.delivered_at.as_deref().map(|t| time("delivered_at", t)).transpose()?;
        Ok(Notification {
            outgoing: Outgoing {
                id: self.id,
                request_id: self.request_id,
                channel: self.channel,
                destination: self.destination,
                kind: self.kind,
                payload,
                coalesce_key: self.coalesce_key,
                created_at,
                trace: self.trace,
            },
            status,
            attempts,
            revision,
            next_attempt_at,
            last_error: self.last_error,
            result,
            delivered_at,
        })
    }
}

impl PolicyRecord {
    /// A policy read back from its row (`hash, id, version, source`).
    pub fn from_row(hash: String, id: String, version: i64, source: &str) -> Result<PolicyRecord> {
        // (Written `as i64`: read back the same way, every u64 survives the trip.)
        Ok(PolicyRecord { hash, id, version: version as u64, source: decode(source)? })
    }
}

/// A time the stores keep as unix milliseconds (timers, retries).
/// A session row: hash, user, csrf token, and its start and end in unix ms.
pub fn session(id_hash: String, user: String, csrf: String, created_ms: i64, expires_ms: i64) -> Result<crate::Session> {
    Ok(crate::Session { id_hash, user, csrf, created_at: from_millis(created_ms)?, expires_at: from_millis(expires_ms)? })
}

pub fn from_millis(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> OutboxRow {
        OutboxRow {
            id: "ntf_1".into(),
            request_id: "req_1".into(),
            channel: "webhook".into(),
            destination: "erp".into(),
            kind: "event".into(),
            payload: r#"{"a":1}"#.into(),
            coalesce_key: Some("k".into()),
            created_at: "2026-11-22T09:00:00Z".into(),
            status: "delivered".into(),
            attempts: 2,
            revision: 1,
            next_attempt_at: None,
            last_error: Some("timeout".into()),
            result: Some(r#"{"ts":"1"}"#.into()),
            delivered_at: Some("2026-11-22T09:01:00Z".into()),
            trace: None,
        }
    }

    #[test]
    fn an_outbox_row_decodes_to_its_notification() {
        let n = row().decode().unwrap();
        assert_eq!(n.outgoing.payload, serde_json::json!({"a": 1}));
        assert_eq!(n.outgoing.created_at, "2026-11-22T09:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!((n.status, n.attempts, n.revision), (DeliveryStatus::Delivered, 2, 1));
        assert_eq!(n.result, Some(serde_json::json!({"ts": "1"})));
        assert_eq!(n.delivered_at, Some("2026-11-22T09:01:00Z".parse().unwrap()));
        let pending = OutboxRow { status: "pending".into(), next_attempt_at: Some(1_000), result: None, delivered_at: None, ..row() };
        let n = pending.decode().unwrap();
        assert_eq!((n.status, n.next_attempt_at), (DeliveryStatus::Pending, Some(Timestamp::from_millisecond(1_000).unwrap())));
        let elsewhere = OutboxRow { channel: "pigeon".into(), ..row() };
        assert_eq!(elsewhere.decode().unwrap().outgoing.channel, "pigeon", "an unknown channel is the dispatcher's to fail");
    }

    #[test]
    fn a_damaged_outbox_row_is_corrupt_not_defaulted() {
        let damaged = [
            ("payload", OutboxRow { payload: "{".into(), ..row() }),
            ("result", OutboxRow { result: Some("not json".into()), ..row() }),
            ("created_at", OutboxRow { created_at: "yesterday".into(), ..row() }),
            ("delivered_at", OutboxRow { delivered_at: Some("".into()), ..row() }),
            ("next_attempt_at", OutboxRow { next_attempt_at: Some(i64::MAX), ..row() }),
            ("status", OutboxRow { status: "lost".into(), ..row() }),
            ("attempts", OutboxRow { attempts: -1, ..row() }),
        ];
        for (column, r) in damaged {
            match r.decode() {
                Err(StoreError::Corrupt(e)) => assert!(e.contains("ntf_1") && e.contains(column), "{column}: {e}"),
                other => panic!("{column}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_policy_row_decodes_or_is_corrupt() {
        let p = PolicyRecord::from_row("sha256:a".into(), "p".into(), 3, r#"{"id":"p"}"#).unwrap();
        assert_eq!((p.version, p.source), (3, serde_json::json!({"id": "p"})));
        let big = PolicyRecord::from_row("h".into(), "p".into(), u64::MAX as i64, "{}").unwrap();
        assert_eq!(big.version, u64::MAX);
        assert!(matches!(PolicyRecord::from_row("h".into(), "p".into(), 1, "{"), Err(StoreError::Corrupt(_))));
    }
}
