//! Moving data between stores (SQLite and PostgreSQL, either way) as JSON Lines: a header, the
//! policies requests were planned with, then each request's full history, oldest request first.
//! Import checks each hash chain and rebuilds each state by folding its events, so what arrives
//! is exactly what left.

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::{Value, json};
use signoff_engine::event::verify_chain;
use signoff_engine::{Event, RequestState};
use signoff_store::{Commit, CommitOutcome, ListQuery, PolicyRecord, Store};

const FORMAT: &str = "signoff-export";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub policies: usize,
    pub requests: usize,
    pub events: usize,
}

pub async fn export(store: &dyn Store, out: &mut dyn Write) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let line = |out: &mut dyn Write, v: Value| writeln!(out, "{v}").map_err(|e| format!("write: {e}"));
    line(out, json!({ "format": FORMAT, "version": 1 }))?;
    for p in store.policies().await.map_err(|e| e.to_string())? {
        line(out, json!({ "policy": { "hash": p.hash, "id": p.id, "version": p.version, "source": p.source } }))?;
        counts.policies += 1;
    }
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        // (Pages bounded in bytes as the API's are: the states are read only for their ids.)
        let query = ListQuery { limit: 500, cursor, max_bytes: Some(crate::Memory::default().page_bytes), ..ListQuery::default() };
        let page = store.list(&query).await.map_err(|e| e.to_string())?;
        ids.extend(page.items.into_iter().map(|s| s.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for id in ids.into_iter().rev() {
        let events = store.events(&id).await.map_err(|e| e.to_string())?;
        counts.events += events.len();
        counts.requests += 1;
        line(out, json!({ "request": id, "events": events }))?;
    }
    Ok(counts)
}

pub async fn import(store: &dyn Store, input: &mut dyn BufRead) -> Result<Counts, String> {
    let mut counts = Counts::default();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("read: {e}"))?;
        let at = i + 1;
        let v: Value = signoff_store::decode(&line).map_err(|e| format!("line {at}: not JSON: {e}"))?;
        if i == 0 {
            if v["format"] != FORMAT {
                return Err(format!("line 1: not a signoff export (expected format `{FORMAT}`)"));
            }
            continue;
        }
        if let Some(p) = v.get("policy") {
            let record = PolicyRecord {
                hash: p["hash"].as_str().unwrap_or_default().into(),
                id: p["id"].as_str().unwrap_or_default().into(),
                version: p["version"].as_u64().unwrap_or(1),
                source: p["source"].clone(),
            };
            store.put_policy(&record).await.map_err(|e| format!("line {at}: {e}"))?;
            counts.policies += 1;
        } else if let Some(id) = v["request"].as_str() {
            let events: Vec<Event> = Vec::<Event>::deserialize(&v["events"]).map_err(|e| format!("line {at}: {e}"))?;
            verify_chain(&events).map_err(|e| format!("line {at}: request {id}: {e}"))?;
            let state = RequestState::fold(&events).map_err(|e| format!("line {at}: request {id}: {e}"))?;
            counts.events += events.len();
            let commit = Commit::create(events, std::sync::Arc::new(state));
            match store.commit(commit).await.map_err(|e| format!("line {at}: {e}"))? {
                CommitOutcome::Committed => counts.requests += 1,
                _ => return Err(format!("line {at}: request {id} is already in the target store")),
            }
        } else {
            return Err(format!("line {at}: neither a policy nor a request"));
        }
    }
    Ok(counts)
}
