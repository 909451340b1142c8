//! The `signoff` command: the server (`serve`), its client (`submit`, `status`, `action`,
//! `history`, `inbox`, `requests`, `wait`, `whoami`, `policy`), offline tools (`token`,
//! `migrate`, `export`, `import`) and a self-contained `demo`. Exit codes: 0 success, 1 the
//! server refused, 2 usage or configuration error, 3 the server cannot be reached, 4 `wait`
//! timed out.

mod client;
mod demo;
mod serve;
mod verify;

/// mimalloc: the service allocates many short-lived JSON values per call; glibc malloc cost
/// a quarter of the CPU in the workflow benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "signoff", version, about = "Policy-driven approval workflows")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the client finds the server, and who it is.
#[derive(Args, Clone)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "SIGNOFF_URL", default_value = "http://127.0.0.1:7800", global = true)]
    pub url: String,
    /// Bearer token of the acting user.
    #[arg(long, env = "SIGNOFF_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of key=value lines.
    #[arg(long, global = true)]
    pub json: bool,
    /// Trust the server's certificate if it chains to this PEM CA (an https URL with a private
    /// authority), besides the system's.
    #[arg(long, env = "SIGNOFF_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Present this PEM client certificate (a server started with --client-ca needs one); with
    /// --client-key.
    #[arg(long, env = "SIGNOFF_CLIENT_CERT", global = true)]
    pub client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(long, env = "SIGNOFF_CLIENT_KEY", global = true)]
    pub client_key: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Submit a request.
    Submit {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        input: PolicyInput,
        /// What the request is about, e.g. a quote or change number.
        #[arg(long)]
        subject: Option<String>,
        /// A line that tells approvers what they are asked to approve.
        #[arg(long)]
        title: Option<String>,
        /// An earlier rejected, expired or cancelled request this one re-submits.
        #[arg(long)]
        resubmits: Option<String>,
        /// Makes a retried submission safe: the same key and body give the same request.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show a request: its status, and each step's progress.
    Status {
        #[command(flatten)]
        remote: Remote,
        /// The request's id (`req_…`).
        id: String,
    },
    /// Act on a request.
    Action {
        #[command(flatten)]
        remote: Remote,
        /// The request's id (`req_…`).
        id: String,
        /// What to do.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["approve", "reject", "acknowledge", "delegate", "comment", "cancel"]))]
        action: String,
        /// The step to act on (required for approve, reject, acknowledge and delegate).
        #[arg(long)]
        step: Option<String>,
        /// A note kept in the history (required to reject).
        #[arg(long)]
        comment: Option<String>,
        /// The item to acknowledge.
        #[arg(long)]
        item: Option<String>,
        /// The user to delegate to.
        #[arg(long)]
        to: Option<String>,
        /// Approve with edits: a JSON object of top-level context keys.
        #[arg(long)]
        edits: Option<String>,
        /// Makes a retried action safe: the same key and body act once.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// A request's history, one `key=value` line per event.
    History {
        #[command(flatten)]
        remote: Remote,
        /// The request's id (`req_…`).
        id: String,
    },
    /// Block until a request is decided: exit 0 if approved, 1 if rejected, expired or
    /// cancelled, 4 if still pending when --timeout passes.
    Wait {
        #[command(flatten)]
        remote: Remote,
        /// The request's id (`req_…`).
        id: String,
        /// Give up after this long (e.g. 90s, 30m, 2h); without it, wait as long as it takes.
        #[arg(long)]
        timeout: Option<String>,
    },
    /// The caller's open tasks, soonest due first.
    Inbox {
        #[command(flatten)]
        remote: Remote,
        /// Every open task of every approver (admins).
        #[arg(long)]
        all: bool,
    },
    /// Requests you may see: open ones soonest due first.
    Requests {
        #[command(flatten)]
        remote: Remote,
        /// Only requests in this status.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["pending", "approved", "rejected", "expired", "cancelled"]))]
        status: Option<String>,
        /// Only requests under this policy.
        #[arg(long)]
        policy: Option<String>,
        /// Only requests with a step past its due time.
        #[arg(long)]
        overdue: bool,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// Statistics of the requests submitted in a window (admins and policy owners): outcomes,
    /// decision times, SLA compliance, escalation, timeout and auto-approval rates, and each
    /// step's waiting and deciding times. With --user, that person's summary instead.
    Stats {
        #[command(flatten)]
        remote: Remote,
        /// From when: a duration back from now (30d, 12h) or an RFC 3339 time [default: 30d].
        #[arg(long)]
        since: Option<String>,
        /// Until when, likewise [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Only this policy's requests.
        #[arg(long)]
        policy: Option<String>,
        /// A person's summary (`me` for yours): pending, urgent and expiring work, decisions and
        /// median response time.
        #[arg(long)]
        user: Option<String>,
    },
    /// Write the Insights page as one self-contained HTML file: statistics, each step's times,
    /// and the bottleneck heatmaps (admins and policy owners).
    Report {
        #[command(flatten)]
        remote: Remote,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Only this policy's requests.
        #[arg(long)]
        policy: Option<String>,
        /// The window up to now, in days.
        #[arg(long, default_value_t = 30, value_parser = clap::builder::ValueParser::new(|d: &str| match d { "7" | "30" | "90" => Ok(d.parse::<u32>().unwrap_or(30)), _ => Err(format!("`{d}` is not one of 7, 30, 90")) }))]
        days: u32,
    },
    /// Ask a server whether it is up (`/healthz`), or with --ready whether it can serve
    /// (`/readyz`: its store answers): exit 0 if so, 1 if not, 3 if it cannot be reached. For
    /// container and service health checks.
    Health {
        #[command(flatten)]
        remote: Remote,
        /// Ask whether it can serve (`/readyz`) rather than whether it is up.
        #[arg(long)]
        ready: bool,
    },
    /// Who the token belongs to: user, groups, admin.
    Whoami {
        #[command(flatten)]
        remote: Remote,
    },
    /// Tokens for a real directory.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check policies offline, or ask the server for a plan.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the golden path against a temporary server and print the transcript.
    Demo,
    /// Archive and purge closed requests past their retention rules, and prune what is kept
    /// only for a while, once (a running server does it every `retention.every`).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// The audit trail on the server.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the audit trail. With --data or --database-url: every request's hash chain and
    /// state and the whole audit log, offline. Otherwise against a server: one --request, or
    /// the server's signed log against a --checkpoint kept earlier. Exit 0 when everything
    /// verifies, 1 when something does not.
    Verify {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        db: StoreArgs,
        /// A checkpoint kept earlier (the JSON of `/v1/audit/checkpoint`, or `--save`'s file).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Verify this one request on the server.
        #[arg(long)]
        request: Option<String>,
        /// After verifying, keep the server's current checkpoint in this file.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Verify this archive file (written by retention) on its own; with --checkpoint, its
        /// signature must be by that checkpoint's key.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Verify this export file (`signoff export`) on its own: every chain and every state.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Copy the embedded database to --out while a server may be running on it: one read
    /// transaction, so the copy is consistent (PostgreSQL: use pg_dump, see docs/runbook.md).
    Backup {
        #[command(flatten)]
        db: StoreArgs,
        /// The copy's path; it must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fill a database with realistic history, made by the real engine under a simulated clock
    /// (approvers with their own speed, hours and holidays; escalations, timeouts, rejections
    /// and re-submissions), so statistics and insights have something to show. Not while a
    /// server holds an embedded database.
    Seed {
        #[command(flatten)]
        db: StoreArgs,
        /// deal-desk (quote-discount), deploy-guard (prod-deploy), expenses, or all.
        #[arg(long, default_value = "all", value_parser = clap::builder::PossibleValuesParser::new(signoff_server::seed::Scenario::NAMES))]
        scenario: String,
        /// First submissions, split between the scenarios (re-submissions come on top).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Days of history, up to --until.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// The end of the history (RFC 3339); what is still open then stays pending [default: now].
        #[arg(long)]
        until: Option<String>,
        /// The same seed makes the same history.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A directory of policy files [default: the bundled examples].
        #[arg(long, env = "SIGNOFF_POLICIES")]
        policies: Option<PathBuf>,
        /// The directory file [default: the demo directory].
        #[arg(long, env = "SIGNOFF_DIRECTORY")]
        directory: Option<PathBuf>,
    },
    /// Create or update the database schema, then exit (servers also do this at start).
    Migrate {
        #[command(flatten)]
        db: StoreArgs,
    },
    /// Write every request (full history) and policy to JSON Lines; a running server may keep
    /// serving from the same database (the export is a consistent snapshot).
    Export {
        #[command(flatten)]
        db: StoreArgs,
        /// The file to write; standard output by default.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Read an export into a database (which must not already hold those requests).
    Import {
        #[command(flatten)]
        db: StoreArgs,
        /// The file to read; standard input by default.
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
}

/// A policy and a context for it: what `submit` and `policy plan` take.
#[derive(Args)]
struct PolicyInput {
    /// The policy's id (`signoff policy list` shows them).
    #[arg(long)]
    policy: String,
    /// A JSON file with the context (`-` for stdin).
    #[arg(long)]
    context: PathBuf,
}

/// Which database: for `serve`, and for the offline commands (on SQLite, the server must not
/// hold the file).
#[derive(Args, Default)]
pub struct StoreArgs {
    /// Directory of the embedded database [default: ./signoff-data].
    #[arg(long, env = "SIGNOFF_DATA")]
    pub data: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (beats --data; default: <data>/signoff.db).
    #[arg(long, env = "SIGNOFF_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    fn database(&self) -> Result<signoff_server::Database, String> {
        signoff_server::settings::database(self.data.clone(), self.database_url.clone()).map_err(|e| e.to_string())
    }

    async fn open(&self) -> Result<std::sync::Arc<dyn signoff_store::Store>, String> {
        self.database()?.open().await.map_err(|e| e.to_string())
    }

    /// The store to export from. A SQLite database is first copied in one read transaction,
    /// so a server using it goes on serving (the copy lives as long as the guard).
    async fn open_snapshot(&self) -> Result<(std::sync::Arc<dyn signoff_store::Store>, Option<tempfile::TempDir>), String> {
        match self.database()? {
            signoff_server::Database::Sqlite(path) => {
                let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
                let copy = dir.path().join("snapshot.db");
                signoff_store_sqlite::SqliteStore::snapshot(&path, &copy).map_err(|e| format!("database: {e}"))?;
                let store = signoff_server::Database::Sqlite(copy).open().await.map_err(|e| e.to_string())?;
                Ok((store, Some(dir)))
            }
            other => Ok((other.open().await.map_err(|e| e.to_string())?, None)),
        }
    }
}

/// `file` opened with `open`, or the standard stream when there is none. A file that cannot be
/// opened is reported against its `flag`; the error is the exit code (2).
fn file_or_std<T>(file: &Option<PathBuf>, flag: &str, open: impl FnOnce(&std::path::Path) -> std::io::Result<T>, std: impl FnOnce() -> T) -> Result<T, u8> {
    match file {
        Some(f) => open(f).map_err(|e| {
            eprintln!("error: {flag} {}: {e}", f.display());
            2
        }),
        None => Ok(std()),
    }
}

struct SeedArgs {
    scenario: String,
    requests: usize,
    days: u32,
    until: Option<String>,
    seed: u64,
    sources: signoff_server::Sources,
}

/// `signoff seed`: the history, then the audit log and the analytics projection brought up to
/// it, so a server started next has nothing to catch up.
async fn seed_history(db: StoreArgs, a: SeedArgs) -> u8 {
    let until = match a.until.as_deref().map(str::parse::<jiff::Timestamp>).transpose() {
        Ok(t) => t.unwrap_or_else(jiff::Timestamp::now),
        Err(e) => {
            eprintln!("error: --until: {e}");
            return 2;
        }
    };
    let scenarios = signoff_server::seed::Scenario::parse(&a.scenario).unwrap_or_default();
    let catalog = match signoff_server::catalog::Catalog::load(&a.sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let store = match db.open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let plan = signoff_server::seed::Plan { scenarios, requests: a.requests, days: a.days, until, seed: a.seed };
    let started = std::time::Instant::now();
    let report = match signoff_server::seed::run(&*store, &catalog, &plan).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let seeded = started.elapsed();
    let projection = signoff_server::insights::Projection::default();
    if let Err(e) = projection.refresh(&*store).await {
        eprintln!("error: the audit log and the analytics projection: {e}");
        return 1;
    }
    let statuses: Vec<String> = report.statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!(
        "seeded requests={} resubmissions={} events={} {} seconds={:.1} indexed_seconds={:.1}",
        report.requests,
        report.resubmissions,
        report.events,
        statuses.join(" "),
        seeded.as_secs_f64(),
        (started.elapsed() - seeded).as_secs_f64()
    );
    0
}

/// `signoff retention run`: the rules of the configuration file, once.
async fn retention(db: StoreArgs, config: Option<PathBuf>, as_of: Option<String>, dry: bool) -> u8 {
    let flags = signoff_server::settings::Layer { data: db.data.clone(), database_url: db.database_url.clone(), ..Default::default() };
    let settings = match signoff_server::settings::Settings::resolve(flags, config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let now = match as_of.as_deref().map(str::parse::<jiff::Timestamp>).transpose() {
        Ok(t) => t.unwrap_or_else(jiff::Timestamp::now),
        Err(e) => {
            eprintln!("error: --as-of: {e}");
            return 2;
        }
    };
    let prepared = async {
        let retention = settings.config.retention().map_err(|e| e.to_string())?;
        let key = settings.config.audit_key().map_err(|e| e.to_string())?;
        let store = settings.config.database.open().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((retention, key, store))
    };
    let (retention, key, store) = match prepared.await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mode = if dry { signoff_server::retention::Mode::Dry } else { signoff_server::retention::Mode::Full };
    match signoff_server::retention::run(&*store, &retention, key.as_ref(), now, mode).await {
        Ok(r) if dry => {
            println!("would archive {} requests{}", r.requests.len(), if r.requests.is_empty() { String::new() } else { format!(": {}", r.requests.join(" ")) });
            0
        }
        Ok(r) => {
            println!(
                "archived {} requests into {} archive files in {}; pruned idempotency_keys={} notifications={} used_keys={}",
                r.requests.len(),
                r.archives.len(),
                retention.archive_dir.display(),
                r.pruned.idempotency_keys,
                r.pruned.notifications,
                r.pruned.used_keys
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `signoff backup`: a consistent online copy of the embedded database, checked by opening it.
async fn backup(db: &StoreArgs, out: &std::path::Path) -> u8 {
    let path = match db.database() {
        Ok(signoff_server::Database::Sqlite(path)) => path,
        Ok(signoff_server::Database::Postgres(_)) => {
            eprintln!("error: backup copies the embedded SQLite database; back up PostgreSQL with pg_dump or your provider's snapshots (docs/runbook.md)");
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if out.exists() {
        eprintln!("error: --out {}: already exists; a backup never overwrites", out.display());
        return 2;
    }
    if let Err(e) = signoff_store_sqlite::SqliteStore::snapshot(&path, out) {
        eprintln!("error: {e}");
        return 2;
    }
    let requests = match signoff_store_sqlite::SqliteStore::open(out) {
        Ok(copy) => signoff_store::Store::list(&copy, &signoff_store::ListQuery { limit: 1, ..Default::default() }).await.map(|p| p.items.len()),
        Err(e) => Err(e),
    };
    if let Err(e) = requests {
        eprintln!("error: the copy at {} does not open: {e}", out.display());
        return 1;
    }
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!("backed up {} to {} ({:.1} MB)", path.display(), out.display(), bytes as f64 / 1e6);
    let key = path.with_file_name("audit.key");
    if key.exists() {
        println!("keep the audit log's signing key {} with it (a secret: copy it to a safe place, not beside the backup)", key.display());
    }
    0
}

async fn transfer(db: StoreArgs, file: Option<PathBuf>, export: bool) -> u8 {
    let opened = if export { db.open_snapshot().await } else { db.open().await.map(|s| (s, None)) };
    let (store, _snapshot) = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = if export {
        let out = file_or_std(&file, "--out", |f| Ok(Box::new(std::io::BufWriter::new(std::fs::File::create(f)?)) as Box<dyn std::io::Write>), || {
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        });
        let mut out = match out {
            Ok(out) => out,
            Err(code) => return code,
        };
        let r = signoff_server::transfer::export(&*store, &mut *out).await;
        let _ = out.flush();
        r
    } else {
        // (The import reads its input twice, checking it all before writing any of it:
        // standard input is kept in a temporary file for the second reading.)
        let spooled = || {
            let mut f = tempfile::tempfile()?;
            std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
            std::io::Seek::rewind(&mut f)?;
            Ok(f)
        };
        let input = match &file {
            Some(f) => std::fs::File::open(f).map_err(|e| format!("--in {}: {e}", f.display())),
            None => spooled().map_err(|e: std::io::Error| format!("standard input: {e}")),
        };
        let mut input = match input {
            Ok(input) => std::io::BufReader::new(input),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        signoff_server::transfer::import(&*store, &mut input).await
    };
    match result {
        Ok(c) => {
            eprintln!(
                "{} requests={} events={} policies={} directory_changes={}",
                if export { "exported" } else { "imported" },
                c.requests,
                c.events,
                c.policies,
                c.directory_changes
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Run the `[retention]` rules of --config against the database now (or --as-of).
    Run {
        #[command(flatten)]
        db: StoreArgs,
        /// The configuration file with the `[retention]` section (and `audit_key`, if set).
        #[arg(long, env = "SIGNOFF_CONFIG")]
        config: Option<PathBuf>,
        /// Act as if it were this time (RFC 3339): with --dry-run, what will go by then.
        #[arg(long)]
        as_of: Option<String>,
        /// Change nothing; list what would be archived.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Every event, in log (commit) order, as NDJSON records (admins): one line per event with
    /// its policy, the hash of what was submitted, the decision and the request's status.
    Export {
        #[command(flatten)]
        remote: Remote,
        /// Events at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Events before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only requests under this policy.
        #[arg(long)]
        policy: Option<String>,
        /// Only events of this type (submitted, approved, rejected, completed, …).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only requests in this status now.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["pending", "approved", "rejected", "expired", "cancelled"]))]
        status: Option<String>,
        /// Start at this log index (the `next_cursor` an earlier export printed).
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files offline; every problem is listed (exit 1), and warnings for what
    /// is legal but wrong against the directory.
    Check {
        /// Policy files, or directories of them (their *.yaml and *.yml files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The directory to check people and groups against [default: the demo directory].
        #[arg(long)]
        directory: Option<PathBuf>,
    },
    /// The policies the server has loaded.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// What submitting a context would produce.
    Plan {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        input: PolicyInput,
        /// Plan as if this user submitted (default: you).
        #[arg(long)]
        requester: Option<String>,
    },
    /// What-if: replay the past requests of a policy through a candidate policy FILE and show
    /// what would route differently, the change in auto-approval and load, and the expected
    /// change in time to decision (admins and the policy's owners; nothing is stored).
    Simulate {
        #[command(flatten)]
        remote: Remote,
        /// The candidate policy (YAML).
        file: PathBuf,
        /// The live policy whose requests are replayed [default: the candidate's id].
        #[arg(long)]
        policy: Option<String>,
        /// From when: a duration back from now (30d) or an RFC 3339 time [default: 30d].
        #[arg(long)]
        since: Option<String>,
        /// Until when, likewise [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Example requests shown per kind of difference.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
        examples: u32,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random token for USER and the directory line with its hash.
    New {
        /// The directory user the token signs in as.
        user: String,
    },
}

fn main() -> ExitCode {
    signoff_server::install_tls();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Submit { remote, input, subject, title, resubmits, idempotency_key } => {
                client::submit(&remote, &input.policy, &input.context, subject, title, resubmits, idempotency_key).await
            }
            Command::Status { remote, id } => client::status(&remote, &id).await,
            Command::Action { remote, id, action, step, comment, item, to, edits, idempotency_key } => {
                client::action(&remote, &id, client::ActionArgs { action, step, comment, item, to, edits }, idempotency_key).await
            }
            Command::History { remote, id } => client::history(&remote, &id).await,
            Command::Inbox { remote, all } => client::inbox(&remote, all).await,
            Command::Requests { remote, status, policy, overdue, limit } => {
                client::requests(&remote, client::RequestFilter { status, policy, overdue, limit }).await
            }
            Command::Whoami { remote } => client::whoami(&remote).await,
            Command::Health { remote, ready } => client::health(&remote, ready).await,
            Command::Report { remote, out, policy, days } => client::report(&remote, &out, policy.as_deref(), days).await,
            Command::Stats { remote, since, until, policy, user } => client::stats(&remote, client::StatsArgs { since, until, policy, user }).await,
            Command::Token(TokenCommand::New { user }) => client::token_new(&user),
            Command::Policy(PolicyCommand::List { remote }) => client::policy_list(&remote).await,
            Command::Wait { remote, id, timeout } => client::wait(&remote, &id, timeout.as_deref()).await,
            Command::Policy(PolicyCommand::Check { files, directory }) => client::policy_check(&files, directory.as_deref()),
            Command::Policy(PolicyCommand::Simulate { remote, file, policy, since, until, examples }) => {
                client::simulate(&remote, &file, policy, client::StatsArgs { since, until, policy: None, user: None }, examples).await
            }
            Command::Policy(PolicyCommand::Plan { remote, input, requester }) => {
                client::plan(&remote, &input.policy, &input.context, requester).await
            }
            Command::Demo => demo::run().await,
            Command::Seed { db, scenario, requests, days, until, seed, policies, directory } => {
                seed_history(db, SeedArgs { scenario, requests, days, until, seed, sources: signoff_server::Sources { policies, directory } }).await
            }
            Command::Migrate { db } => match db.open().await {
                Ok(_) => {
                    println!("migrated");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            },
            Command::Audit(AuditCommand::Export { remote, from, to, policy, kind, actor, status, cursor, output }) => {
                let args = verify::ExportArgs {
                    from: from.as_deref(),
                    to: to.as_deref(),
                    policy: policy.as_deref(),
                    kind: kind.as_deref(),
                    actor: actor.as_deref(),
                    status: status.as_deref(),
                    cursor,
                    output: output.as_deref(),
                };
                verify::export(&remote, args).await
            }
            Command::Retention(RetentionCommand::Run { db, config, as_of, dry_run }) => retention(db, config, as_of, dry_run).await,
            Command::Verify { remote, db, checkpoint, request, save, archive, export } => {
                if let Some(export) = export {
                    verify::export_file(&export).await
                } else if let Some(archive) = archive {
                    verify::archive(&archive, checkpoint.as_deref())
                } else if db.data.is_some() || db.database_url.is_some() {
                    verify::offline(&db, checkpoint.as_deref(), remote.json).await
                } else {
                    verify::online(&remote, request.as_deref(), checkpoint.as_deref(), save.as_deref()).await
                }
            }
            Command::Backup { db, out } => backup(&db, &out).await,
            Command::Export { db, out } => transfer(db, out, true).await,
            Command::Import { db, input } => transfer(db, input, false).await,
        }
    });
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_and_flag_has_help() {
        fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path != " signoff" {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
