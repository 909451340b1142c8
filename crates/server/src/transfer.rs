//! Moving data between stores (SQLite and PostgreSQL, either way) as JSON Lines: a header, the
//! policies requests were planned with, each request's full history, oldest request first, then
//! the directory changes made through the API, in order. Import checks each hash chain and
//! rebuilds each state by folding its events, so what arrives is exactly what left.

use std::io::{BufRead, Seek, SeekFrom, Write};

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
    pub directory_changes: usize,
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
    // (As stored, byte for byte: each is hashed and chained to the one before.)
    for (seq, body) in store.directory_changes(0).await.map_err(|e| e.to_string())? {
        line(out, json!({ "directory_change": seq, "record": body }))?;
        counts.directory_changes += 1;
    }
    Ok(counts)
}

/// Reads an export into `store`, all or nothing: the whole input is checked first (its format,
/// every hash chain and fold, no request the store already holds, none twice), and written only
/// when all of it passes, so a bad export leaves the store as it was.
pub async fn import<R: BufRead + Seek>(store: &dyn Store, input: &mut R) -> Result<Counts, String> {
    check_lines(Some(store), input).await.map_err(|e| format!("{e}; nothing was imported"))?;
    input.seek(SeekFrom::Start(0)).map_err(|e| format!("read: {e}"))?;
    read_export(Some(store), input, &mut |_| Ok(()), true).await
}

/// Checks an export on its own, as `import` does before writing: its format, every request's
/// hash chain and fold, no request twice. The error names the first line that fails.
pub async fn check(input: &mut dyn BufRead) -> Result<Counts, String> {
    check_lines(None, input).await
}

/// Every line checked, and (with `store`) that no request is already there.
async fn check_lines(store: Option<&dyn Store>, input: &mut dyn BufRead) -> Result<Counts, String> {
    let mut seen = std::collections::HashSet::new();
    read_export(store, input, &mut |item| {
        if let Item::Request { at, id, .. } = item
            && !seen.insert(id.clone())
        {
            return Err(format!("line {at}: request {id} appears twice in the export"));
        }
        Ok(())
    }, false)
    .await
}

/// One line of an export, decoded and checked.
enum Item {
    Policy(PolicyRecord),
    Request { at: usize, id: String, events: Vec<Event>, state: RequestState },
    DirectoryChange { at: usize, seq: u64, body: String },
}

/// Reads every line of an export, hands each item to `check`, and writes it to `store` when
/// `write` (without a store, nothing is written or looked up).
async fn read_export(store: Option<&dyn Store>, input: &mut dyn BufRead, check: &mut dyn FnMut(&Item) -> Result<(), String>, write: bool) -> Result<Counts, String> {
    let mut counts = Counts::default();
    // The directory changes' chain, as read so far.
    let mut head = crate::people::GENESIS.to_string();
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
        let item = if let Some(p) = v.get("policy") {
            Item::Policy(PolicyRecord {
                hash: p["hash"].as_str().unwrap_or_default().into(),
                id: p["id"].as_str().unwrap_or_default().into(),
                version: p["version"].as_u64().unwrap_or(1),
                source: p["source"].clone(),
            })
        } else if let Some(id) = v["request"].as_str() {
            let events: Vec<Event> = Vec::<Event>::deserialize(&v["events"]).map_err(|e| format!("line {at}: {e}"))?;
            verify_chain(&events).map_err(|e| format!("line {at}: request {id}: {e}"))?;
            let state = RequestState::fold(&events).map_err(|e| format!("line {at}: request {id}: {e}"))?;
            Item::Request { at, id: id.to_string(), events, state }
        } else if let Some(seq) = v.get("directory_change") {
            let seq = seq.as_u64().ok_or_else(|| format!("line {at}: directory_change is not a number"))?;
            let body = v["record"].as_str().ok_or_else(|| format!("line {at}: a directory change without its record"))?.to_string();
            let expected = counts.directory_changes as u64 + 1;
            if seq != expected {
                return Err(format!("line {at}: directory change {seq} where {expected} was due"));
            }
            head = crate::people::checked(seq, &body, &head).map_err(|e| format!("line {at}: {e}"))?.hash;
            Item::DirectoryChange { at, seq, body }
        } else {
            return Err(format!("line {at}: neither a policy, a request nor a directory change"));
        };
        check(&item)?;
        match item {
            Item::Policy(record) => {
                if let Some(store) = store.filter(|_| write) {
                    store.put_policy(&record).await.map_err(|e| format!("line {at}: {e}"))?;
                }
                counts.policies += 1;
            }
            Item::Request { id, events, state, .. } => {
                counts.events += events.len();
                counts.requests += 1;
                let Some(store) = store else { continue };
                if !write {
                    if store.load(&id).await.map_err(|e| format!("line {at}: {e}"))?.is_some() {
                        return Err(format!("line {at}: request {id} is already in the target store"));
                    }
                    continue;
                }
                let commit = Commit::create(events, std::sync::Arc::new(state));
                match store.commit(commit).await.map_err(|e| format!("line {at}: {e}"))? {
                    CommitOutcome::Committed => {}
                    _ => return Err(format!("line {at}: request {id} was written to the target store while importing")),
                }
            }
            Item::DirectoryChange { at, seq, body } => {
                counts.directory_changes += 1;
                let Some(store) = store else { continue };
                if !write {
                    if seq == 1 && !store.directory_changes(0).await.map_err(|e| format!("line {at}: {e}"))?.is_empty() {
                        return Err(format!("line {at}: the target store already has directory changes of its own"));
                    }
                    continue;
                }
                if !store.append_directory_change(seq, &body).await.map_err(|e| format!("line {at}: {e}"))? {
                    return Err(format!("line {at}: directory change {seq} was written to the target store while importing"));
                }
            }
        }
    }
    Ok(counts)
}
