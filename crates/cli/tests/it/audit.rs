//! `signoff verify` through the real binary: keep a checkpoint, let the log grow, prove it only
//! grew; verify one request; verify the whole database offline, before and after someone
//! changes it behind signoff's back.

use std::process::Command;

use signoff_testkit::binary::Server;

const BIN: &str = env!("CARGO_BIN_EXE_signoff");

fn submit(server: &Server, dir: &std::path::Path) -> String {
    let quote = dir.join("quote.json");
    std::fs::write(&quote, include_str!("../../../../examples/requests/quote-discount.json")).unwrap();
    let (code, out, err) = server.client("alice-token", &["submit", "--policy", "quote-discount", "--context", quote.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    out.split_whitespace().find_map(|kv| kv.strip_prefix("request=")).unwrap().to_string()
}

fn offline(data: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(["verify", "--data"]).arg(data).args(extra).output().unwrap();
    (out.status.code().unwrap(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn verify_keeps_a_checkpoint_proves_the_log_only_grew_and_finds_a_changed_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(BIN, &data);
    let first = submit(&server, dir.path());
    let kept = dir.path().join("checkpoint.json");
    let kept_arg = kept.to_str().unwrap();

    let (code, out, err) = server.client("lena-token", &["verify", "--save", kept_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("verified: the server's checkpoint of "), "{out}");
    let checkpoint: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert!(checkpoint["size"].as_u64().unwrap() > 0 && checkpoint["signature"].is_string(), "{checkpoint}");

    // The log grows; the kept checkpoint proves nothing before it changed.
    let (code, _, _) = server.client("mark-token", &["action", &first, "--step", "manager", "--action", "approve"]);
    assert_eq!(code, 0);
    let second = submit(&server, dir.path());
    let (code, out, err) = server.client("lena-token", &["verify", "--checkpoint", kept_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("grew from {} events", checkpoint["size"])), "{out}");

    let (code, out, err) = server.client("alice-token", &["verify", "--request", &second]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("verified: request {second} has ")), "{out}");
    let (code, _, err) = server.client("lena-token", &["verify", "--request", &second]);
    assert_eq!(code, 1, "another's request is not found: {err}");

    // Offline, while the server runs (the database is copied first), and after it stops.
    let (code, out) = offline(&data, &["--checkpoint", kept_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified: 2 requests and ") && out.contains("exactly those the checkpoint of"), "{out}");
    drop(server);

    // Someone approves the second request in the database itself.
    let db = rusqlite::Connection::open(data.join("signoff.db")).unwrap();
    db.execute("UPDATE requests SET status = 'approved', state = json_set(state, '$.status', 'approved') WHERE id = ?1", [&second]).unwrap();
    drop(db);
    let (code, out) = offline(&data, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("NOT VERIFIED: 1 problem found\nfirst: request "), "{out}");
    assert!(out.contains(&second) && out.contains("[state_altered]"), "{out}");

    // A checkpoint file that is not one is a usage error, named.
    std::fs::write(&kept, "{}").unwrap();
    let (code, out) = offline(&data, &["--checkpoint", kept_arg]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a checkpoint"), "{out}");
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.code().unwrap(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_backup_is_a_verified_copy_and_a_failed_import_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(BIN, &data);
    submit(&server, dir.path());
    let newest = submit(&server, dir.path());

    // Backed up while the server runs; the copy opens and verifies.
    let copy = dir.path().join("backup.db");
    let copy_arg = copy.to_str().unwrap();
    let (code, out) = run(&["backup", "--data", data.to_str().unwrap(), "--out", copy_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("backed up ") && out.contains("audit.key"), "{out}");
    let (code, out) = run(&["backup", "--data", data.to_str().unwrap(), "--out", copy_arg]);
    assert_eq!(code, 2, "never overwrites: {out}");
    let (code, out) = run(&["verify", "--database-url", &format!("sqlite://{copy_arg}")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified: 2 requests"), "{out}");

    // An export whose last request was damaged: nothing of it is imported.
    let export = dir.path().join("export.jsonl");
    let (code, out) = run(&["export", "--data", data.to_str().unwrap(), "--out", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    drop(server);
    let text = std::fs::read_to_string(&export).unwrap();
    let last = text.lines().last().unwrap().to_string();
    assert!(last.contains(&newest), "the newest request is exported last, after one that would be imported first: {last}");
    let damaged = text.replace(&last, &last.replacen("\"actor\":\"alice\"", "\"actor\":\"mallory\"", 1));
    assert_ne!(damaged, text);
    let (code, out) = run(&["verify", "--export", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("holds 2 requests"), "{out}");
    std::fs::write(&export, damaged).unwrap();
    let (code, out) = run(&["verify", "--export", export.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let last_line = format!("line {}:", text.lines().count());
    assert!(out.starts_with("NOT VERIFIED: ") && out.contains(&last_line), "the damaged line is named: {out}");
    let target = dir.path().join("target");
    let (code, out) = run(&["import", "--data", target.to_str().unwrap(), "--in", export.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nothing was imported"), "{out}");
    let (code, out) = run(&["export", "--data", target.to_str().unwrap(), "--out", dir.path().join("empty.jsonl").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("exported requests=0 events=0"), "the target is as it was: {out}");
}

#[test]
fn audit_export_writes_every_record_and_only_admins_may() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    let id = submit(&server, dir.path());
    let (code, _, _) = server.client("mark-token", &["action", &id, "--step", "manager", "--action", "approve"]);
    assert_eq!(code, 0);
    let out_file = dir.path().join("audit.ndjson");
    let (code, _, err) = server.client("root-token", &["audit", "export", "--output", out_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.len() >= 4 && records.iter().all(|r| r["request"] == id.as_str()), "{text}");
    assert!(err.contains(&format!("exported records={} next_cursor={}", records.len(), records.len())), "{err}");
    let (code, out, _) = server.client("root-token", &["audit", "export", "--type", "approved"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("\"actor\":\"mark\""), "{out}");
    assert!(out.contains("\"user_agent\":\"signoff-cli/"), "the CLI names itself in the origin: {out}");
    let (code, _, err) = server.client("alice-token", &["audit", "export"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("forbidden"), "{err}");
}

#[test]
fn retention_run_archives_closed_requests_and_everything_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(BIN, &data);
    let closed = submit(&server, dir.path());
    let (code, _, _) = server.client("alice-token", &["action", &closed, "--action", "cancel", "--comment", "not needed"]);
    assert_eq!(code, 0);
    let open = submit(&server, dir.path());
    let kept = dir.path().join("checkpoint.json");
    let (code, _, err) = server.client("lena-token", &["verify", "--save", kept.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    drop(server);

    let config = dir.path().join("signoff.toml");
    std::fs::write(&config, "[retention]\n[[retention.rules]]\nstatus = [\"cancelled\"]\nolder_than = \"30d\"\n").unwrap();
    let base = ["retention", "run", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()];
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 31)).to_string();
    let (code, out) = run(&[&base[..], &["--dry-run", "--as-of", &soon]].concat());
    assert_eq!((code, out.trim()), (0, "would archive 0 requests"), "{out}");
    let (code, out) = run(&[&base[..], &["--dry-run", "--as-of", &later]].concat());
    assert_eq!((code, out.trim().to_string()), (0, format!("would archive 1 requests: {closed}")), "{out}");
    let (code, out) = run(&[&base[..], &["--as-of", &later]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("archived 1 requests into 1 archive files in "), "{out}");

    let archive = std::fs::read_dir(data.join("archive")).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with(".ndjson.gz")).unwrap();
    let (code, out) = run(&["verify", "--archive", archive.to_str().unwrap(), "--checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("holds 1 requests") && out.contains("(signed checkpoint)"), "{out}");
    let (code, out) = run(&["verify", "--data", data.to_str().unwrap(), "--checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified: 1 requests") && out.contains("archived by retention"), "{out}");

    // The pending request is still there, the cancelled one gone.
    let server = Server::start(BIN, &data);
    assert_eq!(server.client("alice-token", &["status", &open]).0, 0);
    assert_eq!(server.client("alice-token", &["status", &closed]).0, 1);
    // A bad rule is named.
    std::fs::write(&config, "[retention]\n[[retention.rules]]\nstatus = [\"pending\"]\nolder_than = \"30d\"\n").unwrap();
    let (code, out) = run(&base);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("retention.rules[0].status: a pending request is never archived"), "{out}");
}
