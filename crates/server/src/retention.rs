//! Retention: closed requests past their rule's age move to archive files (gzip-compressed
//! NDJSON holding each request's events and the audit log's proof of each), which are read
//! back and verified before the requests leave the live store, a small batch at a time; and
//! what is kept only for a while (idempotency keys, finished notifications, spent keys) is
//! pruned. Never a pending request. The log keeps the purged events' leaves, so checkpoints
//! and proofs stand.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use signoff_audit::checkpoint::{self, Checkpoint};
use signoff_audit::merkle::{self, Hash};
use signoff_engine::event::verify_chain;
use signoff_engine::{Event, RequestState, RequestStatus};
use signoff_store::{Pruned, Store, log};

use crate::audit::{Inclusion, ORIGIN, catch_up};

const FORMAT: &str = "signoff-archive";
/// Requests per archive file.
const BATCH: u32 = 100;
/// Requests per purge transaction.
const PURGE_CHUNK: usize = 10;

/// Retention as the configuration file states it (`[retention]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Where archive files go [default: `archive/` beside the embedded database; required with
    /// rules on PostgreSQL].
    pub archive_dir: Option<PathBuf>,
    /// How often the server runs retention [default: 1h].
    pub every: Option<String>,
    /// Idempotency keys are kept this long [default: 48h; the API promises at least 24h].
    pub idempotency_keys: Option<String>,
    /// Delivered (or finally failed) notifications are kept this long [default: 30d].
    pub notifications: Option<String>,
    /// Spent single-use keys (replayed Slack signatures, used email links) [default: 30d].
    pub used_keys: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One rule: closed requests of `policy` (every policy when none) in one of `status` (every
/// closed status when none), last changed more than `older_than` ago, are archived.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub policy: Option<String>,
    pub status: Option<Vec<String>>,
    pub older_than: String,
}

/// A rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub policy: Option<String>,
    pub statuses: Vec<RequestStatus>,
    pub older_than: SignedDuration,
}

/// Retention, checked: what `run` does.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub archive_dir: PathBuf,
    pub every: std::time::Duration,
    pub idempotency_keys: SignedDuration,
    pub notifications: SignedDuration,
    pub used_keys: SignedDuration,
    pub rules: Vec<Rule>,
}

fn span(name: &str, value: Option<&str>, default: &str) -> Result<SignedDuration, String> {
    let text = value.unwrap_or(default);
    signoff_engine::duration::parse(text).map_err(|e| format!("retention.{name}: {e}"))
}

impl RetentionConfig {
    /// Checks every setting and names the bad one; `archive_default` is where archives go when
    /// the file does not say (none on PostgreSQL).
    pub fn check(&self, archive_default: Option<PathBuf>) -> Result<Retention, String> {
        let closed = [RequestStatus::Approved, RequestStatus::Rejected, RequestStatus::Expired, RequestStatus::Cancelled];
        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let statuses = match &r.status {
                None => closed.to_vec(),
                Some(list) => list
                    .iter()
                    .map(|s| match RequestStatus::parse(s) {
                        Some(RequestStatus::Pending) => Err(format!("retention.rules[{i}].status: a pending request is never archived")),
                        Some(s) => Ok(s),
                        None => Err(format!("retention.rules[{i}].status: `{s}` is not approved, rejected, expired or cancelled")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let older_than = signoff_engine::duration::parse(&r.older_than).map_err(|e| format!("retention.rules[{i}].older_than: {e}"))?;
            rules.push(Rule { policy: r.policy.clone(), statuses, older_than });
        }
        let archive_dir = match (&self.archive_dir, archive_default) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d,
            (None, None) if rules.is_empty() => PathBuf::new(),
            (None, None) => return Err("retention.archive_dir: set where archive files go (there is no default on PostgreSQL)".into()),
        };
        let every = span("every", self.every.as_deref(), "1h")?;
        Ok(Retention {
            archive_dir,
            every: every.try_into().map_err(|_| "retention.every: too long".to_string())?,
            idempotency_keys: span("idempotency_keys", self.idempotency_keys.as_deref(), "48h")?,
            notifications: span("notifications", self.notifications.as_deref(), "30d")?,
            used_keys: span("used_keys", self.used_keys.as_deref(), "30d")?,
            rules,
        })
    }
}

/// What one run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Requests archived and purged (dry: that would be, up to 1,000 per rule).
    pub requests: Vec<String>,
    pub archives: Vec<PathBuf>,
    pub pruned: Pruned,
}

/// How a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Change nothing; list what would go.
    Dry,
    /// As fast as it goes (nothing else is serving from the store).
    Full,
    /// After each batch, rest as long as the batch took, so that live traffic keeps most of
    /// the machine: how a serving server runs it.
    Paced,
}

/// Runs retention once as of `now`: prunes, then archives and purges each rule's requests in
/// batches.
pub async fn run(store: &dyn Store, retention: &Retention, key: Option<&SigningKey>, now: Timestamp, mode: Mode) -> Result<RunReport, String> {
    let dry = mode == Mode::Dry;
    let mut report = RunReport::default();
    if !dry {
        report.pruned = store
            .prune(now - retention.idempotency_keys, now - retention.notifications, now - retention.used_keys)
            .await
            .map_err(|e| format!("pruning: {e}"))?;
    }
    for rule in &retention.rules {
        loop {
            let ids = store
                .retention_candidates(rule.policy.as_deref(), &rule.statuses, now - rule.older_than, if dry { 1_000 } else { BATCH })
                .await
                .map_err(|e| e.to_string())?;
            if ids.is_empty() {
                break;
            }
            if dry {
                report.requests.extend(ids);
                break;
            }
            let started = std::time::Instant::now();
            let path = write_archive(store, &retention.archive_dir, &ids, key, now).await?;
            // (Reading an archive back is CPU work: off the runtime's threads, so live calls do
            // not wait behind it.)
            let (file, trusted) = (path.clone(), key.map(|k| k.verifying_key()));
            let checked = tokio::task::spawn_blocking(move || verify_archive(&file, trusted.as_ref())).await.map_err(|e| e.to_string())??;
            if checked.requests != ids.len() as u64 {
                return Err(format!("{}: holds {} requests, not {}; nothing was purged", path.display(), checked.requests, ids.len()));
            }
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            // (Ten requests to a transaction: each holds the writer a few milliseconds, not a
            // hundred.)
            for chunk in ids.chunks(PURGE_CHUNK) {
                store.purge(chunk, &name, now).await.map_err(|e| format!("purging what {} holds: {e}", path.display()))?;
            }
            tracing::info!(archive = %path.display(), requests = ids.len(), "archived and purged");
            report.requests.extend(ids);
            report.archives.push(path);
            if mode == Mode::Paced {
                tokio::time::sleep(started.elapsed()).await;
            }
        }
    }
    Ok(report)
}

/// The first line of an archive: the tree its proofs are for, and (with a signing key) that
/// tree's signed checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    created_at: Timestamp,
    log_size: u64,
    /// Hex.
    log_root: String,
    checkpoint: Option<Checkpoint>,
}

/// One request in an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Archived {
    request: String,
    events: Vec<Event>,
    inclusion: Vec<Inclusion>,
}

/// Writes `ids`' histories and proofs to a new archive file in `dir`, made durable before it
/// is named.
async fn write_archive(store: &dyn Store, dir: &Path, ids: &[String], key: Option<&SigningKey>, now: Timestamp) -> Result<PathBuf, String> {
    let size = catch_up(store).await.map_err(|e| e.to_string())?;
    let root = log::build(store, &merkle::root(size)).await.map_err(|e| e.to_string())?;
    let header = Header {
        format: FORMAT.into(),
        version: 1,
        created_at: now,
        log_size: size,
        log_root: hex::encode(root),
        checkpoint: key.map(|k| checkpoint::sign(k, ORIGIN, size, &root, &now.to_string())),
    };
    // What the archive holds, read first: every request's events, and every proof in one read.
    let mut requests = Vec::with_capacity(ids.len());
    let mut plans = Vec::new();
    for id in ids {
        let events = store.events(id).await.map_err(|e| e.to_string())?;
        let leaves = store.log_leaves_of(id).await.map_err(|e| e.to_string())?;
        plans.extend(leaves.iter().map(|l| merkle::inclusion_proof(l.index, size)));
        requests.push((id.clone(), events, leaves));
    }
    let mut proofs = log::build_many(store, &plans).await.map_err(|e| e.to_string())?.into_iter();
    let archived: Vec<Archived> = requests
        .into_iter()
        .map(|(request, events, leaves)| {
            let inclusion = leaves
                .iter()
                .map(|l| Inclusion { seq: l.seq, index: l.index, proof: proofs.next().unwrap_or_default().iter().map(hex::encode).collect() })
                .collect();
            Archived { request, events, inclusion }
        })
        .collect();
    // (Encoding, compressing, syncing and naming the file are CPU and disk work: off the
    // runtime's threads, so live calls do not wait behind them.)
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let path = (1..).map(|n| dir.join(format!("signoff-archive-{stamp}-{n:04}.ndjson.gz"))).find(|p| !p.exists()).expect("a free name");
        let partial = path.with_extension("gz.partial");
        let file = std::fs::File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        let mut out = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::default());
        let mut lines = vec![serde_json::to_string(&header).map_err(|e| e.to_string())?];
        for a in &archived {
            lines.push(serde_json::to_string(a).map_err(|e| e.to_string())?);
        }
        for l in lines {
            out.write_all(format!("{l}\n").as_bytes()).map_err(|e| format!("{}: {e}", partial.display()))?;
        }
        let file = out.finish().map_err(|e| format!("{}: {e}", partial.display()))?;
        let file = file.into_inner().map_err(|e| format!("{}: {e}", partial.display()))?;
        file.sync_all().map_err(|e| format!("{}: {e}", partial.display()))?;
        std::fs::rename(&partial, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(path)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// What an archive holds, once verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArchiveReport {
    pub requests: u64,
    pub events: u64,
    pub log_size: u64,
    /// Whether the archive's tree is signed (a checkpoint) and the signature holds.
    pub signed: bool,
}

/// Verifies an archive on its own: its checkpoint's signature (with `trusted`, the log's key,
/// when given), each request's chain and fold, and each event's inclusion proof against the
/// archive's tree. The error names the first thing that does not verify.
pub fn verify_archive(path: &Path, trusted: Option<&VerifyingKey>) -> Result<ArchiveReport, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let at = |n: usize| format!("{} line {n}", path.display());
    let first = lines.next().ok_or_else(|| format!("{}: empty", path.display()))?.map_err(|e| format!("{}: {e}", at(1)))?;
    let header: Header = serde_json::from_str(&first).map_err(|e| format!("{}: not a signoff archive: {e}", at(1)))?;
    if header.format != FORMAT {
        return Err(format!("{}: not a signoff archive", at(1)));
    }
    let root: Hash = hex::decode(&header.log_root).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| format!("{}: log_root is not a hash", at(1)))?;
    let mut report = ArchiveReport { log_size: header.log_size, ..ArchiveReport::default() };
    if let Some(c) = &header.checkpoint {
        c.verify(trusted).map_err(|e| format!("{}: {e}", at(1)))?;
        if c.size != header.log_size || c.root != header.log_root {
            return Err(format!("{}: the checkpoint is of another tree than the one the proofs are for", at(1)));
        }
        report.signed = true;
    }
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line.map_err(|e| format!("{}: {e}", at(n)))?;
        let a: Archived = serde_json::from_str(&line).map_err(|e| format!("{}: {e}", at(n)))?;
        verify_chain(&a.events).map_err(|e| format!("{}: request {}: {e}", at(n), a.request))?;
        RequestState::fold(&a.events).map_err(|e| format!("{}: request {}: {e}", at(n), a.request))?;
        for e in &a.events {
            let inc = a.inclusion.iter().find(|p| p.seq == e.seq).ok_or_else(|| format!("{}: request {} event {} has no proof", at(n), a.request, e.seq))?;
            let proof = inc.proof.iter().map(|h| hex::decode(h).ok().and_then(|b| <[u8; 32]>::try_from(b).ok())).collect::<Option<Vec<_>>>();
            let proof = proof.ok_or_else(|| format!("{}: request {} event {}: a malformed proof", at(n), a.request, e.seq))?;
            merkle::verify_inclusion(&signoff_audit::event_leaf(&a.request, e.seq, &e.hash), inc.index, header.log_size, &proof, &root)
                .map_err(|err| format!("{}: request {} event {}: {err}", at(n), a.request, e.seq))?;
        }
        report.requests += 1;
        report.events += a.events.len() as u64;
    }
    Ok(report)
}
