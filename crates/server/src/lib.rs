//! signoff's server: configuration, the HTTP API and the entry point `run`, which starts the
//! whole service on a listener the caller bound (so tests run the real thing on port 0).

pub mod audit;
pub mod catalog;
pub mod clock;
pub mod error;
pub mod feed;
pub mod http;
pub mod insights;
pub mod live;
pub mod notify;
pub mod oidc;
pub mod people;
pub mod retention;
pub mod scheduler;
pub mod seed;
pub mod service;
pub mod settings;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod traces;
pub mod transfer;
pub mod transport;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use signoff_store::Store;
use signoff_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use catalog::Sources;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::StartError;
pub use service::Service;

/// Where the data lives, from `--database-url` or `--data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// Where the data is, for people: the SQLite file's full path, or the PostgreSQL server and
    /// database (never the password).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => {
                let full = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("{} (embedded SQLite; `signoff export` backs it up while serving)", full.display())
            }
            Database::Postgres(url) => match url.parse::<signoff_store_postgres::Config>() {
                Ok(c) => {
                    let hosts: Vec<String> = c
                        .get_hosts()
                        .iter()
                        .map(|h| match h {
                            signoff_store_postgres::Host::Tcp(h) => h.clone(),
                            #[cfg(unix)]
                            signoff_store_postgres::Host::Unix(p) => p.display().to_string(),
                        })
                        .collect();
                    format!("PostgreSQL database {} on {}", c.get_dbname().unwrap_or("(default)"), hosts.join(","))
                }
                Err(_) => "PostgreSQL".into(),
            },
        }
    }

    /// `sqlite://PATH` or `postgres://user@host:port/database`.
    pub fn parse(url: &str) -> Result<Database, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("database-url: `sqlite://` needs a file path, e.g. sqlite://./signoff-data/signoff.db".into());
            }
            return Ok(Database::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<signoff_store_postgres::Config>().map_err(|e| format!("database-url: {e}"))?;
            return Ok(Database::Postgres(url.to_string()));
        }
        Err(format!("database-url: `{url}` must start with sqlite:// or postgres://"))
    }

    pub async fn open(&self) -> Result<Arc<dyn Store>, StartError> {
        self.open_with(&Memory::default()).await
    }

    /// `open`, keeping the store's state cache within `memory`.
    pub async fn open_with(&self, memory: &Memory) -> Result<Arc<dyn Store>, StartError> {
        match self {
            Database::Postgres(url) => {
                let store = signoff_store_postgres::PostgresStore::connect_with(url, memory.state_cache_bytes).await?;
                Ok(Arc::new(store))
            }
            Database::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|error| StartError::DataDir { path: parent.to_path_buf(), error })?;
                }
                let store = SqliteStore::open_with(path, memory.state_cache_bytes)
                    .map_err(|error| StartError::Database { file: Some(path.clone()), error })?;
                Ok(Arc::new(store))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    pub sources: Sources,
    pub notify: notify::NotifyConfig,
    pub limits: transport::Limits,
    pub memory: Memory,
    /// The file holding the audit log's signing key; by default `audit.key` beside the embedded
    /// database (created on first start), and none on PostgreSQL.
    pub audit_key: Option<std::path::PathBuf>,
    /// Archiving and pruning; pruning runs with its defaults when this is absent.
    pub retention: Option<retention::RetentionConfig>,
    /// Keep the analytics projection current in the background (it catches up when read).
    pub insights: bool,
    /// Rate limits; none, nothing is limited. (`signoff serve` turns the defaults on.)
    pub rate_limits: Option<throttle::RateLimits>,
    /// Serve HTTPS with these certificates (and require client certificates, if it says so).
    pub tls: Option<tls::TlsFiles>,
    /// Single sign-on: JWT bearer tokens from this issuer, and the web inbox's sign-in.
    pub oidc: Option<oidc::OidcConfig>,
}

impl Config {
    /// The data in `database`, the policies and directory of `sources`, and every other
    /// setting at its default (no notifications, no rate limits).
    pub fn new(database: Database, sources: Sources) -> Config {
        Config {
            database,
            sources,
            notify: Default::default(),
            limits: Default::default(),
            memory: Default::default(),
            audit_key: None,
            retention: None,
            insights: true,
            rate_limits: None,
            tls: None,
            oidc: None,
        }
    }

    /// Retention, checked: archives go to `archive/` beside the embedded database by default.
    pub fn retention(&self) -> Result<retention::Retention, StartError> {
        let default = match &self.database {
            Database::Sqlite(db) => Some(db.with_file_name("archive")),
            Database::Postgres(_) => None,
        };
        self.retention.clone().unwrap_or_default().check(default).map_err(StartError::Setting)
    }

    /// The audit log's signing key: `audit_key`, else `audit.key` beside the embedded database
    /// (created on first start), else none.
    pub fn audit_key(&self) -> Result<Option<ed25519_dalek::SigningKey>, StartError> {
        let source = match (&self.audit_key, &self.database) {
            (Some(path), _) => audit::KeySource::File(path.clone()),
            (None, Database::Sqlite(db)) => audit::KeySource::File(db.with_file_name("audit.key")),
            (None, Database::Postgres(_)) => audit::KeySource::None,
        };
        source.load().map_err(StartError::Setting)
    }
}

/// How much memory the server may hold for what clients send and ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Request states kept in memory for deciding on, by weight (about twice their JSON size).
    pub state_cache_bytes: u64,
    /// A page of `GET /v1/requests` ends before the item that would take it past this many
    /// bytes of request JSON (with `next_cursor` set); it always holds at least one item.
    pub page_bytes: usize,
}

impl Default for Memory {
    fn default() -> Self {
        Memory { state_cache_bytes: signoff_store::DEFAULT_STATE_CACHE_BYTES, page_bytes: 8 * 1024 * 1024 }
    }
}

/// Selects the TLS implementation of every outgoing connection (webhooks, Slack, SMTP, the CLI
/// client): rustls with ring. Call before building an HTTP client; calling it again is harmless.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An outgoing HTTP client from `make`, trusting the system's certificate authorities (and any
/// `make` adds). On a system without any (a container image without `ca-certificates`), one
/// that trusts only those `make` adds: plain HTTP still works and an HTTPS call fails with an
/// error of its own, where building the client the usual way fails (and `Client::new` panics).
/// The second value says whether the system's authorities were found.
pub fn outgoing_client(make: impl Fn() -> reqwest::ClientBuilder) -> Result<(reqwest::Client, bool), reqwest::Error> {
    install_tls();
    match make().build() {
        Ok(client) => Ok((client, true)),
        // (The only difference between the two is where trust comes from.)
        Err(e) => make().tls_certs_only([]).build().map(|client| (client, false)).map_err(|_| e),
    }
}

/// The background workers beside the HTTP API (`Service::workers` builds them).
pub struct Workers {
    /// Fires due timers.
    pub scheduler: scheduler::Scheduler,
    /// Delivers the outbox.
    pub dispatcher: Arc<notify::dispatch::Dispatcher>,
    /// Appends committed events to the audit log.
    pub sequencer: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Keeps the analytics projection current (unless it is set to catch up only when read).
    pub follower: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Opens the store and loads the catalog.
pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Service>, StartError> {
    install_tls();
    telemetry::install();
    config.notify.check().map_err(StartError::Setting)?;
    let tls = config.tls.clone().map(tls::Tls::load).transpose().map_err(StartError::Setting)?;
    let oidc = config.oidc.clone().map(oidc::Oidc::new).transpose().map_err(StartError::Setting)?;
    let store = config.database.open_with(&config.memory).await?;
    let retention = config.retention()?;
    let key = config.audit_key()?;
    if key.is_none() {
        tracing::warn!("the audit log has no signing key (`audit-key`): no checkpoints are published");
    }
    let service = Service::start(store, config.sources.clone(), clock).await?;
    Ok(Arc::new(service.with_notify(config.notify.clone()).with_limits(config.limits).with_memory(config.memory).with_audit_key(key).with_retention(retention).with_insights(config.insights).with_rate_limits(config.rate_limits.clone()).with_tls(tls.map(Arc::new)).with_oidc(oidc.map(Arc::new))))
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains: live streams end,
/// long polls answer, calls in flight finish within the grace period (`Limits`). The timer
/// scheduler and the notification dispatcher run alongside; SIGHUP reloads policies and
/// directory.
pub async fn serve(service: Arc<Service>, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let s = service.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            while hup.recv().await.is_some() {
                match s.reload().await {
                    Ok(c) => tracing::info!(policies = c.policies.len(), "reloaded policies and directory"),
                    Err(e) => tracing::error!(error = %e, "reload failed; keeping the previous policies and directory"),
                }
                if let Some(tls) = s.tls() {
                    match tls.reload() {
                        Ok(()) => tracing::info!("reloaded the TLS certificates; connections already open keep theirs"),
                        Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the previous certificates"),
                    }
                }
            }
        });
    }
    // Directory changes other instances make reach this one within a second.
    let people = {
        let s = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = s.catch_up_directory().await {
                    tracing::warn!(error = %e, "cannot read the directory's changes; retrying");
                }
            }
        })
    };
    let Workers { scheduler, dispatcher, sequencer, follower } = service.workers();
    let follower = follower.map(tokio::spawn);
    let scheduler = tokio::spawn(scheduler.run());
    let dispatcher = tokio::spawn(dispatcher.run());
    let sequencer = tokio::spawn(sequencer);
    let retention = tokio::spawn(service.clone().retain());
    let served = serve_http(service, listener, shutdown).await;
    // In-flight commits finish in the store's writer thread whatever happens to these tasks; a
    // delivery cut short is retried at the next start.
    scheduler.abort();
    dispatcher.abort();
    sequencer.abort();
    retention.abort();
    people.abort();
    if let Some(f) = follower {
        f.abort();
    }
    served
}

/// The HTTP API alone (no scheduler, no dispatcher) on `listener`, until `shutdown` resolves;
/// then drains as `serve` does.
pub async fn serve_http(service: Arc<Service>, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let limits = *service.limits();
    let router = http::router(service.clone());
    let closing = service.clone();
    let shutdown = async move {
        shutdown.await;
        closing.begin_shutdown();
    };
    let tls = service.tls().cloned();
    transport::serve(router, listener, limits, tls, shutdown).await
}
