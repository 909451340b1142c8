//! `signoff verify`: checks the audit trail, offline over a database or online against a
//! server, and says what it found in words: exit 0 when everything verifies, 1 when something
//! does not (the first finding named first), 2 for bad usage.

use std::io::Write as _;
use std::path::Path;

use signoff_audit::checkpoint::Checkpoint;
use signoff_audit::merkle;
use signoff_server::audit::{ConsistencyProof, Problem, RequestVerification};

use crate::client::{Client, Failure};
use crate::{Remote, StoreArgs};

fn read_checkpoint(path: &Path) -> Result<Checkpoint, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--checkpoint {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "--checkpoint {}: not a checkpoint (the JSON of /v1/audit/checkpoint): {e}",
            path.display()
        )
    })
}

fn describe(p: &Problem) -> String {
    let place = match (&p.request, p.seq) {
        (Some(r), Some(s)) if r == signoff_store::log::DIRECTORY => format!("directory change {s}: "),
        (Some(r), Some(s)) => format!("request {r}, event {s}: "),
        (Some(r), None) => format!("request {r}: "),
        _ => "audit log: ".to_string(),
    };
    format!("{place}{} [{}]", p.detail, p.code)
}

fn report_problems(problems: &[Problem]) {
    println!(
        "NOT VERIFIED: {} problem{} found",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for (i, p) in problems.iter().enumerate().take(50) {
        println!(
            "{} {}",
            if i == 0 { "first:" } else { "      " },
            describe(p)
        );
    }
    if problems.len() > 50 {
        println!(
            "       … and {} more (--json lists them all)",
            problems.len() - 50
        );
    }
}

/// Verifies a whole database without changing it (a SQLite database is copied first, so a
/// server using it goes on serving).
pub async fn offline(db: &StoreArgs, checkpoint: Option<&Path>, json: bool) -> u8 {
    let kept = match checkpoint.map(read_checkpoint).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let (store, _copy) = match db.open_snapshot().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut progress = |n: u64| {
        if tty && n % 500 == 0 {
            eprint!("\rchecked {n} requests…");
        }
    };
    let report =
        match signoff_server::audit::verify_store(&*store, kept.as_ref(), &mut progress).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot read the database: {e}");
                return 2;
            }
        };
    if tty {
        eprint!("\r\x1b[K");
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"verified": report.verified(), "report": report})
        );
    } else if report.verified() {
        let against = match (&kept, report.checkpoint_size) {
            (Some(c), Some(n)) => format!(
                "; its first {n} events are exactly those the checkpoint of {} signed",
                c.time
            ),
            _ => String::new(),
        };
        let mut queued = if report.queued > 0 {
            format!(" ({} more still joining it)", report.queued)
        } else {
            String::new()
        };
        if report.archived > 0 {
            queued.push_str(&format!(", {} of them archived by retention", report.archived));
        }
        let what = match report.directory_changes {
            0 => format!("{} requests and {} events", report.requests, report.events),
            n => format!("{} requests, {} events and {n} directory change{}", report.requests, report.events, if n == 1 { "" } else { "s" }),
        };
        println!(
            "verified: {what}, every hash chain intact and every request as its events say; the audit log holds {} entries{queued}{against}",
            report.log_size
        );
    } else {
        report_problems(&report.problems);
    }
    if report.verified() { 0 } else { 1 }
}

/// Verifies one request on the server, or the server's log against a kept checkpoint.
pub async fn online(
    remote: &Remote,
    request: Option<&str>,
    checkpoint: Option<&Path>,
    save: Option<&Path>,
) -> u8 {
    let result: Result<bool, Failure> = async {
        let client = Client::from(remote)?;
        if let Some(id) = request {
            let answer = client.get::<RequestVerification>(&format!("/v1/requests/{id}/verify")).await?;
            let v = answer.value;
            if remote.json {
                println!("{}", answer.raw);
            } else if v.verified {
                println!(
                    "verified: request {} has {} events, its hash chain intact, its state as its events say, and each event in the audit log of {} events (root {})",
                    v.request, v.events, v.log_size, v.log_root
                );
            } else {
                report_problems(&v.problems);
            }
            return Ok(v.verified);
        }
        let kept = checkpoint.map(read_checkpoint).transpose().map_err(Failure::Usage)?;
        let current = client.get::<Checkpoint>("/v1/audit/checkpoint").await?.value;
        let trusted = kept.as_ref().map(|k| signoff_audit::checkpoint::public_key(&k.public_key)).transpose().map_err(|e| Failure::Usage(e.to_string()))?;
        let mut problems = Vec::new();
        if let Err(e) = current.verify(trusted.as_ref()) {
            problems.push(Problem { request: None, seq: None, code: "checkpoint_signature".into(), detail: format!("the server's checkpoint: {e}") });
        }
        if let Some(k) = &kept {
            if let Err(e) = k.verify(trusted.as_ref()) {
                problems.push(Problem { request: None, seq: None, code: "checkpoint_signature".into(), detail: format!("the kept checkpoint: {e}") });
            }
            if k.origin != current.origin {
                problems.push(Problem { request: None, seq: None, code: "checkpoint_mismatch".into(), detail: format!("the kept checkpoint is of log `{}`, the server's of `{}`", k.origin, current.origin) });
            } else if k.size > current.size {
                problems.push(Problem {
                    request: None,
                    seq: None,
                    code: "checkpoint_mismatch".into(),
                    detail: format!("the log shrank from {} events (kept checkpoint of {}) to {}: events were removed", k.size, k.time, current.size),
                });
            } else {
                let proof = client.get::<ConsistencyProof>(&format!("/v1/audit/consistency?from={}&to={}", k.size, current.size)).await?.value;
                let hashes = proof.proof.iter().map(|h| hex::decode(h).ok().and_then(|b| <[u8; 32]>::try_from(b).ok())).collect::<Option<Vec<_>>>();
                let roots = (k.root_hash(), current.root_hash());
                let verdict = match (hashes, roots) {
                    (Some(hashes), (Ok(old), Ok(new))) => merkle::verify_consistency(k.size, current.size, &old, &new, &hashes).map_err(|e| e.to_string()),
                    _ => Err("the server's proof is malformed".into()),
                };
                if let Err(e) = verdict {
                    problems.push(Problem {
                        request: None,
                        seq: None,
                        code: "checkpoint_mismatch".into(),
                        detail: format!("the log of {} events is not an extension of the one the kept checkpoint of {} signed ({e}): events it covered were removed, changed or reordered", current.size, k.time),
                    });
                }
            }
        }
        if problems.is_empty() {
            if let Some(path) = save {
                let text = serde_json::to_string_pretty(&current).expect("a checkpoint serializes");
                std::fs::write(path, text + "\n").map_err(|e| Failure::Usage(format!("--save {}: {e}", path.display())))?;
            }
            match &kept {
                Some(k) => println!(
                    "verified: the audit log grew from {} events (checkpoint of {}) to {} and nothing before was removed, changed or reordered; key {}",
                    k.size, k.time, current.size, current.key_id
                ),
                None => println!(
                    "verified: the server's checkpoint of {} events is signed by key {} (keep it: `--save FILE`, then `--checkpoint FILE` later proves the log only grew)",
                    current.size, current.key_id
                ),
            }
        } else {
            report_problems(&problems);
        }
        Ok(problems.is_empty())
    }
    .await;
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(f) => f.report(),
    }
}

/// What `signoff audit export` asks for.
pub struct ExportArgs<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub status: Option<&'a str>,
    pub cursor: u64,
    pub output: Option<&'a Path>,
}

/// Times an export picks up again where its stream broke off before giving up.
const EXPORT_RETRIES: u32 = 5;

/// `signoff audit export`: the server's audit trail as NDJSON to a file or standard output,
/// resumed from the last record after a broken stream, with a progress line on a terminal.
pub async fn export(remote: &Remote, args: ExportArgs<'_>) -> u8 {
    let result: Result<(u64, u64), Failure> = async {
        let client = Client::from(remote)?;
        let mut out: Box<dyn std::io::Write> = match args.output {
            Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| Failure::Usage(format!("--output {}: {e}", p.display())))?)),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        // The log's size, for the progress line (the export may end a little past it).
        let size = if tty { client.get::<Checkpoint>("/v1/audit/checkpoint").await.map(|c| c.value.size).unwrap_or(0) } else { 0 };
        let mut query: Vec<(&str, String)> = Vec::new();
        for (name, value) in [("from", args.from), ("to", args.to), ("policy", args.policy), ("type", args.kind), ("actor", args.actor), ("status", args.status)] {
            if let Some(v) = value {
                query.push((name, v.to_string()));
            }
        }
        let (mut cursor, mut records, mut retries) = (args.cursor, 0u64, 0);
        loop {
            let mut q = query.clone();
            q.push(("cursor", cursor.to_string()));
            let path = format!("/v1/audit/events?{}", serde_urlencoded::to_string(&q).expect("query pairs encode"));
            let mut resp = client.stream(&path).await?;
            let mut pending = Vec::new();
            let mut complete = false;
            loop {
                let chunk = match resp.chunk().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(_) => break,
                };
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let value: serde_json::Value = serde_json::from_slice(&line).map_err(|e| Failure::Unreachable(format!("the export sent a line that is not JSON: {e}")))?;
                    if value["complete"] == true {
                        complete = true;
                        cursor = value["cursor"].as_u64().unwrap_or(cursor);
                        continue;
                    }
                    if let Some(e) = value["error"].as_str() {
                        return Err(Failure::Unreachable(format!("the server could not read its store at log index {cursor}: {e}")));
                    }
                    out.write_all(&line).map_err(|e| Failure::Usage(format!("write: {e}")))?;
                    records += 1;
                    cursor = value["index"].as_u64().map_or(cursor, |i| i + 1);
                    if tty && records % 1000 == 0 {
                        let share = if size > 0 { format!(" ({}%)", (cursor * 100 / size.max(1)).min(100)) } else { String::new() };
                        eprint!("\rexported {records} records, log index {cursor}{share}…");
                    }
                }
            }
            if complete {
                break;
            }
            retries += 1;
            if retries > EXPORT_RETRIES {
                return Err(Failure::Unreachable(format!("the export broke off {EXPORT_RETRIES} times; resume it with --cursor {cursor}")));
            }
            eprintln!("{}the export broke off at log index {cursor}; resuming", if tty { "\r\x1b[K" } else { "" });
        }
        out.flush().map_err(|e| Failure::Usage(format!("write: {e}")))?;
        if tty {
            eprint!("\r\x1b[K");
        }
        Ok((records, cursor))
    }
    .await;
    match result {
        Ok((records, cursor)) => {
            eprintln!("exported records={records} next_cursor={cursor}");
            0
        }
        Err(f) => f.report(),
    }
}

/// `signoff verify --archive`: one archive file on its own.
pub fn archive(path: &Path, checkpoint: Option<&Path>) -> u8 {
    let trusted = match checkpoint.map(read_checkpoint).transpose().and_then(|c| c.map(|c| signoff_audit::checkpoint::public_key(&c.public_key).map_err(|e| e.to_string())).transpose()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match signoff_server::retention::verify_archive(path, trusted.as_ref()) {
        Ok(r) => {
            println!(
                "verified: {} holds {} requests and {} events, every hash chain intact and every event proven in the audit log of {} events{}",
                path.display(),
                r.requests,
                r.events,
                r.log_size,
                if r.signed { " (signed checkpoint)" } else { " (no signed checkpoint: the server had no key)" }
            );
            0
        }
        Err(e) => {
            println!("NOT VERIFIED: {e}");
            1
        }
    }
}

/// `signoff verify --export`: an export file on its own.
pub async fn export_file(path: &Path) -> u8 {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --export {}: {e}", path.display());
            return 2;
        }
    };
    match signoff_server::transfer::check(&mut std::io::BufReader::new(file)).await {
        Ok(c) => {
            println!(
                "verified: {} holds {} requests and {} events ({} policies), every hash chain intact and every request as its events say",
                path.display(),
                c.requests,
                c.events,
                c.policies
            );
            0
        }
        Err(e) => {
            println!("NOT VERIFIED: {}: {e}", path.display());
            1
        }
    }
}
