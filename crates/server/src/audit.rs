//! The audit log as the server runs it: the sequencer that moves committed events into the
//! Merkle tree, signed checkpoints and proofs, and verification (of one request online, of a
//! whole store offline), answered in words a non-developer can act on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use signoff_audit::checkpoint::{self, Checkpoint};
use signoff_audit::merkle::{self, Frontier, Hash};
use signoff_engine::event::{ChainError, verify_chain};
use signoff_engine::{Event, RequestState};
use signoff_store::{ListQuery, Store, StoreError, log};

/// The name every checkpoint of a signoff log carries.
pub const ORIGIN: &str = "signoff";
/// Events appended to the tree per transaction.
const BATCH: u32 = 10_000;

/// Where the checkpoint signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeySource {
    /// A file holding the key (base64 of its 32-byte seed), created if missing.
    File(PathBuf),
    /// None configured (PostgreSQL without `audit-key`): checkpoints are not signed and not
    /// served.
    #[default]
    None,
}

impl KeySource {
    /// Reads the key, creating the file (readable by its owner only) on first start.
    pub fn load(&self) -> Result<Option<SigningKey>, String> {
        let KeySource::File(path) = self else {
            return Ok(None);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => checkpoint::signing_key(&text)
                .map(Some)
                .map_err(|e| format!("audit-key: {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = checkpoint::generate_key();
                write_private(path, &checkpoint::encode_signing_key(&key))
                    .map_err(|e| format!("audit-key: {}: cannot create: {e}", path.display()))?;
                tracing::info!(path = %path.display(), key_id = %checkpoint::key_id(&key.verifying_key()), "created the audit log's signing key");
                Ok(Some(key))
            }
            Err(e) => Err(format!("audit-key: {}: {e}", path.display())),
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, format!("{text}\n").as_bytes())
}

/// Sequences everything queued now (in batches); answers the log's size.
pub async fn catch_up(store: &dyn Store) -> Result<u64, StoreError> {
    let mut size = store.log_size().await?.size;
    loop {
        let next = store.sequence_log(BATCH).await?;
        // A batch that was not full drained the queue (or another instance is sequencing,
        // and what it appends is as good).
        if next < size + BATCH as u64 {
            return Ok(next);
        }
        size = next;
    }
}

/// How often the sequencer takes in what commits queued: a batch per tick costs live commits
/// one transaction, where sequencing after every commit cost them most of their throughput.
/// A checkpoint or proof asked for meanwhile takes in the rest itself.
const SEQUENCE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs until dropped: appends committed events to the log every `SEQUENCE_EVERY`.
pub async fn sequencer(store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(SEQUENCE_EVERY).await;
        if let Err(e) = catch_up(&*store).await {
            tracing::warn!(error = %e, "audit log: cannot sequence; retrying");
        }
    }
}

/// The log's current checkpoint, signed.
pub async fn checkpoint(
    store: &dyn Store,
    key: &SigningKey,
    now: jiff::Timestamp,
) -> Result<Checkpoint, StoreError> {
    let size = catch_up(store).await?;
    let root = log::build(store, &merkle::root(size)).await?;
    Ok(checkpoint::sign(key, ORIGIN, size, &root, &now.to_string()))
}

/// A consistency proof between two sizes, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Hex hashes, RFC 6962 order.
    pub proof: Vec<String>,
}

pub async fn consistency(
    store: &dyn Store,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, StoreError> {
    let proof = log::build(store, &merkle::consistency_proof(from, to)).await?;
    Ok(ConsistencyProof {
        from,
        to,
        proof: proof.iter().map(hex::encode).collect(),
    })
}

/// Where one event sits in the log, with the proof of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inclusion {
    pub seq: u64,
    pub index: u64,
    /// Hex hashes, RFC 6962 order.
    pub proof: Vec<String>,
}

/// A verification's finding: what is wrong, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A stable code: `event_altered`, `chain_broken`, `sequence_gap`, `state_altered`,
    /// `event_missing`, `event_not_logged`, `logged_twice`, `tree_altered`,
    /// `checkpoint_mismatch`, `checkpoint_signature`, `unreadable`.
    pub code: String,
    /// What it means, in words.
    pub detail: String,
}

impl Problem {
    fn at(request: &str, seq: Option<u64>, code: &str, detail: String) -> Problem {
        Problem {
            request: Some(request.to_string()),
            seq,
            code: code.into(),
            detail,
        }
    }

    fn log(code: &str, detail: String) -> Problem {
        Problem {
            request: None,
            seq: None,
            code: code.into(),
            detail,
        }
    }
}

fn chain_problem(id: &str, e: &ChainError) -> Problem {
    match e {
        ChainError::Gap { seq, expected } => Problem::at(
            id,
            Some(*expected),
            "sequence_gap",
            format!(
                "event {expected} is missing (the next stored one is {seq}): an event was removed or reordered"
            ),
        ),
        ChainError::Broken { seq } => Problem::at(
            id,
            Some(*seq),
            "chain_broken",
            format!(
                "event {seq} does not follow the event before it: an earlier event was changed, removed or reordered"
            ),
        ),
        ChainError::Tampered { seq } => Problem::at(
            id,
            Some(*seq),
            "event_altered",
            format!(
                "event {seq} was changed after it was written: its content no longer matches its hash"
            ),
        ),
    }
}

/// One request's own checks: its chain, and that its stored state is the fold of its events.
pub fn check_request(id: &str, events: &[Event], stored: Option<&RequestState>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(e) = verify_chain(events) {
        problems.push(chain_problem(id, &e));
        return problems;
    }
    match (RequestState::fold(events), stored) {
        (Err(e), _) => problems.push(Problem::at(
            id,
            None,
            "unreadable",
            format!("its events do not make a request: {e}"),
        )),
        (Ok(_), None) => problems.push(Problem::at(
            id,
            None,
            "state_altered",
            "its events are stored but the request itself is not".into(),
        )),
        (Ok(folded), Some(stored)) => {
            let (a, b) = (
                serde_json::to_value(&folded).ok(),
                serde_json::to_value(stored).ok(),
            );
            if a != b {
                problems.push(Problem::at(
                    id,
                    None,
                    "state_altered",
                    format!(
                        "the stored request (status {}, version {}) is not what its events say (status {}, version {}): the stored state was changed outside signoff",
                        stored.status.as_str(),
                        stored.version,
                        folded.status.as_str(),
                        folded.version
                    ),
                ));
            }
        }
    }
    problems
}

/// A request's events and state as stored, and what is wrong with them: an event whose stored
/// text is not exactly what signoff wrote (even if it reads the same), a row that cannot be
/// read, and what `check_request` finds. Only the events before the first damaged one are
/// answered.
async fn read_request(store: &dyn Store, id: &str) -> Result<(Vec<Event>, Vec<Problem>), StoreError> {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for (i, body) in store.event_bodies(id).await?.iter().enumerate() {
        let seq = i as u64 + 1;
        match serde_json::from_str::<Event>(body) {
            Ok(e) if serde_json::to_string(&e).is_ok_and(|again| again == *body) => events.push(e),
            Ok(_) => {
                problems.push(Problem::at(id, Some(seq), "event_altered", format!("the stored text of event {seq} was changed: it is not what signoff wrote, even where it reads the same")));
                break;
            }
            Err(e) => {
                problems.push(Problem::at(id, Some(seq), "unreadable", format!("event {seq} cannot be read, so it was changed outside signoff: {e}")));
                break;
            }
        }
    }
    let stored = match store.load_stored(id).await {
        Ok(s) => s,
        Err(StoreError::Corrupt(e)) => {
            problems.push(Problem::at(id, None, "unreadable", format!("the stored request cannot be read, so it was changed outside signoff: {e}")));
            return Ok((events, problems));
        }
        Err(e) => return Err(e),
    };
    if problems.is_empty() {
        problems = check_request(id, &events, stored.as_ref());
    }
    Ok((events, problems))
}

/// The directory's recorded changes as stored, and what is wrong with them (only those before
/// the first broken one are answered).
async fn read_directory(store: &dyn Store) -> Result<(Vec<crate::people::Record>, Vec<Problem>), StoreError> {
    let mut records = Vec::new();
    let mut head = crate::people::GENESIS.to_string();
    for (i, (seq, body)) in store.directory_changes(0).await?.into_iter().enumerate() {
        let expected = i as u64 + 1;
        if seq != expected {
            let detail = format!("missing (the next stored one is {seq}): a change was removed");
            return Ok((records, vec![Problem::at(log::DIRECTORY, Some(expected), "sequence_gap", detail)]));
        }
        match crate::people::checked(seq, &body, &head) {
            Ok(record) => {
                head = record.hash.clone();
                records.push(record);
            }
            // (The finding names the change by its place; the detail says what is wrong with it.)
            Err(broken) => return Ok((records, vec![Problem::at(log::DIRECTORY, Some(seq), broken.code, broken.detail)])),
        }
    }
    Ok((records, Vec::new()))
}

/// What `verify_request` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestVerification {
    pub request: String,
    pub verified: bool,
    pub events: u64,
    /// The tree the inclusion proofs are for.
    pub log_size: u64,
    /// Its root, hex.
    pub log_root: String,
    pub inclusion: Vec<Inclusion>,
    pub problems: Vec<Problem>,
}

/// Verifies one request as stored now: chain, state, and each event's place in the log.
pub async fn verify_request(
    store: &dyn Store,
    id: &str,
) -> Result<RequestVerification, StoreError> {
    let (events, mut problems) = read_request(store, id).await?;
    let size = catch_up(store).await?;
    let root = log::build(store, &merkle::root(size)).await?;
    let leaves = store.log_leaves_of(id).await?;
    // Each event's leaf, and all their proofs in one read.
    let found = problems.len();
    let mut placed = Vec::new();
    for e in &events {
        match leaves.iter().find(|l| l.seq == e.seq) {
            Some(leaf) => placed.push((e, leaf)),
            None => problems.push(Problem::at(id, Some(e.seq), "event_not_logged", format!("event {} is not in the audit log", e.seq))),
        }
    }
    let plans: Vec<_> = placed.iter().map(|(_, leaf)| merkle::inclusion_proof(leaf.index, size)).collect();
    let proofs = log::build_many(store, &plans).await?;
    let mut inclusion = Vec::new();
    for ((e, leaf), proof) in placed.into_iter().zip(proofs) {
        if merkle::verify_inclusion(&signoff_audit::event_leaf(id, e.seq, &e.hash), leaf.index, size, &proof, &root).is_err() {
            problems.push(Problem::at(id, Some(e.seq), "tree_altered", format!("event {} is not the one the audit log holds at leaf {}", e.seq, leaf.index)));
        }
        inclusion.push(Inclusion { seq: e.seq, index: leaf.index, proof: proof.iter().map(hex::encode).collect() });
    }
    // (The log's findings in event order, as the events were checked.)
    problems[found..].sort_by_key(|p| p.seq);
    Ok(RequestVerification {
        request: id.to_string(),
        verified: problems.is_empty(),
        events: events.len() as u64,
        log_size: size,
        log_root: hex::encode(root),
        inclusion,
        problems,
    })
}

/// What `verify_store` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreVerification {
    pub requests: u64,
    pub events: u64,
    pub log_size: u64,
    /// Committed events not yet in the log (the sequencer had not reached them).
    pub queued: u64,
    /// The checkpoint checked against, if one was given: its size.
    pub checkpoint_size: Option<u64>,
    /// Events in the log whose requests retention archived and purged (`signoff verify
    /// --archive` checks an archive file).
    pub archived: u64,
    /// Changes to the directory made through the API (leaves of the log too).
    #[serde(default)]
    pub directory_changes: u64,
    pub problems: Vec<Problem>,
}

impl StoreVerification {
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies a whole store without changing it: every request's chain and state, that the log
/// holds every event exactly once, that the stored tree is the tree of those events, and, given
/// a checkpoint someone kept, that the log's first `checkpoint.size` events still have its root
/// (so nothing it covered was removed, changed or reordered since). `progress` is told each
/// request.
pub async fn verify_store(
    store: &dyn Store,
    kept: Option<&Checkpoint>,
    progress: &mut dyn FnMut(u64),
) -> Result<StoreVerification, StoreError> {
    let mut report = StoreVerification::default();
    if let Some(c) = kept {
        report.checkpoint_size = Some(c.size);
        if let Err(e) = c.verify(None) {
            report
                .problems
                .push(Problem::log("checkpoint_signature", e.to_string()));
        }
    }
    // Each request's events' leaf hashes, by sequence number (taken as the log names them).
    let mut leaves_of: HashMap<String, Vec<Option<Hash>>> = HashMap::new();
    // Requests already reported unreadable: their leaves say nothing more.
    let mut unreadable = std::collections::HashSet::new();
    // Requests retention moved to archives: their leaves name events no longer here.
    let purged = store.purged().await?;
    let mut cursor = None;
    loop {
        let query = ListQuery {
            limit: 200,
            cursor,
            ..ListQuery::default()
        };
        let page = store.list(&query).await?;
        for state in &page.items {
            let id = state.id.to_string();
            report.requests += 1;
            progress(report.requests);
            // A row damaged past reading is a finding, not the end of the check.
            let (events, problems) = read_request(store, &id).await?;
            if !problems.is_empty() {
                unreadable.insert(id.clone());
            }
            report.problems.extend(problems);
            report.events += events.len() as u64;
            leaves_of.insert(
                id.clone(),
                events
                    .iter()
                    .map(|e| Some(signoff_audit::event_leaf(&id, e.seq, &e.hash)))
                    .collect(),
            );
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // The directory's changes: their chain, and their leaves as the log names them.
    let (records, problems) = read_directory(store).await?;
    if !problems.is_empty() {
        unreadable.insert(log::DIRECTORY.to_string());
    }
    report.problems.extend(problems);
    report.directory_changes = records.len() as u64;
    leaves_of.insert(
        log::DIRECTORY.to_string(),
        records.iter().map(|r| Some(signoff_audit::event_leaf(log::DIRECTORY, r.seq, &r.hash))).collect(),
    );
    let size = store.log_size().await?;
    report.log_size = size.size;
    report.queued = size.queued;
    // The tree again, from the events the leaves name.
    let mut tree = Frontier::default();
    let mut at_checkpoint = None;
    let mut from = 0;
    while from < size.size {
        let leaves = store.log_leaves(from, 10_000).await?;
        if leaves.is_empty() {
            break;
        }
        for l in &leaves {
            if kept.is_some_and(|c| c.size == tree.size) {
                at_checkpoint = Some(tree.root());
            }
            if l.index != tree.size {
                report.problems.push(Problem::log(
                    "tree_altered",
                    format!("leaf {} is missing from the audit log", tree.size),
                ));
                tree.size = l.index;
            }
            let slot = leaves_of
                .get_mut(&l.request_id)
                .and_then(|v| v.get_mut((l.seq as usize).wrapping_sub(1)));
            let leaf = match slot {
                Some(slot) => slot.take().unwrap_or_else(|| {
                    report.problems.push(Problem::at(
                        &l.request_id,
                        Some(l.seq),
                        "logged_twice",
                        format!("event {} is in the audit log twice", l.seq),
                    ));
                    [0; 32]
                }),
                // An event that cannot be checked (already reported) or is gone: the tree goes
                // on with the leaf as stored, so that one finding is not reported as many.
                None => {
                    if purged.contains_key(&l.request_id) {
                        report.archived += 1;
                    } else if !unreadable.contains(&l.request_id) {
                        report.problems.push(Problem::at(
                            &l.request_id,
                            Some(l.seq),
                            "event_missing",
                            format!("the audit log holds event {} at leaf {}, but it is no longer stored: the request or its event was deleted", l.seq, l.index),
                        ));
                    }
                    let node = merkle::Node { level: 0, index: l.index };
                    store.log_nodes(&[node]).await?.get(&node).copied().unwrap_or([0; 32])
                }
            };
            tree.append(leaf);
        }
        from = leaves.last().map_or(from, |l| l.index + 1);
    }
    if kept.is_some_and(|c| c.size == tree.size) {
        at_checkpoint = Some(tree.root());
    }
    let stored_root = log::build(store, &merkle::root(size.size)).await;
    if stored_root.as_ref().ok() != Some(&tree.root()) {
        report.problems.push(Problem::log("tree_altered", "the audit log's stored tree is not the tree of its leaves: it was changed outside signoff".into()));
    }
    let unlogged: u64 = leaves_of
        .values()
        .map(|v| v.iter().filter(|s| s.is_some()).count() as u64)
        .sum();
    if unlogged > size.queued {
        for (id, slots) in &leaves_of {
            for (i, _) in slots.iter().enumerate().filter(|(_, s)| s.is_some()) {
                report.problems.push(Problem::at(
                    id,
                    Some(i as u64 + 1),
                    "event_not_logged",
                    format!("event {} is not in the audit log", i + 1),
                ));
            }
        }
    }
    if let Some(c) = kept {
        match (at_checkpoint, c.root_hash()) {
            (Some(root), Ok(expected)) if root == expected => {}
            (None, _) => report.problems.push(Problem::log(
                "checkpoint_mismatch",
                format!("the checkpoint covers {} events but the audit log holds only {}: events it covered were removed", c.size, tree.size),
            )),
            _ => report.problems.push(Problem::log(
                "checkpoint_mismatch",
                format!("the first {} events of the audit log are not the ones the checkpoint of {} signed: events were removed, changed or reordered since", c.size, c.time),
            )),
        }
    }
    // Findings about one request first (the first of them is the one to look at), then the log's.
    report.problems.sort_by(|a, b| (a.request.is_none(), &a.request, a.seq).cmp(&(b.request.is_none(), &b.request, b.seq)));
    Ok(report)
}

/// Which events an audit export takes; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportFilter {
    /// Events at or after this time.
    pub from: Option<jiff::Timestamp>,
    /// Events before this time.
    pub to: Option<jiff::Timestamp>,
    pub policy: Option<String>,
    /// The event's type (`submitted`, `approved`, …).
    pub kind: Option<String>,
    pub actor: Option<String>,
    /// The request's status now.
    pub status: Option<String>,
}

/// The policy a request was planned with, and the hash of what was submitted (the canonical
/// JSON of its context): what every record of the request carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub policy: signoff_engine::event::PolicyRef,
    pub payload_hash: String,
}

/// One line of an audit export: an event, where it sits in the log, and what an auditor asks
/// of it without reading the whole request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its place in the audit log (commit order); resume an export after it with
    /// `cursor = index + 1`.
    pub index: u64,
    pub request: String,
    pub seq: u64,
    pub at: jiff::Timestamp,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For a decision (approved, rejected, completed, …): what was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// For a step that became active: who may decide it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<serde_json::Value>,
    /// Where the actor's call came from (address, forwarded-for, user agent), for actions taken
    /// through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<signoff_engine::event::Origin>,
    /// The request's policy and payload hash (none for a directory change).
    #[serde(flatten)]
    pub provenance: Option<Provenance>,
    /// The request's status now (none for a directory change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The event itself, hash and chain included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// For `directory_changed` (request `directory`): the change made through the API, its
    /// hash and chain included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_change: Option<crate::people::Record>,
}

/// The type a directory change has in an audit export.
pub const DIRECTORY_CHANGED: &str = "directory_changed";

/// How many leaves one read of an export takes.
const EXPORT_PAGE: u32 = 1_000;
/// Requests whose provenance an export keeps in memory (then starts over): it streams millions
/// of events in bounded memory.
const PROVENANCE_CACHE: usize = 50_000;

/// Reads an audit export page by page, from a cursor (a log index) on.
pub struct Export {
    store: Arc<dyn Store>,
    filter: ExportFilter,
    /// The next leaf to read.
    pub cursor: u64,
    provenance: HashMap<String, Provenance>,
}

impl Export {
    pub fn new(store: Arc<dyn Store>, filter: ExportFilter, cursor: u64) -> Export {
        Export { store, filter, cursor, provenance: HashMap::new() }
    }

    /// The next page's records (perhaps none, when the filter passed none of it); `None` once
    /// the log is read to its end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditRecord>>, StoreError> {
        if self.cursor == 0 {
            catch_up(&*self.store).await?;
        }
        let rows = self.store.audit_rows(self.cursor, EXPORT_PAGE).await?;
        let Some(last) = rows.last() else { return Ok(None) };
        self.cursor = last.leaf.index + 1;
        let mut records = Vec::new();
        for row in rows {
            let f = &self.filter;
            let outside = |kind: &str, actor: &str, at: jiff::Timestamp| {
                f.kind.as_ref().is_some_and(|k| k != kind) || f.actor.as_ref().is_some_and(|a| a != actor) || f.from.is_some_and(|t| at < t) || f.to.is_some_and(|t| at >= t)
            };
            let (Some(policy_id), Some(status)) = (row.policy_id, row.status) else {
                // A directory change: it has no policy or status to match.
                let record: crate::people::Record = signoff_store::decode(&row.body)?;
                if f.policy.is_some() || f.status.is_some() || outside(DIRECTORY_CHANGED, &record.actor, record.at) {
                    continue;
                }
                records.push(AuditRecord {
                    index: row.leaf.index,
                    request: row.leaf.request_id,
                    seq: row.leaf.seq,
                    at: record.at,
                    kind: DIRECTORY_CHANGED.to_string(),
                    actor: record.actor.clone(),
                    step: None,
                    decision: None,
                    approvers: None,
                    origin: record.origin.clone(),
                    provenance: None,
                    status: None,
                    event: None,
                    directory_change: Some(record),
                });
                continue;
            };
            if f.policy.as_ref().is_some_and(|p| *p != policy_id) || f.status.as_ref().is_some_and(|s| *s != status) {
                continue;
            }
            let event: Event = signoff_store::decode(&row.body)?;
            let kind = event.kind.type_name();
            if outside(kind, &event.actor, event.at) {
                continue;
            }
            let provenance = self.provenance_of(&row.leaf.request_id, &event).await?;
            let decision = match &event.kind {
                signoff_engine::EventKind::Completed { status, .. } => Some(status.as_str().to_string()),
                _ if matches!(kind, "approved" | "rejected" | "auto_approved" | "expired" | "cancelled" | "step_timed_out") => Some(kind.to_string()),
                _ => None,
            };
            let approvers = match &event.kind {
                signoff_engine::EventKind::StepActivated { approvers, .. } => Some(serde_json::json!(approvers)),
                _ => None,
            };
            records.push(AuditRecord {
                index: row.leaf.index,
                request: row.leaf.request_id,
                seq: row.leaf.seq,
                at: event.at,
                kind: kind.to_string(),
                actor: event.actor.clone(),
                step: event.step.clone(),
                decision,
                approvers,
                origin: event.origin.clone(),
                provenance: Some(provenance),
                status: Some(status),
                event: Some(event),
                directory_change: None,
            });
        }
        Ok(Some(records))
    }

    /// The request's provenance: from its submission, which comes before its other events in
    /// the log, or read back when the export started after it.
    async fn provenance_of(&mut self, request: &str, event: &Event) -> Result<Provenance, StoreError> {
        if let Some(p) = self.provenance.get(request) {
            return Ok(p.clone());
        }
        let of = |e: &Event| match &e.kind {
            signoff_engine::EventKind::Submitted { policy, context, .. } => {
                Some(Provenance { policy: policy.clone(), payload_hash: signoff_engine::canonical::digest(context) })
            }
            _ => None,
        };
        let found = match of(event) {
            Some(p) => Some(p),
            None => self.store.events(request).await?.first().and_then(of),
        };
        let p = found.ok_or_else(|| StoreError::Corrupt(format!("request {request} has no submission")))?;
        if self.provenance.len() >= PROVENANCE_CACHE {
            self.provenance.clear();
        }
        self.provenance.insert(request.to_string(), p.clone());
        Ok(p)
    }
}
