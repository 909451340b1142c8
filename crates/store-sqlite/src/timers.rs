//! Claims on due timers, and the timer queries they are made from. Only this process can open
//! the file, so a claim lives in memory, by request id until when (unix ms): none can outlive
//! the process that made it, and none needs a write.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use rusqlite::{Connection, params};
use signoff_store::Result;

use crate::unavailable;

/// Due timers being fired, by request id, until when (unix ms).
#[derive(Default)]
pub(crate) struct TimerClaims(Mutex<HashMap<String, i64>>);

impl TimerClaims {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the claims on `ids`.
    pub(crate) fn end(&self, ids: &[String]) {
        let mut claims = self.lock();
        for id in ids {
            claims.remove(id);
        }
    }

    /// How many claims still hold at `now_ms` (forgetting those that ran out).
    pub(crate) fn held(&self, now_ms: i64) -> usize {
        let mut claims = self.lock();
        claims.retain(|_, lease| *lease > now_ms);
        claims.len()
    }

    /// Claims the first `limit` of `due` that nobody holds, until `lease` (unix ms).
    pub(crate) fn take(&self, due: Vec<String>, limit: usize, lease: i64) -> Vec<String> {
        let mut claims = self.lock();
        let mut claimed = Vec::new();
        for id in due {
            if claimed.len() == limit {
                break;
            }
            if !claims.contains_key(&id) {
                claims.insert(id.clone(), lease);
                claimed.push(id);
            }
        }
        claimed
    }

    /// Every claim, as it stands now.
    pub(crate) fn all(&self) -> HashMap<String, i64> {
        self.lock().clone()
    }
}

/// Up to `want` requests with a timer due at `now_ms`, earliest first.
pub(crate) fn due(c: &Connection, now_ms: i64, want: usize) -> Result<Vec<String>> {
    let mut stmt = c
        .prepare_cached("SELECT r.id FROM timers t JOIN requests r ON r.n = t.request_n WHERE t.due_at <= ?1 ORDER BY t.due_at LIMIT ?2")
        .map_err(unavailable)?;
    let rows = stmt.query_map(params![now_ms, want as i64], |r| r.get::<_, String>(0)).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

/// The `scan` earliest timers (request id, due at in unix ms).
pub(crate) fn earliest(c: &Connection, scan: usize) -> Result<Vec<(String, i64)>> {
    let mut stmt = c
        .prepare_cached("SELECT r.id, t.due_at FROM timers t JOIN requests r ON r.n = t.request_n ORDER BY t.due_at LIMIT ?1")
        .map_err(unavailable)?;
    let rows = stmt.query_map(params![scan as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

/// When the next timer falls due, from the `earliest` timers (at least one more than there are
/// claims) and the claims: a claimed timer counts from its lease, any other from its due time.
pub(crate) fn next_at(earliest: &[(String, i64)], claims: &HashMap<String, i64>) -> Result<Option<Timestamp>> {
    let unclaimed = earliest.iter().find(|(id, _)| !claims.contains_key(id)).map(|(_, due)| *due);
    let ms = unclaimed.into_iter().chain(claims.values().copied()).min();
    ms.map(signoff_store::rows::from_millis).transpose()
}
