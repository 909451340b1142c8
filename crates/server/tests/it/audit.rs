//! The audit trail under attack: a store is written through the real service, copied, and
//! each copy damaged the way an attacker with database access would (one byte of one event,
//! a deleted request, two events swapped, a state row rewritten, a whole history rewritten
//! with its log rebuilt). Verification must find every one, name it, and pass a clean store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, params};
use serde_json::json;
use signoff_audit::checkpoint::Checkpoint;
use signoff_server::audit::{StoreVerification, verify_store};
use signoff_store::Store;
use signoff_store_sqlite::SqliteStore;
use signoff_testkit::app::{App, quote, spawn_app};

/// An app with history: approved, rejected and pending requests, every event in the log.
async fn history() -> (App, Checkpoint) {
    let app = spawn_app().await;
    for i in 0..4 {
        let r = app.submit("alice", "quote-discount", quote(0.18, 0.21 + i as f64 / 100.0)).await;
        let id = r["id"].as_str().unwrap();
        match i {
            0 => {
                app.approve("mark", id, "manager").await;
                app.approve("fiona", id, "finance").await;
            }
            1 => {
                app.act("mark", id, json!({"action": "reject", "step": "manager", "comment": "no"})).await;
            }
            _ => {}
        }
    }
    let checkpoint = app.service.audit_checkpoint().await.unwrap();
    (app, checkpoint)
}

fn db_of(app: &App) -> PathBuf {
    app.dir.path().join("signoff.db")
}

/// A copy of `db`, changed by `tamper`, verified (against `kept`, if given).
async fn verify_copy(db: &Path, kept: Option<&Checkpoint>, tamper: impl FnOnce(&Connection)) -> StoreVerification {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    SqliteStore::snapshot(db, &copy).unwrap();
    tamper(&Connection::open(&copy).unwrap());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&copy).unwrap());
    verify_store(&*store, kept, &mut |_| {}).await.unwrap()
}

fn codes(v: &StoreVerification) -> Vec<&str> {
    v.problems.iter().map(|p| p.code.as_str()).collect()
}

fn events(c: &Connection) -> Vec<(String, i64, String)> {
    let mut s = c.prepare("SELECT request_id, seq, body FROM events ORDER BY request_id, seq").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// `text` with the ASCII byte at about `at` (of 1) replaced by another of its kind, so that
/// the row stays text.
fn one_byte_changed(text: &str, at: f64) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut i = ((bytes.len() - 1) as f64 * at) as usize;
    while !bytes[i].is_ascii() {
        i += 1;
    }
    bytes[i] = match bytes[i] {
        b'0'..=b'8' => bytes[i] + 1,
        b'9' => b'0',
        b'a'..=b'y' => bytes[i] + 1,
        b'z' => b'a',
        b'A'..=b'Z' => bytes[i].to_ascii_lowercase(),
        _ => b'x',
    };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_store_verifies_and_every_kind_of_tampering_is_found() {
    let (app, checkpoint) = history().await;
    let db = db_of(&app);
    let clean = verify_copy(&db, Some(&checkpoint), |_| {}).await;
    assert!(clean.verified(), "{:?}", clean.problems);
    assert_eq!((clean.requests, clean.log_size, clean.checkpoint_size), (4, clean.events, Some(clean.events)));

    // One byte of one event, for every event and three places in each: found every time.
    let all = events(&Connection::open(&db).unwrap());
    let mut tried = 0;
    for (request, seq, body) in &all {
        for at in [0.1, 0.5, 0.9] {
            let changed = one_byte_changed(body, at);
            let v = verify_copy(&db, None, |c| {
                c.execute("UPDATE events SET body = ?3 WHERE request_id = ?1 AND seq = ?2", params![request, seq, changed]).unwrap();
            })
            .await;
            assert!(!v.verified(), "a change at {at} of {request}#{seq} went unnoticed:\n{body}\n{changed}");
            assert!(v.problems.iter().any(|p| p.request.as_deref() == Some(request.as_str())), "{request}#{seq}: {:?}", v.problems);
            tried += 1;
        }
    }
    assert!(tried >= 30, "{tried}");

    // A deleted request: its logged events are missing.
    let (victim, _, _) = &all[0];
    let v = verify_copy(&db, None, |c| {
        c.execute("DELETE FROM events WHERE request_id = ?1", [victim]).unwrap();
        c.execute("DELETE FROM requests WHERE id = ?1", [victim]).unwrap();
    })
    .await;
    assert!(codes(&v).contains(&"event_missing"), "{:?}", v.problems);
    assert_eq!(v.problems[0].request.as_deref(), Some(victim.as_str()));

    // Two events of the log swapped: the stored tree and the checkpoint disagree.
    let v = verify_copy(&db, Some(&checkpoint), |c| {
        c.execute_batch(
            "UPDATE audit_leaves SET idx = -1 WHERE idx = 1; UPDATE audit_leaves SET idx = 1 WHERE idx = 2; UPDATE audit_leaves SET idx = 2 WHERE idx = -1;",
        )
        .unwrap();
    })
    .await;
    assert!(codes(&v).contains(&"tree_altered") && codes(&v).contains(&"checkpoint_mismatch"), "{:?}", v.problems);
    // Two events of one request swapped: its chain breaks.
    let (request, _, _) = all.iter().find(|(r, s, _)| *s == 3 && all.iter().any(|(r2, s2, _)| r2 == r && *s2 == 2)).unwrap();
    let v = verify_copy(&db, None, |c| {
        c.execute_batch(&format!(
            "UPDATE events SET seq = -1 WHERE request_id = '{request}' AND seq = 2; UPDATE events SET seq = 2 WHERE request_id = '{request}' AND seq = 3; UPDATE events SET seq = 3 WHERE request_id = '{request}' AND seq = -1;"
        ))
        .unwrap();
    })
    .await;
    assert!(!v.verified() && v.problems.iter().any(|p| p.request.as_deref() == Some(request.as_str())), "{:?}", v.problems);

    // A pending request's stored state rewritten to approved.
    let pending: String = Connection::open(&db).unwrap().query_row("SELECT id FROM requests WHERE status = 'pending' LIMIT 1", [], |r| r.get(0)).unwrap();
    let v = verify_copy(&db, None, |c| {
        c.execute("UPDATE requests SET status = 'approved', state = json_set(state, '$.status', 'approved') WHERE id = ?1", [&pending]).unwrap();
    })
    .await;
    assert_eq!(codes(&v), ["state_altered"], "{:?}", v.problems);
    assert!(v.problems[0].detail.contains("status approved") && v.problems[0].detail.contains("status pending"), "{}", v.problems[0].detail);

    // The careful attacker: a request deleted and the whole log rebuilt from what is left. The
    // store agrees with itself; only a checkpoint kept from before shows it.
    let rebuilt = |c: &Connection| {
        c.execute("DELETE FROM events WHERE request_id = ?1", [victim]).unwrap();
        c.execute("DELETE FROM requests WHERE id = ?1", [victim]).unwrap();
        c.execute_batch(
            "DELETE FROM audit_leaves; DELETE FROM audit_nodes; DELETE FROM audit_queue;
             INSERT INTO audit_queue (request_id, seq) SELECT request_id, seq FROM events ORDER BY request_id, seq;",
        )
        .unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("rebuilt.db");
    SqliteStore::snapshot(&db, &copy).unwrap();
    rebuilt(&Connection::open(&copy).unwrap());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&copy).unwrap());
    signoff_server::audit::catch_up(&*store).await.unwrap();
    assert!(verify_store(&*store, None, &mut |_| {}).await.unwrap().verified(), "consistent with itself");
    let v = verify_store(&*store, Some(&checkpoint), &mut |_| {}).await.unwrap();
    assert_eq!(codes(&v), ["checkpoint_mismatch"], "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_verifies_online_with_its_proofs_and_a_rewritten_state_is_named() {
    let (app, checkpoint) = history().await;
    assert_eq!(checkpoint.verify(None), Ok(()));
    let (status, list) = app.get("alice", "/v1/requests?status=pending").await;
    assert_eq!(status, 200);
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    let (status, v) = app.get("alice", &format!("/v1/requests/{id}/verify")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verified"], true, "{v}");
    // Each inclusion proof checks against the root the answer names.
    let root: [u8; 32] = hex::decode(v["log_root"].as_str().unwrap()).unwrap().try_into().unwrap();
    let size = v["log_size"].as_u64().unwrap();
    let events = app.service.store().events(&id).await.unwrap();
    for (e, inc) in events.iter().zip(v["inclusion"].as_array().unwrap()) {
        let proof: Vec<[u8; 32]> = inc["proof"].as_array().unwrap().iter().map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap()).collect();
        let leaf = signoff_audit::event_leaf(&id, e.seq, &e.hash);
        assert_eq!(signoff_audit::merkle::verify_inclusion(&leaf, inc["index"].as_u64().unwrap(), size, &proof, &root), Ok(()));
    }
    // Someone outside signoff approves it in the database: the server's own cached copy does
    // not hide it.
    Connection::open(db_of(&app))
        .unwrap()
        .execute("UPDATE requests SET status = 'approved', state = json_set(state, '$.status', 'approved') WHERE id = ?1", [&id])
        .unwrap();
    let (_, v) = app.get("alice", &format!("/v1/requests/{id}/verify")).await;
    assert_eq!((v["verified"].clone(), v["problems"][0]["code"].clone()), (json!(false), json!("state_altered")), "{v}");
    // Others may not look; a stranger's request is not found.
    assert_eq!(app.get("bob", &format!("/v1/requests/{id}/verify")).await.0, 404);

    // The consistency proof from this checkpoint to a later one verifies.
    app.submit("alice", "quote-discount", quote(0.18, 0.3)).await;
    let later = app.service.audit_checkpoint().await.unwrap();
    let (status, proof) = app.get("bob", &format!("/v1/audit/consistency?from={}&to={}", checkpoint.size, later.size)).await;
    assert_eq!(status, 200);
    let proof: Vec<[u8; 32]> = proof["proof"].as_array().unwrap().iter().map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap()).collect();
    assert_eq!(signoff_audit::merkle::verify_consistency(checkpoint.size, later.size, &checkpoint.root_hash().unwrap(), &later.root_hash().unwrap(), &proof), Ok(()));
    let (status, bad) = app.get("bob", &format!("/v1/audit/consistency?from={}", later.size + 1)).await;
    assert_eq!((status.as_u16(), bad["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_instances_append_one_log_in_one_order() {
    use signoff_server::service::{ActionBody, Caller, SubmitBody};
    use signoff_server::{Config, Database, Sources, SystemClock};
    let Some(db) = signoff_store_postgres::testing::TestDatabase::create("one audit log for two instances") else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = Config { audit_key: Some(keys.path().join("audit.key")), ..Config::new(Database::Postgres(db.url.clone()), Sources::default()) };
    let (a, b) = (signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap(), signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap());
    let alice = Caller { id: "alice".into(), admin: false, origin: None };
    let mark = Caller { id: "mark".into(), admin: false, origin: None };
    let first = a.audit_checkpoint().await.unwrap();
    // Both instances write at once, and both sequence at once.
    let work = |s: Arc<signoff_server::Service>, n: usize| {
        let (alice, mark) = (alice.clone(), mark.clone());
        async move {
            for i in 0..n {
                let body = SubmitBody { policy: "quote-discount".into(), title: None, subject: Some(format!("S-{i}")), context: quote(0.18, 0.21), evidence: vec![], resubmits: None };
                let id = s.submit(&alice, body, None).await.unwrap().json()["id"].as_str().unwrap().to_string();
                s.act(&mark, &id, ActionBody::Approve { step: "manager".into(), comment: None, edits: None }, None).await.unwrap();
                signoff_server::audit::catch_up(&**s.store()).await.unwrap();
            }
        }
    };
    tokio::join!(work(a.clone(), 10), work(b.clone(), 10));
    let (ca, cb) = (a.audit_checkpoint().await.unwrap(), b.audit_checkpoint().await.unwrap());
    assert_eq!((ca.size, &ca.root, &ca.public_key), (cb.size, &cb.root, &cb.public_key), "one tree, one key");
    let proof = a.audit_consistency(first.size, Some(ca.size)).await.unwrap();
    let proof: Vec<[u8; 32]> = proof.proof.iter().map(|h| hex::decode(h).unwrap().try_into().unwrap()).collect();
    assert_eq!(signoff_audit::merkle::verify_consistency(first.size, ca.size, &first.root_hash().unwrap(), &ca.root_hash().unwrap(), &proof), Ok(()));
    let report = verify_store(&**a.store(), Some(&ca), &mut |_| {}).await.unwrap();
    assert!(report.verified(), "{:?}", report.problems);
    assert_eq!((report.requests, report.log_size), (20, report.events));
    drop((a, b, db));
}

/// The NDJSON lines of an export, the last (`complete`) one apart.
async fn export(app: &App, query: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let resp = app.http.get(format!("{}/v1/audit/events{query}", app.url)).bearer_auth("root-token").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{query}");
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.pop().unwrap();
    assert_eq!(last["complete"], true, "{text}");
    assert_eq!(last["records"].as_u64().unwrap() as usize, lines.len());
    (lines, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_export_streams_every_event_filtered_and_resumable() {
    let (app, checkpoint) = history().await;
    let (all, last) = export(&app, "").await;
    assert_eq!(all.len() as u64, checkpoint.size, "every event, once");
    assert_eq!(last["cursor"].as_u64(), Some(checkpoint.size));
    assert_eq!(all.iter().map(|r| r["index"].as_u64().unwrap()).collect::<Vec<_>>(), (0..checkpoint.size).collect::<Vec<_>>(), "in log order");
    // Each record carries its request's policy and the hash of what was submitted.
    for r in &all {
        let id = r["request"].as_str().unwrap();
        let events = app.service.store().events(id).await.unwrap();
        let signoff_engine::EventKind::Submitted { policy, context, .. } = &events[0].kind else { panic!() };
        assert_eq!(r["policy"]["hash"].as_str(), Some(policy.hash.as_str()));
        assert_eq!(r["payload_hash"].as_str(), Some(signoff_engine::canonical::digest(context).as_str()));
        assert_eq!(r["event"], serde_json::to_value(&events[r["seq"].as_u64().unwrap() as usize - 1]).unwrap());
    }
    let decided: Vec<_> = all.iter().filter(|r| r["type"] == "completed").map(|r| r["decision"].as_str().unwrap()).collect();
    assert_eq!(decided.len(), 2);
    assert!(decided.contains(&"approved") && decided.contains(&"rejected"), "{decided:?}");
    assert!(all.iter().filter(|r| r["type"] == "step_activated").all(|r| r["approvers"].is_array()));

    // Filters.
    let (approved, _) = export(&app, "?type=approved").await;
    assert_eq!(approved.len(), 2);
    let (by_mark, _) = export(&app, "?actor=mark").await;
    assert!(!by_mark.is_empty() && by_mark.iter().all(|r| r["actor"] == "mark"));
    let (pending, _) = export(&app, "?status=pending").await;
    assert_eq!(pending.iter().map(|r| r["request"].as_str().unwrap()).collect::<std::collections::BTreeSet<_>>().len(), 2);
    assert!(export(&app, "?policy=deploy-guard").await.0.is_empty());
    let first_at = all[0]["at"].as_str().unwrap();
    let (before, _) = export(&app, &format!("?to={first_at}")).await;
    assert!(before.is_empty(), "`to` is exclusive");
    let (since, _) = export(&app, &format!("?from={first_at}")).await;
    assert_eq!(since.len(), all.len());

    // Resuming after the third record gives exactly the rest.
    let (rest, _) = export(&app, &format!("?cursor={}", all[2]["index"].as_u64().unwrap() + 1)).await;
    assert_eq!(rest, all[3..].to_vec());

    // Where each call came from is in the chain: the submission's peer, and a call's user agent
    // and proxy header as sent; the system's own events carry none.
    // (The last request submitted is still pending.)
    let submitted = all.iter().rev().find(|r| r["type"] == "submitted").unwrap();
    assert_eq!(submitted["origin"]["address"], "127.0.0.1", "{submitted}");
    assert!(all.iter().filter(|r| r["actor"] == "system").all(|r| r["origin"].is_null()));
    let id = submitted["request"].as_str().unwrap();
    let resp = app
        .http
        .post(format!("{}/v1/requests/{id}/actions", app.url))
        .bearer_auth("alice-token")
        .header("user-agent", "audit-test/1.0")
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"action": "comment", "comment": "for the record"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let (commented, _) = export(&app, "?type=commented").await;
    assert_eq!(commented.len(), 1);
    assert_eq!(commented[0]["origin"], json!({"address": "127.0.0.1", "forwarded_for": "203.0.113.9", "user_agent": "audit-test/1.0"}));
    let verified = app.service.store().events(id).await.unwrap();
    signoff_engine::event::verify_chain(&verified).unwrap();

    // Refusals.
    assert_eq!(app.get("alice", "/v1/audit/events").await.0, 403);
    let (status, bad) = app.get("root", "/v1/audit/events?from=yesterday").await;
    assert_eq!((status.as_u16(), bad["code"].as_str()), (400, Some("bad_parameter")), "{bad}");
    assert_eq!(app.get("root", "/v1/audit/events?status=asleep").await.0, 400);
}

/// Changes to the directory made through the API are audited like events: leaves of the same
/// log (under the name `directory`), in the export with who, when and from where, and checked
/// by verification, which finds one changed, removed or dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_changes_are_leaves_of_the_log_exported_and_verified() {
    let (app, before) = history().await;
    let (status, _) = app.call("root", reqwest::Method::PUT, "/v1/admin/users/nia", Some(json!({"name": "Nia Okafor"})), None).await;
    assert_eq!(status, 200);
    let (status, _) = app.call("root", reqwest::Method::PUT, "/v1/admin/users/omar", Some(json!({"name": "Omar"})), None).await;
    assert_eq!(status, 200);
    let checkpoint = app.service.audit_checkpoint().await.unwrap();
    assert_eq!(checkpoint.size, before.size + 2, "each change is a leaf");

    let (all, _) = export(&app, "").await;
    assert_eq!(all.len() as u64, checkpoint.size);
    let changes: Vec<_> = all.iter().filter(|r| r["type"] == "directory_changed").collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    for (i, r) in changes.iter().enumerate() {
        assert_eq!((r["request"].as_str(), r["seq"].as_u64(), r["actor"].as_str()), (Some("directory"), Some(i as u64 + 1), Some("root")), "{r}");
        assert_eq!(r["origin"]["address"], "127.0.0.1", "{r}");
        assert_eq!(r["directory_change"]["change"]["op"], "put_user", "{r}");
        assert_eq!(r["directory_change"]["at"], r["at"]);
        assert!(r.get("policy").is_none() && r.get("status").is_none() && r.get("event").is_none(), "{r}");
    }
    assert_eq!(changes[1]["directory_change"]["prev"], changes[0]["directory_change"]["hash"]);
    assert_eq!(export(&app, "?type=directory_changed").await.0.len(), 2);
    assert_eq!(export(&app, "?actor=root").await.0.len(), 2);
    assert!(export(&app, "?policy=quote-discount").await.0.iter().all(|r| r["type"] != "directory_changed"));
    assert!(export(&app, "?status=pending").await.0.iter().all(|r| r["type"] != "directory_changed"));

    // The analytics follower reads past them.
    let projection = signoff_server::insights::Projection::default();
    assert_eq!(projection.refresh(&**app.service.store()).await.unwrap(), checkpoint.size);
    assert_eq!(projection.snapshot().len(), 4);

    let db = db_of(&app);
    let clean = verify_copy(&db, Some(&checkpoint), |_| {}).await;
    assert!(clean.verified(), "{:?}", clean.problems);
    assert_eq!((clean.directory_changes, clean.log_size), (2, clean.events + 2));

    let on_directory = |v: &StoreVerification| v.problems.iter().filter(|p| p.request.as_deref() == Some("directory")).map(|p| (p.code.clone(), p.seq)).collect::<Vec<_>>();
    // A change rewritten (who made it): its hash no longer holds.
    let v = verify_copy(&db, None, |c| {
        c.execute("UPDATE directory_changes SET body = replace(body, '\"actor\":\"root\"', '\"actor\":\"mark\"') WHERE seq = 1", []).unwrap();
    })
    .await;
    assert_eq!(on_directory(&v), [("event_altered".to_string(), Some(1))], "{:?}", v.problems);
    // The first change removed: the numbers have a gap.
    let v = verify_copy(&db, None, |c| {
        c.execute("DELETE FROM directory_changes WHERE seq = 1", []).unwrap();
    })
    .await;
    assert_eq!(on_directory(&v), [("sequence_gap".to_string(), Some(1))], "{:?}", v.problems);
    // The last one removed: the chain that is left holds, but the log still has its leaf.
    let v = verify_copy(&db, None, |c| {
        c.execute("DELETE FROM directory_changes WHERE seq = 2", []).unwrap();
    })
    .await;
    assert_eq!(on_directory(&v), [("event_missing".to_string(), Some(2))], "{:?}", v.problems);
    // And its leaf with it (the log's last): the checkpoint kept from before shows it.
    let v = verify_copy(&db, Some(&checkpoint), |c| {
        c.execute_batch("DELETE FROM directory_changes WHERE seq = 2; DELETE FROM audit_leaves WHERE request_id = 'directory' AND seq = 2;").unwrap();
    })
    .await;
    assert!(codes(&v).contains(&"checkpoint_mismatch"), "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_archives_verifies_and_purges_closed_requests_and_the_log_still_proves_everything() {
    use signoff_server::retention::{Mode, RetentionConfig, RuleConfig, run, verify_archive};
    let (app, checkpoint) = history().await;
    let store = app.service.store().clone();
    let archive_dir = app.dir.path().join("archive");
    let config = RetentionConfig {
        archive_dir: Some(archive_dir.clone()),
        rules: vec![RuleConfig { policy: Some("quote-discount".into()), status: None, older_than: "400d".into() }],
        ..Default::default()
    };
    let retention = config.check(None).unwrap();
    let key = signoff_server::audit::KeySource::File(app.dir.path().join("audit.key")).load().unwrap().unwrap();
    let now = app.service.now();
    // Nothing is old enough yet.
    let r = run(&*store, &retention, Some(&key), now, Mode::Full).await.unwrap();
    assert!(r.requests.is_empty() && r.archives.is_empty());
    // 401 days on: a dry run lists the two closed requests and changes nothing.
    let later = now + jiff::SignedDuration::from_hours(24 * 401);
    let dry = run(&*store, &retention, Some(&key), later, Mode::Dry).await.unwrap();
    assert_eq!(dry.requests.len(), 2);
    assert!(store.load(&dry.requests[0]).await.unwrap().is_some());
    let done = run(&*store, &retention, Some(&key), later, Mode::Paced).await.unwrap();
    assert_eq!(done.requests, dry.requests);
    assert_eq!(done.archives.len(), 1);
    for id in &done.requests {
        assert_eq!(app.get("root", &format!("/v1/requests/{id}")).await.0, 404, "purged");
    }
    let (status, list) = app.get("root", "/v1/requests?status=pending").await;
    assert_eq!((status.as_u16(), list["items"].as_array().unwrap().len()), (200, 2), "pending requests stay");
    // The archive verifies on its own, signed by the log's key.
    let report = verify_archive(&done.archives[0], Some(&key.verifying_key())).unwrap();
    assert_eq!((report.requests, report.signed), (2, true));
    // The store still verifies against the checkpoint kept before, its purged events counted
    // as archived; and the log still proves it only grew.
    let v = verify_store(&*store, Some(&checkpoint), &mut |_| {}).await.unwrap();
    assert!(v.verified(), "{:?}", v.problems);
    assert!(v.archived > 0 && v.archived + v.events == v.log_size, "{v:?}");
    let now_cp = app.service.audit_checkpoint().await.unwrap();
    let proof = app.service.audit_consistency(checkpoint.size, Some(now_cp.size)).await.unwrap();
    let proof: Vec<[u8; 32]> = proof.proof.iter().map(|h| hex::decode(h).unwrap().try_into().unwrap()).collect();
    assert_eq!(signoff_audit::merkle::verify_consistency(checkpoint.size, now_cp.size, &checkpoint.root_hash().unwrap(), &now_cp.root_hash().unwrap(), &proof), Ok(()));
    // Running again archives nothing more.
    assert!(run(&*store, &retention, Some(&key), later, Mode::Paced).await.unwrap().requests.is_empty());

    // A changed archive is refused, and named.
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(&done.archives[0]).unwrap()), &mut text).unwrap();
    let forged = text.replacen("\"actor\":\"mark\"", "\"actor\":\"mallory\"", 1);
    assert_ne!(forged, text);
    let path = archive_dir.join("forged.ndjson.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, forged.as_bytes()).unwrap();
    gz.finish().unwrap();
    let err = verify_archive(&path, Some(&key.verifying_key())).unwrap_err();
    assert!(err.contains("line "), "{err}");
}
