//! `signoff-bench`: the benchmarks behind docs/benchmarks.md. Each scenario prints what it
//! measured; nothing here asserts a target, the numbers are reported.
//!
//! - `engine`: in-process service + SQLite store, durable commits (run under `taskset -c 0`).
//! - `http`: 64 concurrent clients against a spawned `signoff serve`.
//! - `scale`: 100,000 pending requests stored; server RSS and read latencies.

/// mimalloc: the service allocates many short-lived JSON values per call; glibc malloc cost
/// a quarter of the CPU in the workflow benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use signoff_engine::directory::token_hash;
use signoff_server::service::{ActionBody, Caller, SubmitBody};
use signoff_server::{Config, Database, Service, Sources, SystemClock};

/// submit → manager approves → finance and legal (parallel) both approve → approved.
const WORKFLOW_POLICY: &str = "id: bench\nsteps:\n  - {id: manager, approvers: {users: [mark]}}\n  - {id: finance, after: [manager], approvers: {groups: [finance]}}\n  - {id: legal, after: [manager], approvers: {groups: [legal]}}\n";
/// 10,000 of these fall due in the same second; the rest are far in the future.
const BURST_POLICY: &str = "id: burst\nsteps:\n  - {id: review, approvers: {users: [mark]}, sla: 20s, on_timeout: approve}\n";
const LATER_POLICY: &str = "id: later\nsteps:\n  - {id: review, approvers: {users: [mark]}, sla: 30d, remind_every: 1d}\n";
const INBOX_POLICY: &str = "id: inbox\nsteps:\n  - {id: review, approvers: {expr: 'reviewer'}, sla: 30d}\n";
const BLOB_POLICY: &str = "id: blob\nsteps:\n  - {id: review, approvers: {users: [mark]}}\n";
const SCALE_POLICY: &str = "id: scale\nsteps:\n  - {id: review, approvers: {expr: 'reviewers'}, sla: 2d}\n";

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// In-process: service + engine + SQLite store with durable commits.
    Engine {
        #[arg(long, default_value_t = 20_000)]
        workflows: usize,
        /// Workflows in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// The HTTP workflow benchmark with rate limits off, on (far above the load) and over TLS,
    /// interleaved; TLS handshakes beside plain connections; and the workflow's latencies while
    /// a flood of bad tokens comes from another address, beside a quiet run.
    Hardening {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Bad-token calls in the flood, at least: it goes on for as long as the load does.
        #[arg(long, default_value_t = 10_000)]
        flood: usize,
        /// Only the limits on/off comparison, each run on a fresh database of the PostgreSQL at
        /// 127.0.0.1:5432, where every instance shares the buckets.
        #[arg(long)]
        postgres: bool,
    },
    /// The HTTP workflow benchmark with telemetry off, metrics on, and every span exported.
    Telemetry {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// The HTTP workflow benchmark with the audit log on, and off (the same binary on a
    /// database whose queueing trigger was dropped), interleaved.
    AuditLog {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// A store of --events events: sequencing them into the log, exporting them over HTTP
    /// (rate, server memory) and verifying them offline (rate, memory).
    AuditExport {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// The HTTP workflow benchmark quiet, then while retention archives and purges --requests
    /// closed requests: live latency during a purge.
    AuditPurge {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Insights: the HTTP workflow benchmark with the analytics follower on and off
    /// (interleaved), then --requests seeded over --days: seeding, `/v1/stats` over the whole
    /// window, heatmaps, predictions and a what-if simulation of every policy.
    Insights {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long, default_value_t = 200)]
        samples: usize,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Over HTTP against `signoff serve`.
    Http {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// postgres://… to run on PostgreSQL (a fresh schema is expected); SQLite otherwise.
        #[arg(long)]
        database_url: Option<String>,
        /// Server instances sharing the database (PostgreSQL only); clients spread across them.
        #[arg(long, default_value_t = 1)]
        instances: usize,
    },
    /// 100,000 pending requests with timers, 10,000 due in the same second: firing drift and
    /// the scheduler's CPU while nothing is due.
    Timers {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[arg(long, default_value_t = 10_000)]
        burst: usize,
    },
    /// 10,000 SSE clients each watching its own request, all changed at once.
    Streams {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Approvals in flight while changing every request.
        #[arg(long, default_value_t = 64)]
        writers: usize,
    },
    /// Webhook dispatch throughput from a backlog to a local receiver.
    Webhooks {
        #[arg(long, default_value_t = 25_000)]
        requests: usize,
    },
    /// One approver with 200,000 open tasks: inbox and `approver=me` latency, beside an
    /// approver with a few.
    Inbox {
        #[arg(long, default_value_t = 200_000)]
        tasks: usize,
        #[arg(long, default_value_t = 2_000)]
        samples: usize,
        /// postgres://… to run on PostgreSQL (a fresh database is expected); SQLite otherwise.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The web inbox of one approver with 10,000 open tasks: the page's server time, and what
    /// a request page weighs.
    WebInbox {
        #[arg(long, default_value_t = 10_000)]
        tasks: usize,
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
    /// Submissions with 0.9 MB contexts, then the largest lists: the server's RSS.
    Memory {
        #[arg(long, default_value_t = 600)]
        requests: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Extra arguments for `signoff serve`, e.g. `--state-cache-mb 16`.
        #[arg(long, allow_hyphen_values = true, num_args = 0..)]
        serve_args: Vec<String>,
        /// The `signoff` binary to measure (another build, say) [default: the one beside this].
        #[arg(long)]
        server: Option<PathBuf>,
    },
    /// 100,000 pending requests: RSS and read latency.
    Scale {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
}

fn users() -> Vec<String> {
    let mut u: Vec<String> = ["alice", "mark", "fiona", "frank", "lena", "root"].iter().map(|s| s.to_string()).collect();
    u.extend((0..200).map(|i| format!("u{i}")));
    u
}

/// A policies directory and a directory file with a `<id>-token` for every user.
fn write_fixtures(dir: &Path) -> (PathBuf, PathBuf) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("bench.yaml"), WORKFLOW_POLICY).unwrap();
    std::fs::write(policies.join("scale.yaml"), SCALE_POLICY).unwrap();
    std::fs::write(policies.join("burst.yaml"), BURST_POLICY).unwrap();
    std::fs::write(policies.join("later.yaml"), LATER_POLICY).unwrap();
    std::fs::write(policies.join("inbox.yaml"), INBOX_POLICY).unwrap();
    std::fs::write(policies.join("blob.yaml"), BLOB_POLICY).unwrap();
    let mut yaml = String::from("users:\n");
    for u in users() {
        yaml.push_str(&format!("  - {{id: {u}, manager: mark}}\n"));
    }
    // (root, an admin, exports the audit trail.)
    yaml.push_str("groups:\n  finance: [fiona, frank]\n  legal: [lena]\nadmins: [root]\ntokens:\n");
    for u in users() {
        yaml.push_str(&format!("  - {{user: {u}, sha256: {}}}\n", token_hash(&format!("{u}-token"))));
    }
    let directory = dir.join("directory.yaml");
    std::fs::write(&directory, yaml).unwrap();
    (policies, directory)
}

fn caller(id: &str) -> Caller {
    Caller { id: id.into(), admin: false, origin: None }
}

fn action(step: &str) -> ActionBody {
    ActionBody::Approve { step: step.into(), comment: None, edits: None }
}

async fn workflow_in_process(s: &Service, i: usize) {
    let body = SubmitBody {
        policy: "bench".into(),
        title: Some(format!("bench {i}")),
        subject: Some(format!("S-{i}")),
        context: json!({"amount": i}),
        evidence: vec![],
        resubmits: None,
    };
    let r = s.submit(&caller("alice"), body, None).await.unwrap();
    let id = r.json()["id"].as_str().unwrap().to_string();
    s.act(&caller("mark"), &id, action("manager"), None).await.unwrap();
    let (fiona, lena) = (caller("fiona"), caller("lena"));
    let (a, b) = tokio::join!(s.act(&fiona, &id, action("finance"), None), s.act(&lena, &id, action("legal"), None));
    let done = [a.unwrap(), b.unwrap()].iter().any(|r| r.json()["status"] == "approved");
    assert!(done, "workflow {i} did not complete");
}

async fn engine(workflows: usize, concurrency: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let config = Config::new(Database::Sqlite(dir.path().join("bench.db")), Sources { policies: Some(policies), directory: Some(directory) });
    let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (s, next) = (service.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= workflows {
                    break;
                }
                workflow_in_process(&s, i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("scenario=engine workflows={workflows} concurrency={concurrency} seconds={secs:.2}");
    println!("workflows_per_s={:.0} state_changes_per_s={:.0}", workflows as f64 / secs, 4.0 * workflows as f64 / secs);
}

struct Spawned {
    child: Child,
    url: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(data: &Path, policies: &Path, directory: &Path) -> Spawned {
    spawn_server_on(data, None, policies, directory)
}

fn spawn_server_on(data: &Path, database_url: Option<&str>, policies: &Path, directory: &Path) -> Spawned {
    let bin = std::env::current_exe().unwrap().with_file_name("signoff");
    let mut extra: Vec<String> = Vec::new();
    if let Some(url) = database_url {
        extra.extend(["--database-url".to_string(), url.to_string()]);
    }
    spawn_binary(&bin, data, policies, directory, &extra)
}

/// `bin serve` on port 0 with `data`, the bench's policies and directory, and `extra` arguments.
fn spawn_binary(bin: &Path, data: &Path, policies: &Path, directory: &Path, extra: &[String]) -> Spawned {
    spawn_binary_with(bin, data, policies, directory, extra, &[])
}

/// `spawn_binary` with `env` set for the server.
fn spawn_binary_with(bin: &Path, data: &Path, policies: &Path, directory: &Path, extra: &[String], env: &[(&str, String)]) -> Spawned {
    let mut child = Command::new(bin)
        // The workloads run far above the default rate limits; the hardening scenario measures
        // them, with limits of its own.
        .env("SIGNOFF_RATE_LIMITS", "false")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--policies")
        .arg(policies)
        .arg("--directory")
        .arg(directory)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (build it with --release first): {e}", bin.display()));
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap().trim_start_matches("listening on ").to_string();
    std::thread::spawn(move || for _ in lines {});
    Spawned { child, url }
}

/// The mean rate of the runs of `mode` among interleaved (mode, rate) runs.
fn mean_rate(results: &[(&str, f64)], mode: &str) -> f64 {
    let r: Vec<f64> = results.iter().filter(|(k, _)| *k == mode).map(|(_, v)| *v).collect();
    r.iter().sum::<f64>() / r.len() as f64
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "call={name} n={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0)
    );
}

/// What the workflow benchmark reads of a request: the client parses no more than it needs,
/// so that its own CPU (it shares the machine's cores with the servers) stays small.
#[derive(serde::Deserialize)]
struct Brief {
    id: String,
    status: String,
}

async fn timed<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str, token: &str, body: Option<Value>, samples: &mut Vec<Duration>) -> T {
    let start = Instant::now();
    let req = match body {
        Some(b) => http.post(url).json(&b),
        None => http.get(url),
    };
    let resp = req.bearer_auth(token).send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    samples.push(start.elapsed());
    assert!(status.is_success(), "{url}: {status} {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap()
}

/// `clients` clients run whole workflows (submit, then three approvals, two at once) against
/// `urls` for `seconds`; each client talks to one instance, and a workflow's calls go to two.
/// The workflows done, and each call's latencies (submit, manager, finance, legal).
async fn run_workflows(urls: &[String], clients: usize, seconds: u64, completed: Arc<AtomicUsize>) -> (usize, [Vec<Duration>; 4]) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    run_workflows_with(http, urls, clients, seconds, completed).await
}

/// `run_workflows` with the client `http`.
async fn run_workflows_with(http: reqwest::Client, urls: &[String], clients: usize, seconds: u64, completed: Arc<AtomicUsize>) -> (usize, [Vec<Duration>; 4]) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), urls[c % urls.len()].clone());
        let other = urls[(c + 1) % urls.len()].clone();
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat: [Vec<Duration>; 4] = Default::default();
            let mut done = 0usize;
            while Instant::now() < deadline {
                let body = json!({"policy": "bench", "subject": format!("S-{c}-{done}"), "context": {"amount": done}});
                let r: Brief = timed(&http, &format!("{base}/v1/requests"), "alice-token", Some(body), &mut lat[0]).await;
                let act = format!("{other}/v1/requests/{}/actions", r.id);
                let _: Brief = timed(&http, &act, "mark-token", Some(json!({"action": "approve", "step": "manager"})), &mut lat[1]).await;
                let (mut f, mut l) = (Vec::new(), Vec::new());
                let (a, b): (Brief, Brief) = tokio::join!(
                    timed(&http, &act, "fiona-token", Some(json!({"action": "approve", "step": "finance"})), &mut f),
                    timed(&http, &act, "lena-token", Some(json!({"action": "approve", "step": "legal"})), &mut l)
                );
                assert!(a.status == "approved" || b.status == "approved");
                lat[2].extend(f);
                lat[3].extend(l);
                done += 1;
                completed.fetch_add(1, Ordering::Relaxed);
            }
            (done, lat)
        }));
    }
    let mut total = 0;
    let mut all: [Vec<Duration>; 4] = Default::default();
    for t in tasks {
        let (done, lat) = t.await.unwrap();
        total += done;
        for (a, l) in all.iter_mut().zip(lat) {
            a.extend(l);
        }
    }
    (total, all)
}

/// The HTTP workflow benchmark with telemetry off (no metrics recorder), with metrics (the
/// default: tracing is off without an OTLP endpoint), with tracing at its default sampling and
/// with every span exported, to an OTLP receiver in this process; `rounds` rounds of the four,
/// interleaved, on fresh databases.
async fn telemetry_bench(clients: usize, seconds: u64, rounds: usize) {
    // (The receiver runs on a runtime of its own, started and dropped off this one.)
    let otlp = std::thread::spawn(signoff_testkit::peers::otlp::OtlpReceiver::start).join().unwrap();
    let exporting = |sampler: &str| {
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone()), ("OTEL_BSP_SCHEDULE_DELAY", "200".into()), ("OTEL_TRACES_SAMPLER", sampler.into())]
    };
    let modes: [(&str, Vec<(&str, String)>); 4] = [
        ("off", vec![("SIGNOFF_METRICS", "off".into())]),
        ("metrics", vec![]),
        // (An empty sampler is the default: a tenth of new traces.)
        ("metrics+tracing_default", exporting("")),
        ("metrics+tracing_every_span", exporting("always_on")),
    ];
    let mut results: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        for (mode, env) in &modes {
            let dir = tempfile::tempdir_in(".").unwrap();
            let (policies, directory) = write_fixtures(dir.path());
            let bin = std::env::current_exe().unwrap().with_file_name("signoff");
            let server = spawn_binary_with(&bin, &dir.path().join("data"), &policies, &directory, &[], env);
            let start = Instant::now();
            let (total, _) = run_workflows(std::slice::from_ref(&server.url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
            let rate = total as f64 / start.elapsed().as_secs_f64();
            println!("round={round} telemetry={mode} workflows_per_s={rate:.0}");
            results.push((mode, rate));
        }
    }
    let mean = |m: &str| mean_rate(&results, m);
    let off = mean("off");
    for (mode, _) in &modes {
        println!("telemetry={mode} mean_workflows_per_s={:.0} cost_vs_off={:+.1}%", mean(mode), (1.0 - mean(mode) / off) * 100.0);
    }
    println!("spans_received={}", otlp.spans().len());
    let _ = std::thread::spawn(move || drop(otlp)).join();
}

/// Rate limits far above the workflow benchmark's load, for every class; failed
/// authentications keep their default.
const LIMITS_ABOVE_THE_LOAD: &str = "[rate_limits]\nsubmissions = { caller = \"1000000/s\", address = \"1000000/s\" }\n\
actions = { caller = \"1000000/s\", address = \"1000000/s\" }\nreads = { caller = \"1000000/s\", address = \"1000000/s\" }\n";

/// See `Scenario::Hardening`.
async fn hardening_bench(clients: usize, seconds: u64, rounds: usize, flood: usize, postgres: bool) {
    use signoff_testkit::certs::Authority;
    let bin = std::env::current_exe().unwrap().with_file_name("signoff");
    let certs = tempfile::tempdir_in(".").unwrap();
    let ca = Authority::new("bench CA");
    let (cert, key) = ca.server().write(certs.path(), "server");
    let limits = certs.path().join("limits.toml");
    std::fs::write(&limits, LIMITS_ABOVE_THE_LOAD).unwrap();
    let trusting = || reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()]);
    let path = |p: &Path| p.display().to_string();
    let modes: [(&str, Vec<String>, Vec<(&str, String)>); 3] = [
        ("limits_off", vec![], vec![]),
        ("limits_on", vec!["--config".into(), path(&limits)], vec![("SIGNOFF_RATE_LIMITS", "true".into())]),
        ("tls", vec!["--tls-cert".into(), path(&cert), "--tls-key".into(), path(&key)], vec![]),
    ];
    let modes = if postgres { &modes[..2] } else { &modes[..] };
    let mut results: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        for (mode, extra, env) in modes {
            let dir = tempfile::tempdir_in(".").unwrap();
            let (policies, directory) = write_fixtures(dir.path());
            let db = postgres.then(|| signoff_store_postgres::testing::TestDatabase::create_on(&signoff_store_postgres::testing::admin_url(), true, "bench").unwrap());
            let mut extra = extra.clone();
            if let Some(db) = &db {
                extra.extend(["--database-url".to_string(), db.url.clone()]);
            }
            let server = spawn_binary_with(&bin, &dir.path().join("data"), &policies, &directory, &extra, env);
            let http = trusting().pool_max_idle_per_host(clients).build().unwrap();
            let start = Instant::now();
            let (total, _) = run_workflows_with(http, std::slice::from_ref(&server.url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
            let rate = total as f64 / start.elapsed().as_secs_f64();
            println!("round={round} mode={mode} workflows_per_s={rate:.0}");
            results.push((mode, rate));
        }
    }
    let off = mean_rate(&results, "limits_off");
    for (mode, _, _) in modes {
        let mean = mean_rate(&results, mode);
        println!("mode={mode} mean_workflows_per_s={mean:.0} cost_vs_limits_off={:+.1}%", (1.0 - mean / off) * 100.0);
    }
    if postgres {
        return;
    }

    // New connections per second, each making one call: plain TCP, and TCP with a TLS handshake.
    for (mode, extra) in [("plain", &modes[0].1), ("tls", &modes[2].1)] {
        let dir = tempfile::tempdir_in(".").unwrap();
        let (policies, directory) = write_fixtures(dir.path());
        let server = spawn_binary_with(&bin, &dir.path().join("data"), &policies, &directory, extra, &[]);
        let http = trusting().pool_max_idle_per_host(0).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (http, url) = (http.clone(), format!("{}/healthz", server.url));
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while Instant::now() < deadline {
                        assert!(http.get(&url).send().await.unwrap().status().is_success());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        println!("connections={mode} new_connections_per_s={:.0}", total as f64 / start.elapsed().as_secs_f64());
    }

    // The workflow's latencies, quiet and under a flood of bad tokens from 127.0.0.2 (another
    // client address on loopback), on servers with limits above the load and the default
    // failed-authentication limit; interleaved.
    let mut p99s: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        for flooded in [false, true] {
            let dir = tempfile::tempdir_in(".").unwrap();
            let (policies, directory) = write_fixtures(dir.path());
            let server = spawn_binary_with(&bin, &dir.path().join("data"), &policies, &directory, &modes[1].1, &modes[1].2);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let flooder = flooded.then(|| {
                let http = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
                let url = format!("{}/v1/inbox", server.url);
                let next = Arc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        let (http, url, next) = (http.clone(), url.clone(), next.clone());
                        tokio::spawn(async move {
                            let (mut unauthenticated, mut limited) = (0usize, 0usize);
                            while next.fetch_add(1, Ordering::Relaxed) < flood || Instant::now() < deadline {
                                match http.get(&url).bearer_auth("not-a-token").send().await.unwrap().status().as_u16() {
                                    401 => unauthenticated += 1,
                                    429 => limited += 1,
                                    other => panic!("a bad token got {other}"),
                                }
                            }
                            (unauthenticated, limited)
                        })
                    })
                    .collect();
                let started = Instant::now();
                tokio::spawn(async move {
                    let (mut u, mut l) = (0, 0);
                    for t in tasks {
                        let (a, b) = t.await.unwrap();
                        u += a;
                        l += b;
                    }
                    (u, l, started.elapsed())
                })
            });
            let (total, all) = run_workflows(std::slice::from_ref(&server.url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
            let mut every: Vec<Duration> = all.into_iter().flatten().collect();
            every.sort();
            let p99 = percentile(&every, 0.99);
            let mode = if flooded { "flooded" } else { "quiet" };
            let flood_said = match flooder {
                Some(f) => {
                    let (u, l, took) = f.await.unwrap();
                    format!(" flood_401={u} flood_429={l} flood_seconds={:.2}", took.as_secs_f64())
                }
                None => String::new(),
            };
            println!("round={round} load={mode} workflows={total} p50_ms={:.2} p99_ms={p99:.2}{flood_said}", percentile(&every, 0.5));
            p99s.push((mode, p99));
        }
    }
    let (quiet, flooded) = (mean_rate(&p99s, "quiet"), mean_rate(&p99s, "flooded"));
    println!("mean_p99_ms quiet={quiet:.2} flooded={flooded:.2} change={:+.1}%", (flooded / quiet - 1.0) * 100.0);
}

/// The insights benchmark (see `Scenario::Insights`).
async fn insights_bench(requests: usize, days: u32, samples: usize, clients: usize, seconds: u64, rounds: usize) {
    let bin = std::env::current_exe().unwrap().with_file_name("signoff");
    // 1. The write path with the projection followed in the background, and without.
    let mut results: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        for (mode, extra) in [("on", vec![]), ("off", vec!["--insights".to_string(), "false".to_string()])] {
            let dir = tempfile::tempdir_in(".").unwrap();
            let (policies, directory) = write_fixtures(dir.path());
            let server = spawn_binary_with(&bin, &dir.path().join("data"), &policies, &directory, &extra, &[]);
            let start = Instant::now();
            let (total, _) = run_workflows(std::slice::from_ref(&server.url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
            let rate = total as f64 / start.elapsed().as_secs_f64();
            println!("round={round} insights={mode} workflows_per_s={rate:.0}");
            results.push((mode, rate));
        }
    }
    let mean = |m: &str| mean_rate(&results, m);
    println!("insights=on mean_workflows_per_s={:.0} insights=off mean_workflows_per_s={:.0} cost_of_on={:+.1}%", mean("on"), mean("off"), (1.0 - mean("on") / mean("off")) * 100.0);

    // 2. A seeded history, read by a server on the bundled policies and demo directory.
    let dir = tempfile::tempdir_in(".").unwrap();
    let data = dir.path().join("data");
    let start = Instant::now();
    let out = Command::new(&bin).args(["seed", "--requests", &requests.to_string(), "--days", &days.to_string(), "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{} wall_seconds={:.1}", String::from_utf8_lossy(&out.stdout).trim(), start.elapsed().as_secs_f64());
    let mut child = Command::new(&bin).args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&data).env("RUST_LOG", "warn").stdout(Stdio::piped()).spawn().unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l.strip_prefix("listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let server = Spawned { child, url };
    let http = reqwest::Client::new();
    let from = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * i64::from(days))).to_string();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", server.url);
        async move {
            let t = Instant::now();
            let resp = http.get(&url).bearer_auth("root-token").send().await.unwrap();
            assert!(resp.status().is_success(), "{url}: {}", resp.status());
            let bytes = resp.bytes().await.unwrap().len();
            (t.elapsed(), bytes)
        }
    };
    let (first, _) = get(format!("/v1/stats?from={from}")).await;
    println!("call=stats_first_after_start ms={:.0} (loads the stored projection)", first.as_secs_f64() * 1000.0);
    let mut stats = Vec::new();
    for _ in 0..samples {
        stats.push(get(format!("/v1/stats?from={from}")).await.0);
    }
    report(&format!("stats_{days}d"), stats);
    for (kind, format) in [("approver", "json"), ("approver", "svg"), ("hour_of_week", "json"), ("hour_of_week", "svg")] {
        let mut times = Vec::new();
        for _ in 0..20 {
            times.push(get(format!("/v1/insights/heatmap?kind={kind}&format={format}&from={from}")).await.0);
        }
        report(&format!("heatmap_{kind}_{format}"), times);
    }
    let (_, page) = (Instant::now(), http.get(format!("{}/v1/requests?status=pending&limit=20", server.url)).bearer_auth("root-token").send().await.unwrap().json::<Value>().await.unwrap());
    let pending: Vec<String> = page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let (fit, _) = get(format!("/v1/requests/{}", pending[0])).await;
    println!("call=request_with_prediction_first ms={:.0} (fits the model)", fit.as_secs_f64() * 1000.0);
    let mut predicted = Vec::new();
    for id in pending.iter().cycle().take(samples) {
        predicted.push(get(format!("/v1/requests/{id}")).await.0);
    }
    report("request_with_prediction", predicted);
    let (_, report_bytes) = get("/v1/insights/report?days=90".to_string()).await;
    println!("report_bytes={report_bytes}");
    // What-if over every request: each bundled scenario's policy with one threshold moved.
    let candidates = [
        ("quote-discount", include_str!("../../../examples/policies/quote-discount.yaml").replace("'quote.discount > 0.10'", "'quote.discount > 0.15'")),
        ("prod-deploy", include_str!("../../../examples/policies/prod-deploy.yaml").replace("approvers: { groups: [sre] }", "approvers: { groups: [sre], users: [oncall-lead] }")),
        ("expenses", include_str!("../../../examples/policies/expenses.yaml").replace("'amount < 100'", "'amount < 250'")),
    ];
    let mut total = Duration::ZERO;
    let mut replayed = 0;
    for (policy, candidate) in candidates {
        let t = Instant::now();
        let r: Value = http
            .post(format!("{}/v1/policies/{policy}/simulate?from={from}&examples=3", server.url))
            .bearer_auth("root-token")
            .body(candidate)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let took = t.elapsed();
        total += took;
        replayed += r["requests"].as_u64().unwrap_or(0);
        println!("simulate policy={policy} requests={} differ={} seconds={:.2}", r["requests"], r["differ"], took.as_secs_f64());
    }
    println!("simulate_all requests={replayed} seconds={:.2}", total.as_secs_f64());
    println!("server_rss_kb={} server_peak_rss_kb={}", rss_kb(server.child.id(), "VmRSS:"), rss_kb(server.child.id(), "VmHWM:"));
}

/// The workflow benchmark with the audit log on and off, `rounds` rounds interleaved, each on
/// a fresh database. Off is the same binary on a database whose `events_audit` trigger was
/// dropped before the server started: nothing is queued, so the sequencer has nothing to do.
async fn audit_log_bench(clients: usize, seconds: u64, rounds: usize) {
    let mut results: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        for mode in ["on", "off"] {
            let dir = tempfile::tempdir_in(".").unwrap();
            let (policies, directory) = write_fixtures(dir.path());
            let data = dir.path().join("data");
            if mode == "off" {
                std::fs::create_dir_all(&data).unwrap();
                drop(signoff_store_sqlite::SqliteStore::open(data.join("signoff.db")).unwrap());
                rusqlite::Connection::open(data.join("signoff.db")).unwrap().execute_batch("DROP TRIGGER events_audit").unwrap();
            }
            let bin = std::env::current_exe().unwrap().with_file_name("signoff");
            let server = spawn_binary_with(&bin, &data, &policies, &directory, &[], &[]);
            let start = Instant::now();
            let (total, _) = run_workflows(std::slice::from_ref(&server.url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
            let rate = total as f64 / start.elapsed().as_secs_f64();
            println!("round={round} audit_log={mode} workflows_per_s={rate:.0}");
            results.push((mode, rate));
        }
    }
    let mean = |m: &str| mean_rate(&results, m);
    println!("audit_log=on mean_workflows_per_s={:.0} audit_log=off mean_workflows_per_s={:.0} cost_of_log={:+.1}%", mean("on"), mean("off"), (1.0 - mean("on") / mean("off")) * 100.0);
}

/// Peak resident memory (KiB) of the process `pid` until `done` says it has ended, sampled.
async fn peak_rss_while(pid: u32, done: impl Fn() -> bool) -> u64 {
    let mut peak = 0;
    while !done() {
        peak = peak.max(rss_kb(pid, "VmHWM:"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak
}

async fn audit_export_bench(events: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    let db = data.join("signoff.db");
    {
        let config = Config::new(Database::Sqlite(db.clone()), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
        let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
        workflow_in_process(&service, 0).await;
        let per = service.store().log_size().await.unwrap().queued as usize;
        let workflows = events.div_ceil(per);
        let start = Instant::now();
        workflows_in_process(&service, 1..workflows).await;
        println!("seeded_workflows={workflows} events_per_workflow={per} seconds={:.1}", start.elapsed().as_secs_f64());
        let start = Instant::now();
        let size = signoff_server::audit::catch_up(&**service.store()).await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!("sequenced_events={size} seconds={secs:.1} events_per_s={:.0}", size as f64 / secs);
    }
    println!("database_bytes={}", std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0));
    // Export over HTTP, read as it streams.
    let server = spawn_server(&data, &policies, &directory);
    let pid = server.child.id();
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = tokio::spawn({
        let reading = reading.clone();
        async move { peak_rss_while(pid, move || !reading.load(Ordering::Relaxed)).await }
    });
    let rss_before = rss_kb(pid, "VmRSS:");
    let start = Instant::now();
    let mut resp = reqwest::Client::new().get(format!("{}/v1/audit/events", server.url)).bearer_auth("root-token").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        bytes += chunk.len();
    }
    let secs = start.elapsed().as_secs_f64();
    reading.store(false, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    println!("exported_records={} bytes={bytes} seconds={secs:.1} records_per_s={:.0} server_rss_kb_before={rss_before} server_peak_rss_kb={peak}", lines - 1, (lines - 1) as f64 / secs);
    drop(server);
    // Verification offline, through the binary.
    let bin = std::env::current_exe().unwrap().with_file_name("signoff");
    let start = Instant::now();
    let mut child = Command::new(&bin).args(["verify", "--data"]).arg(&data).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = tokio::spawn({
        let ended = ended.clone();
        async move { peak_rss_while(pid, move || ended.load(Ordering::Relaxed)).await }
    });
    let out = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut s).unwrap();
        let status = child.wait().unwrap();
        (status, s)
    });
    let (status, said) = out.await.unwrap();
    ended.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "{said}");
    println!("verified_events={events} seconds={secs:.1} events_per_s={:.0} verify_peak_rss_kb={peak}", events as f64 / secs);
}

async fn audit_purge_bench(requests: usize, clients: usize, seconds: u64) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let db = dir.path().join("data").join("signoff.db");
    let config = Config::new(Database::Sqlite(db.clone()), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
    let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
    let start = Instant::now();
    workflows_in_process(&service, 0..requests).await;
    signoff_server::audit::catch_up(&**service.store()).await.unwrap();
    println!("seeded_closed_requests={requests} seconds={:.1}", start.elapsed().as_secs_f64());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(signoff_server::serve_http(service.clone(), listener, std::future::pending()));
    let p99 = |lat: [Vec<Duration>; 4]| {
        let mut all: Vec<Duration> = lat.into_iter().flatten().collect();
        all.sort();
        (percentile(&all, 0.5), percentile(&all, 0.99))
    };
    let (total, lat) = run_workflows(std::slice::from_ref(&url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
    let (p50, p99_quiet) = p99(lat);
    println!("phase=quiet workflows={total} call_p50_ms={p50:.2} call_p99_ms={p99_quiet:.2}");
    let retention = signoff_server::retention::RetentionConfig {
        archive_dir: Some(dir.path().join("archive")),
        rules: vec![signoff_server::retention::RuleConfig { policy: Some("bench".into()), status: None, older_than: "1d".into() }],
        ..Default::default()
    }
    .check(None)
    .unwrap();
    let key = signoff_audit_key(&dir.path().join("audit.key"));
    let purge = {
        let store = service.store().clone();
        let later = service.now() + jiff::SignedDuration::from_hours(48);
        tokio::spawn(async move {
            let start = Instant::now();
            // (Paced, as a serving server runs it.)
            let r = signoff_server::retention::run(&*store, &retention, Some(&key), later, signoff_server::retention::Mode::Paced).await.unwrap();
            (r.requests.len(), r.archives.len(), start.elapsed().as_secs_f64())
        })
    };
    let purge_started = Instant::now();
    let (total, lat) = run_workflows(std::slice::from_ref(&url), clients, seconds, Arc::new(AtomicUsize::new(0))).await;
    let (p50, p99_purging) = p99(lat);
    let so_far = service.store().purged().await.unwrap().len();
    println!(
        "phase=purging workflows={total} call_p50_ms={p50:.2} call_p99_ms={p99_purging:.2} purged_meanwhile={so_far} purged_per_s={:.0}",
        so_far as f64 / purge_started.elapsed().as_secs_f64()
    );
    // (The rest of the purge is not waited for: what it does to live calls is measured.)
    purge.abort();
}

fn signoff_audit_key(path: &Path) -> signoff_server::audit::SigningKey {
    signoff_server::audit::KeySource::File(path.to_path_buf()).load().unwrap().unwrap()
}

async fn http_bench(clients: usize, seconds: u64, database_url: Option<String>, instances: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let servers: Vec<Spawned> = (0..instances.max(1))
        .map(|_| spawn_server_on(&dir.path().join("data"), database_url.as_deref(), &policies, &directory))
        .collect();
    println!("instances={} store={}", servers.len(), if database_url.is_some() { "postgres" } else { "sqlite" });
    let start = Instant::now();
    let completed = Arc::new(AtomicUsize::new(0));
    let server_pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let cpu = tokio::spawn(cpu_per_workflow(start, seconds, completed.clone(), server_pids, database_url.is_some()));
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let (total, all) = run_workflows(&urls, clients, seconds, completed).await;
    let secs = start.elapsed().as_secs_f64();
    println!("scenario=http clients={clients} seconds={secs:.1} workflows={total}");
    println!("workflows_per_s={:.0} state_changes_per_s={:.0}", total as f64 / secs, 4.0 * total as f64 / secs);
    for (name, samples) in ["submit", "approve_manager", "approve_finance", "approve_legal"].iter().zip(all) {
        report(name, samples);
    }
    println!("{}", cpu.await.unwrap());
}

/// CPU seconds (user + system) spent so far, by who spent them.
#[derive(Default)]
struct CpuSpent {
    load_generator: f64,
    servers: f64,
    /// Every process and the kernel: all of the machine's cores that were not idle.
    machine: f64,
}

/// Linux reports /proc times in USER_HZ, which the kernel ABI fixes at 100.
const USER_HZ: f64 = 100.0;

/// A process's name and CPU seconds so far, from /proc/<pid>/stat.
fn process_cpu(pid: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    // `rest` starts at the third field; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks as f64 / USER_HZ))
}

/// CPU seconds so far of the load generator, the servers and the machine, and of each
/// PostgreSQL process by pid (backends come and go).
fn cpu_now(server_pids: &[u32]) -> (CpuSpent, std::collections::HashMap<String, f64>) {
    let mut spent = CpuSpent::default();
    let mut postgres = std::collections::HashMap::new();
    spent.load_generator = process_cpu(&std::process::id().to_string()).map_or(0.0, |p| p.1);
    spent.servers = server_pids.iter().filter_map(|pid| process_cpu(&pid.to_string())).map(|p| p.1).sum();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if let Some((name, secs)) = pid.chars().all(|c| c.is_ascii_digit()).then(|| process_cpu(&pid)).flatten()
            && name == "postgres"
        {
            postgres.insert(pid, secs);
        }
    }
    // The first line of /proc/stat: user nice system idle iowait irq softirq steal guest …;
    // busy is user, nice, system, irq and softirq (guest time is already in user).
    let machine = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = machine.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    spent.machine = busy as f64 / USER_HZ;
    (spent, postgres)
}

/// Milliseconds of CPU per completed workflow, from 20% to 90% of the run (past the warm-up,
/// before the clients stop): where the machine's two cores go.
async fn cpu_per_workflow(start: Instant, seconds: u64, completed: Arc<AtomicUsize>, server_pids: Vec<u32>, postgres: bool) -> String {
    tokio::time::sleep_until((start + Duration::from_secs_f64(seconds as f64 * 0.2)).into()).await;
    let (before, pg_before) = cpu_now(&server_pids);
    let done_before = completed.load(Ordering::Relaxed);
    tokio::time::sleep_until((start + Duration::from_secs_f64(seconds as f64 * 0.9)).into()).await;
    let (after, pg_after) = cpu_now(&server_pids);
    let workflows = (completed.load(Ordering::Relaxed) - done_before).max(1) as f64;
    let pg: f64 = pg_after.iter().map(|(pid, secs)| secs - pg_before.get(pid).copied().unwrap_or(0.0)).sum();
    let ms = |secs: f64| secs * 1000.0 / workflows;
    let mut line = format!(
        "cpu_ms_per_workflow load_generator={:.3} servers={:.3}",
        ms(after.load_generator - before.load_generator),
        ms(after.servers - before.servers)
    );
    if postgres {
        line.push_str(&format!(" postgres={:.3}", ms(pg)));
    }
    line.push_str(&format!(" machine_busy={:.3}", ms(after.machine - before.machine)));
    line
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

async fn scale(requests: usize, samples: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    {
        // Seed through the real service, in-process, then close it.
        let config = Config::new(Database::Sqlite(data.join("signoff.db")), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
        let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
        let start = Instant::now();
        seed_with(&service, requests, |i| {
            // Each request: one of 200 requesters, reviewed by two others.
            let reviewers = json!([format!("u{}", (i * 7 + 1) % 200), format!("u{}", (i * 13 + 2) % 200)]);
            let body = SubmitBody {
                policy: "scale".into(),
                title: Some(format!("request {i}")),
                subject: Some(format!("S-{}", i % 1000)),
                context: json!({"reviewers": reviewers, "amount": i}),
                evidence: vec![],
                resubmits: None,
            };
            (format!("u{}", i % 200), body)
        })
        .await;
        println!("seeded={requests} seconds={:.1}", start.elapsed().as_secs_f64());
    }
    let server = spawn_server(&data, &policies, &directory);
    let pid = server.child.id();
    let http = reqwest::Client::new();
    let queries: Vec<(&str, String, &str)> = vec![
        ("inbox", "/v1/inbox".into(), "u17-token"),
        ("list_pending", "/v1/requests?status=pending".into(), "u17-token"),
        ("list_approver_me", "/v1/requests?approver=me".into(), "u17-token"),
        ("list_requester", "/v1/requests?requester=u42".into(), "u42-token"),
        ("list_subject", "/v1/requests?subject=S-7".into(), "u17-token"),
        ("list_policy", "/v1/requests?policy=scale&limit=100".into(), "u17-token"),
    ];
    for (name, path, token) in &queries {
        let mut lat = Vec::new();
        for i in 0..samples {
            let user = format!("u{}", i % 200);
            let token = if *token == "u17-token" { format!("{user}-token") } else { token.to_string() };
            let v: Value = timed(&http, &format!("{}{path}", server.url), &token, None, &mut lat).await;
            assert!(v["items"].is_array());
        }
        report(name, lat);
    }
    println!("server_rss_kb={} server_peak_rss_kb={}", rss_kb(pid, "VmRSS:"), rss_kb(pid, "VmHWM:"));
    let db = std::fs::metadata(data.join("signoff.db")).map(|m| m.len()).unwrap_or(0);
    println!("database_bytes={db}");
}

/// Seeds `n` requests of `policy` with the clock frozen at `at` (so timers line up exactly),
/// `step` apart; returns their ids.
async fn seed(service: &Arc<Service>, clock: &signoff_server::ManualClock, policy: &str, n: usize, step: jiff::SignedDuration) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let (s, policy) = (service.clone(), policy.to_string());
            set.spawn(async move {
                let body = SubmitBody { policy, title: None, subject: Some(format!("T-{i}")), context: json!({}), evidence: vec![], resubmits: None };
                s.submit(&caller("alice"), body, None).await.unwrap().json()["id"].as_str().unwrap().to_string()
            });
            clock.advance(step);
        }
        while let Some(id) = set.join_next().await {
            ids.push(id.unwrap());
        }
    }
    ids
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime and stime are the 14th and 15th fields overall.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

async fn timers(requests: usize, burst: usize) {
    use jiff::{SignedDuration, Timestamp};
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    // The burst falls due at `due`, spread over one second; far enough ahead to seed and idle.
    let due = Timestamp::now().round(jiff::Unit::Second).unwrap() + SignedDuration::from_secs(150);
    let ids = {
        let clock = Arc::new(signoff_server::ManualClock::new(due - SignedDuration::from_secs(20)));
        let config = Config::new(Database::Sqlite(data.join("signoff.db")), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
        let service = signoff_server::build(&config, clock.clone()).await.unwrap();
        let start = Instant::now();
        let step = SignedDuration::from_nanos(1_000_000_000 / burst.max(1) as i64);
        let ids = seed(&service, &clock, "burst", burst, step).await;
        seed(&service, &clock, "later", requests.saturating_sub(burst), SignedDuration::ZERO).await;
        println!("seeded={requests} due_in_one_second={burst} seconds={:.1}", start.elapsed().as_secs_f64());
        ids
    };
    assert!(Timestamp::now() + SignedDuration::from_secs(40) < due, "seeding took too long for the schedule");
    let server = spawn_server(&data, &policies, &directory);
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle_cpu = (cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64();
    println!("idle_window_s=20 scheduler_idle_cpu_percent={:.3}", idle_cpu * 100.0);
    let wait = Duration::try_from(due.duration_since(Timestamp::now())).unwrap_or_default() + Duration::from_secs(15);
    let c1 = cpu_ticks(pid);
    tokio::time::sleep(wait).await;
    println!("cpu_seconds_while_firing={:.2}", (cpu_ticks(pid) - c1) as f64 / hz);
    println!("server_peak_rss_kb={}", rss_kb(pid, "VmHWM:"));
    drop(server);

    let store = signoff_store_sqlite::SqliteStore::open(data.join("signoff.db")).unwrap();
    use signoff_store::Store;
    let mut drift = Vec::with_capacity(ids.len());
    let mut missing = 0;
    for id in &ids {
        let events = store.events(id).await.unwrap();
        let fired: Vec<_> = events.iter().filter(|e| e.kind.type_name() == "step_timed_out").collect();
        match fired.as_slice() {
            [e] => {
                if let signoff_engine::EventKind::StepTimedOut { due, .. } = &e.kind {
                    drift.push(Duration::try_from(e.at.duration_since(*due)).unwrap_or_default());
                }
            }
            [] => missing += 1,
            more => panic!("{id} timed out {} times", more.len()),
        }
    }
    println!("fired={} missing={missing}", drift.len());
    report("firing_drift", drift);
}

async fn webhooks(requests: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    // The receiver: counts deliveries and when the first and last arrived.
    let receiver = signoff_testkit::peers::webhook::WebhookReceiver::start(Default::default()).await;
    let hook = receiver.url.clone();
    let notify_toml = format!("[[notify.webhooks]]\nname = \"bench\"\nurl = \"{hook}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n");
    let notify: toml_config::Wrapper = toml::from_str(&notify_toml).unwrap();
    // Build the backlog with the dispatcher not running.
    let expected = {
        let config = Config { notify: notify.notify, ..Config::new(Database::Sqlite(data.join("signoff.db")), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) }) };
        let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
        let clock = signoff_server::ManualClock::new(jiff::Timestamp::now());
        let ids = seed(&service, &clock, "later", requests, jiff::SignedDuration::ZERO).await;
        let mut total = 0;
        for id in ids.iter().take(1) {
            total = service.store().deliveries(id).await.unwrap().len() * ids.len();
        }
        total
    };
    println!("backlog={expected} webhooks from {requests} requests");
    let cfg = dir.path().join("signoff.toml");
    std::fs::write(&cfg, notify_toml).unwrap();
    let bin = std::env::current_exe().unwrap().with_file_name("signoff");
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .arg("--policies")
        .arg(&policies)
        .arg("--directory")
        .arg(&directory)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while receiver.arrivals.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = rss_kb(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let (first, last) = *receiver.first_last.lock().unwrap();
    let secs = last.unwrap().duration_since(first.unwrap()).as_secs_f64();
    let delivered = receiver.arrivals.lock().unwrap().len();
    println!("delivered={delivered} seconds={secs:.2} deliveries_per_s={:.0} server_peak_rss_kb={peak}", delivered as f64 / secs);
}

async fn streams(clients: usize, writers: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    let ids = {
        let config = Config::new(Database::Sqlite(data.join("signoff.db")), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
        let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
        let clock = signoff_server::ManualClock::new(jiff::Timestamp::now());
        seed(&service, &clock, "later", clients, jiff::SignedDuration::ZERO).await
    };
    let server = spawn_server(&data, &policies, &directory);
    let pid = server.child.id();
    let rss_before = rss_kb(pid, "VmRSS:");
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::new();
    for chunk in ids.chunks(500) {
        for id in chunk {
            let (http, url, ready) = (http.clone(), format!("{}/v1/requests/{id}/stream", server.url), ready.clone());
            tasks.push(tokio::spawn(async move {
                let mut resp = http.get(&url).bearer_auth("alice-token").send().await.unwrap();
                let mut buf = String::new();
                let mut events = 0;
                loop {
                    let Some(chunk) = resp.chunk().await.unwrap() else { panic!("stream ended after {events} events") };
                    buf.push_str(std::str::from_utf8(&chunk).unwrap());
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        if !block.contains("event: state") {
                            continue;
                        }
                        events += 1;
                        if events == 1 {
                            ready.add_permits(1);
                            continue;
                        }
                        let received = jiff::Timestamp::now();
                        let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                        let state: Value = serde_json::from_str(data).unwrap();
                        let changed: jiff::Timestamp = state["updated_at"].as_str().unwrap().parse().unwrap();
                        return Duration::try_from(received.duration_since(changed)).unwrap_or_default();
                    }
                }
            }));
        }
        // Let each wave connect and get its first event before the next (the listen backlog
        // is finite), and before anything changes.
        ready.acquire_many(chunk.len() as u32).await.unwrap().forget();
    }
    let rss_connected = rss_kb(pid, "VmRSS:");
    println!("clients_connected={} server_rss_kb_before={rss_before} server_rss_kb_connected={rss_connected}", ids.len());
    // Change every request at once: the manager approves them all, `writers` at a time.
    let start = Instant::now();
    let approvals: Vec<_> = ids
        .chunks(ids.len().div_ceil(writers))
        .map(|chunk| {
            let (http, base, chunk) = (http.clone(), server.url.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for id in chunk {
                    let resp = http
                        .post(format!("{base}/v1/requests/{id}/actions"))
                        .bearer_auth("mark-token")
                        .json(&json!({"action": "approve", "step": "review"}))
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success());
                }
            })
        })
        .collect();
    for a in approvals {
        a.await.unwrap();
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    println!("changed={} in seconds={:.2}", ids.len(), start.elapsed().as_secs_f64());
    println!("server_peak_rss_kb={}", rss_kb(pid, "VmHWM:"));
    report("fan_out_latency", latencies);
}

/// Runs workflows `range` to approval through the service in-process, 256 at a time.
async fn workflows_in_process(service: &Arc<Service>, range: std::ops::Range<usize>) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..256 {
        let (s, next, end) = (service.clone(), next.clone(), range.end);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                workflow_in_process(&s, i).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Submits `n` requests through the service in-process, 256 at a time; `body(i)` makes the i-th.
async fn seed_with(service: &Arc<Service>, n: usize, body: impl Fn(usize) -> (String, SubmitBody) + Send + Sync + 'static) {
    let body = Arc::new(body);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..256 {
        let (s, next, body) = (service.clone(), next.clone(), body.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let (requester, b) = body(i);
                s.submit(&caller(&requester), b, None).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn web_inbox(tasks: usize, samples: usize) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    {
        let config = Config::new(Database::Sqlite(data.join("signoff.db")), Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
        let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
        seed_with(&service, tasks, |i| {
            let body = SubmitBody {
                policy: "inbox".into(),
                title: Some(format!("request {i}")),
                subject: Some(format!("S-{i}")),
                context: json!({"reviewer": "mark", "amount": i}),
                evidence: vec![],
                resubmits: None,
            };
            (format!("u{}", 2 + i % 198), body)
        })
        .await;
    }
    let server = spawn_server_on(&data, None, &policies, &directory);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let inbox: Value = http.get(format!("{}/v1/inbox?limit=1", server.url)).bearer_auth("mark-token").send().await.unwrap().json().await.unwrap();
    let first = inbox["items"][0]["request"].as_str().unwrap().to_string();
    let signed_in = http
        .post(format!("{}/signin", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=mark-token")
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = |path: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move { http.get(path).header("cookie", cookie).send().await.unwrap().bytes().await.unwrap() }
    };
    for _ in 0..20 {
        page(format!("{}/", server.url)).await;
    }
    // `samples` fetches of `path`, one at a time, reported as `name`.
    let time_page = |name: String, path: String| {
        let page = &page;
        async move {
            let mut lat = Vec::new();
            for _ in 0..samples {
                let start = Instant::now();
                let html = page(path.clone()).await;
                lat.push(start.elapsed());
                assert!(html.len() > 1000);
            }
            report(&name, lat);
        }
    };
    time_page(format!("web_inbox_{tasks}"), format!("{}/", server.url)).await;
    // The last page: the deepest offset a person can page to.
    let last = tasks.div_ceil(50);
    time_page(format!("web_inbox_{tasks}_last_page"), format!("{}/?page={last}", server.url)).await;
    let request = page(format!("{}/requests/{first}", server.url)).await;
    let html = String::from_utf8_lossy(&request).to_string();
    let href = |ext: &str| {
        let at = html.find(&format!(".{ext}\"")).unwrap();
        let start = html[..at].rfind("/assets/").unwrap();
        format!("{}{}.{ext}", server.url, &html[start..at])
    };
    let (css, js) = (page(href("css")).await.len(), page(href("js")).await.len());
    println!("request_page_bytes html={} css={css} js={js} total={}", request.len(), request.len() + css + js);
    // As a browser gets them: compressed (reqwest here does not decompress, so these are wire bytes).
    let gzipped = |url: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let resp = http.get(url).header("cookie", cookie).header("accept-encoding", "gzip").send().await.unwrap();
            assert_eq!(resp.headers()["content-encoding"], "gzip");
            resp.bytes().await.unwrap().len()
        }
    };
    let (h, c, j) = (gzipped(format!("{}/requests/{first}", server.url)).await, gzipped(href("css")).await, gzipped(href("js")).await);
    println!("request_page_gzip_bytes html={h} css={c} js={j} total={}", h + c + j);
}

async fn inbox(tasks: usize, samples: usize, database_url: Option<String>) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let data = dir.path().join("data");
    let database = match &database_url {
        Some(url) => Database::parse(url).unwrap(),
        None => Database::Sqlite(data.join("signoff.db")),
    };
    {
        let config = Config::new(database, Sources { policies: Some(policies.clone()), directory: Some(directory.clone()) });
        let service = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
        let start = Instant::now();
        // mark reviews `tasks` requests; u1 reviews 20 (one in 10,000), the same mix otherwise.
        let total = tasks + 20;
        seed_with(&service, total, move |i| {
            let reviewer = if i % (total / 20).max(1) == 0 { "u1" } else { "mark" };
            let body = SubmitBody {
                policy: "inbox".into(),
                title: Some(format!("request {i}")),
                subject: Some(format!("S-{i}")),
                context: json!({"reviewer": reviewer, "amount": i}),
                evidence: vec![],
                resubmits: None,
            };
            (format!("u{}", 2 + i % 198), body)
        })
        .await;
        println!("seeded={total} seconds={:.1}", start.elapsed().as_secs_f64());
    }
    let server = spawn_server_on(&data, database_url.as_deref(), &policies, &directory);
    let http = reqwest::Client::new();
    // Warm up, then each call alone (latency) and with 8 concurrent callers (throughput).
    for (name, path, token) in [
        ("inbox_200k", "/v1/inbox", "mark-token"),
        ("inbox_200k_first_20", "/v1/inbox?limit=20", "mark-token"),
        ("inbox_20", "/v1/inbox", "u1-token"),
        ("approver_me_200k", "/v1/requests?approver=me", "mark-token"),
        ("approver_me_200k_first_20", "/v1/requests?approver=me&limit=20", "mark-token"),
        ("approver_me_20", "/v1/requests?approver=me", "u1-token"),
    ] {
        let url = format!("{}{path}", server.url);
        let mut warm = Vec::new();
        for _ in 0..50 {
            let _: Value = timed(&http, &url, token, None, &mut warm).await;
        }
        let mut lat = Vec::new();
        for _ in 0..samples {
            let v: Value = timed(&http, &url, token, None, &mut lat).await;
            assert!(!v["items"].as_array().unwrap().is_empty());
        }
        report(name, lat);
        let done = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (http, url, done) = (http.clone(), url.clone(), done.clone());
            set.spawn(async move {
                let mut lat = Vec::new();
                while start.elapsed() < Duration::from_secs(5) {
                    let _: Value = timed(&http, &url, token, None, &mut lat).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while set.join_next().await.is_some() {}
        println!("call={name} concurrency=8 per_s={:.0}", done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64());
    }
}

async fn memory(requests: usize, clients: usize, serve_args: Vec<String>, server: Option<PathBuf>) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (policies, directory) = write_fixtures(dir.path());
    let bin = server.unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("signoff"));
    let server = spawn_binary(&bin, &dir.path().join("data"), &policies, &directory, &serve_args);
    let pid = server.child.id();
    println!("scenario=memory server={} requests={requests} clients={clients} serve_args={serve_args:?} start_rss_kb={}", bin.display(), rss_kb(pid, "VmRSS:"));
    let http = reqwest::Client::new();
    // 0.9 MB of context: a string of 460,000 characters and 2,000 small objects.
    let context = Arc::new(json!({
        "document": "x".repeat(460_000),
        "lines": (0..2_000).map(|i| json!({"sku": format!("SKU-{i:06}"), "qty": i, "price": 12.5, "note": "n".repeat(180)})).collect::<Vec<_>>(),
    }));
    let body_bytes = serde_json::to_vec(&json!({"policy": "blob", "context": &*context})).unwrap().len();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, next, context) = (http.clone(), server.url.clone(), next.clone(), context.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let _: Value = timed(&http, &format!("{url}/v1/requests"), "alice-token", Some(json!({"policy": "blob", "context": &*context})), &mut lat).await;
            }
            lat
        });
    }
    let mut lat = Vec::new();
    while let Some(l) = set.join_next().await {
        lat.extend(l.unwrap());
    }
    println!("body_bytes={body_bytes} submit_seconds={:.1} after_submits_rss_kb={} peak_rss_kb={}", start.elapsed().as_secs_f64(), rss_kb(pid, "VmRSS:"), rss_kb(pid, "VmHWM:"));
    report("submit_0.9MB", lat);
    // Every request, 500 at a time (as many pages as the page limit makes), three times over.
    let mut lat = Vec::new();
    let (mut pages, mut largest) = (0, 0);
    for _ in 0..3 {
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("{}/v1/requests?limit=500&cursor={c}", server.url),
                None => format!("{}/v1/requests?limit=500", server.url),
            };
            let t = Instant::now();
            let bytes = http.get(&path).bearer_auth("alice-token").send().await.unwrap().bytes().await.unwrap();
            lat.push(t.elapsed());
            largest = largest.max(bytes.len());
            pages += 1;
            let page: Value = serde_json::from_slice(&bytes).unwrap();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
    }
    report("list_limit_500", lat);
    println!("list_pages={pages} largest_page_bytes={largest} end_rss_kb={} peak_rss_kb={}", rss_kb(pid, "VmRSS:"), rss_kb(pid, "VmHWM:"));
}

mod toml_config {
    #[derive(serde::Deserialize)]
    pub struct Wrapper {
        pub notify: signoff_server::notify::NotifyConfig,
    }
}

fn main() {
    signoff_server::install_tls();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        match args.scenario {
            Scenario::Engine { workflows, concurrency } => engine(workflows, concurrency).await,
            Scenario::Http { clients, seconds, database_url, instances } => http_bench(clients, seconds, database_url, instances).await,
            Scenario::Telemetry { clients, seconds, rounds } => telemetry_bench(clients, seconds, rounds).await,
            Scenario::Hardening { clients, seconds, rounds, flood, postgres } => hardening_bench(clients, seconds, rounds, flood, postgres).await,
            Scenario::AuditLog { clients, seconds, rounds } => audit_log_bench(clients, seconds, rounds).await,
            Scenario::AuditExport { events } => audit_export_bench(events).await,
            Scenario::AuditPurge { requests, clients, seconds } => audit_purge_bench(requests, clients, seconds).await,
            Scenario::Scale { requests, samples } => scale(requests, samples).await,
            Scenario::Inbox { tasks, samples, database_url } => inbox(tasks, samples, database_url).await,
            Scenario::WebInbox { tasks, samples } => web_inbox(tasks, samples).await,
            Scenario::Insights { requests, days, samples, clients, seconds, rounds } => insights_bench(requests, days, samples, clients, seconds, rounds).await,
            Scenario::Memory { requests, clients, serve_args, server } => memory(requests, clients, serve_args, server).await,
            Scenario::Timers { requests, burst } => timers(requests, burst).await,
            Scenario::Webhooks { requests } => webhooks(requests).await,
            Scenario::Streams { clients, writers } => streams(clients, writers).await,
        }
    });
}
