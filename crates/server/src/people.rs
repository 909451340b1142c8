//! People, groups, admins, tokens and out-of-office set through the API: each change is
//! recorded in the store as a numbered, hash-chained record (who, when, from where, what), and
//! the directory in force is the file's with every recorded change applied in order; so changes
//! survive restarts and reloads, and every instance on a shared store applies the same ones.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use signoff_engine::Code;
use signoff_engine::Directory;
use signoff_engine::directory::{Change, Refused};
use signoff_engine::event::Origin;
use signoff_store::{Store, StoreError};

use crate::catalog::Catalog;
use crate::error::Problem;

/// The hash a chain of directory changes starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    pub change: Change,
    /// The hash of the record before (zeros for the first).
    pub prev: String,
    /// SHA-256 of the canonical JSON of every other field.
    pub hash: String,
}

impl Record {
    fn digest(&self) -> String {
        signoff_engine::canonical::digest(&json!({
            "seq": self.seq, "at": self.at, "actor": self.actor, "origin": self.origin, "change": self.change, "prev": self.prev,
        }))
    }
}

/// What is wrong with a stored change: a verification finding's code (`unreadable`,
/// `sequence_gap`, `chain_broken`, `event_altered`) and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    pub seq: u64,
    pub code: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "directory change {}: {}", self.seq, self.detail)
    }
}

/// Reads record number `seq` as stored (`body`) and checks that it follows `head` (the hash of
/// the record before, `GENESIS` for the first) and hashes to what it says.
pub fn checked(seq: u64, body: &str, head: &str) -> Result<Record, Broken> {
    let broken = |code, detail: String| Broken { seq, code, detail };
    let record: Record = serde_json::from_str(body).map_err(|e| broken("unreadable", format!("cannot be read, so it was changed outside signoff: {e}")))?;
    if record.seq != seq {
        return Err(broken("sequence_gap", format!("the record stored as number {seq} says it is number {}: a change was removed or reordered", record.seq)));
    }
    if record.digest() != record.hash {
        return Err(broken("event_altered", "was changed after it was written: its content no longer matches its hash".into()));
    }
    if record.prev != head {
        return Err(broken("chain_broken", "does not follow the change before it: an earlier change was changed, removed or reordered".into()));
    }
    Ok(record)
}

/// How far this instance has applied the recorded changes.
struct Applied {
    seq: u64,
    head: String,
    changes: Vec<Change>,
}

/// The recorded changes, as this instance has applied them.
pub struct People {
    applied: tokio::sync::Mutex<Applied>,
}

impl Default for People {
    fn default() -> Self {
        People { applied: tokio::sync::Mutex::new(Applied { seq: 0, head: GENESIS.into(), changes: Vec::new() }) }
    }
}

/// Applies `changes` over `catalog`'s directory; a change the directory no longer takes (the file
/// changed under it) is skipped and logged.
fn over(catalog: &Catalog, changes: &[Change]) -> Catalog {
    let mut directory = (*catalog.directory).clone();
    for change in changes {
        if let Err(e) = directory.apply(change) {
            tracing::warn!(error = %e, change = %serde_json::to_string(change).unwrap_or_default(), "a directory change made through the API no longer applies to the file; skipped");
        }
    }
    with_directory(catalog, directory)
}

/// `catalog` with `directory` in place of its own.
fn with_directory(catalog: &Catalog, directory: Directory) -> Catalog {
    Catalog { directory: Arc::new(directory), ..catalog.clone() }
}

fn corrupt(seq: u64, what: &str) -> StoreError {
    StoreError::Corrupt(format!("directory change {seq}: {what}"))
}

impl People {
    /// Applies the changes recorded since this instance last looked (by any instance) to the
    /// directory in `catalog`; checks each record's chain.
    pub async fn catch_up(&self, store: &dyn Store, catalog: &ArcSwap<Catalog>) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().await;
        self.catch_up_locked(&mut applied, store, catalog).await
    }

    async fn catch_up_locked(&self, applied: &mut Applied, store: &dyn Store, catalog: &ArcSwap<Catalog>) -> Result<(), StoreError> {
        let rows = store.directory_changes(applied.seq).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut fresh = Vec::with_capacity(rows.len());
        for (seq, body) in rows {
            let record = checked(seq, &body, &applied.head).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            applied.seq = seq;
            applied.head = record.hash.clone();
            fresh.push(record.change);
        }
        catalog.store(Arc::new(over(&catalog.load(), &fresh)));
        applied.changes.extend(fresh);
        Ok(())
    }

    /// Puts `fresh` (just loaded from the files) in force, with every recorded change applied.
    pub async fn install(&self, fresh: &Catalog, catalog: &ArcSwap<Catalog>) -> Arc<Catalog> {
        let applied = self.applied.lock().await;
        let installed = Arc::new(over(fresh, &applied.changes));
        catalog.store(installed.clone());
        installed
    }

    /// Records `change` by `actor`, if the directory in force takes it, and applies it.
    pub async fn change(&self, store: &dyn Store, catalog: &ArcSwap<Catalog>, actor: &str, origin: Option<Origin>, change: Change, at: Timestamp) -> Result<Record, Problem> {
        let mut applied = self.applied.lock().await;
        // Another instance may have recorded the next number first: read what it recorded and
        // decide again.
        for _ in 0..16 {
            self.catch_up_locked(&mut applied, store, catalog).await?;
            let mut directory = (*catalog.load().directory).clone();
            directory.apply(&change).map_err(|e| refusal(e, &change))?;
            let mut record = Record { seq: applied.seq + 1, at, actor: actor.to_string(), origin: origin.clone(), change: change.clone(), prev: applied.head.clone(), hash: String::new() };
            record.hash = record.digest();
            let body = serde_json::to_string(&record).map_err(Problem::internal)?;
            if store.append_directory_change(record.seq, &body).await? {
                applied.seq = record.seq;
                applied.head = record.hash.clone();
                applied.changes.push(change);
                catalog.store(Arc::new(with_directory(&catalog.load(), directory)));
                tracing::info!(seq = record.seq, actor, change = %serde_json::to_string(&record.change).unwrap_or_default(), "directory changed");
                return Ok(record);
            }
        }
        Err(Problem::new(Code::Busy, "the directory is changing too fast; retry"))
    }

    /// Every recorded change after number `after`, oldest first, as stored (their chain is
    /// checked as they are applied, `catch_up`).
    pub async fn records(&self, store: &dyn Store, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let rows = store.directory_changes(after).await?;
        rows.into_iter()
            .take(limit)
            .map(|(seq, body)| serde_json::from_str::<Record>(&body).map_err(|e| corrupt(seq, &e.to_string())))
            .collect()
    }
}

/// A change the directory does not take, as the caller is told: what the call is about is
/// not found (404); someone it names is an unknown user (422).
fn refusal(e: Refused, change: &Change) -> Problem {
    let about_the_target = matches!(change, Change::RemoveUser { .. } | Change::RemoveGroup { .. } | Change::RevokeToken { .. });
    match &e {
        Refused::UnknownUser(id) => match change {
            Change::SetOutOfOffice { user, .. } | Change::ClearOutOfOffice { user } if user == id => Problem::not_found(e.to_string()),
            _ if about_the_target => Problem::not_found(e.to_string()),
            _ => Problem::new(Code::UnknownUser, e.to_string()),
        },
        Refused::UnknownGroup(_) | Refused::UnknownToken(_) => Problem::not_found(e.to_string()),
        Refused::Invalid(_) => Problem::new(Code::BadParameter, e.to_string()),
    }
}
