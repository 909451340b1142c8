//! `signoff serve`: its flags and environment (`SIGNOFF_<FLAG>`), laid over the config file
//! and the defaults by `signoff_server::settings`. Prints `listening on http://…` as its first
//! line on stdout, then who the demo users are and where the data is.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use signoff_server::SystemClock;
use signoff_server::settings::{Layer, LogFormat, Settings};
use signoff_server::traces::Traces;
use tracing_subscriber::Layer as _;

#[derive(Args, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7800]; port 0 picks a free port.
    #[arg(long, env = "SIGNOFF_LISTEN")]
    listen: Option<String>,
    #[command(flatten)]
    store: crate::StoreArgs,
    /// Directory of *.yaml / *.yml policies [default: the built-in examples].
    #[arg(long, env = "SIGNOFF_POLICIES")]
    policies: Option<PathBuf>,
    /// Directory file [default: the built-in demo directory, with demo tokens].
    #[arg(long, env = "SIGNOFF_DIRECTORY")]
    directory: Option<PathBuf>,
    /// Time a connection has to send a complete request head, from its start or the end of its
    /// previous response (so also how long an idle keep-alive connection stays) [default: 10s].
    #[arg(long, env = "SIGNOFF_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// Time a request body has to arrive whole [default: 30s].
    #[arg(long, env = "SIGNOFF_BODY_TIMEOUT")]
    body_timeout: Option<String>,
    /// Connections open at once; more are answered 503 and closed [default: 4096].
    #[arg(long, env = "SIGNOFF_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// On SIGTERM, how long calls in flight may take to finish [default: 10s].
    #[arg(long, env = "SIGNOFF_SHUTDOWN_GRACE")]
    shutdown_grace: Option<String>,
    /// Memory for request states kept to decide on, in MiB (weighed at about twice their JSON
    /// size) [default: 64].
    #[arg(long, env = "SIGNOFF_STATE_CACHE_MB")]
    state_cache_mb: Option<u64>,
    /// Largest page of `GET /v1/requests`, in MiB of request JSON (a page always holds one
    /// request; the rest follow with `next_cursor`) [default: 8].
    #[arg(long, env = "SIGNOFF_PAGE_MB")]
    page_mb: Option<u64>,
    /// Log lines as `text` (for a person) or `json` (one object per line, for log pipelines)
    /// [default: text].
    #[arg(long, env = "SIGNOFF_LOG_FORMAT")]
    log_format: Option<String>,
    /// Also serve `/metrics` on this address (for a scraper kept off the API's port).
    #[arg(long, env = "SIGNOFF_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// The file holding the audit log's checkpoint signing key, created on first start
    /// [default: audit.key beside the embedded database; none on PostgreSQL, where every
    /// instance must be given the same file].
    #[arg(long, env = "SIGNOFF_AUDIT_KEY")]
    audit_key: Option<PathBuf>,
    /// Keep the analytics projection (statistics, insights) current in the background; with
    /// false it catches up when it is read [default: true].
    #[arg(long, env = "SIGNOFF_INSIGHTS", value_name = "BOOL")]
    insights: Option<bool>,
    /// Limit calls per caller and per client address (submissions, actions, reads, failed
    /// authentications), answering 429 past a limit; the limits are set in the config file's
    /// [rate_limits] [default: true].
    #[arg(long, env = "SIGNOFF_RATE_LIMITS", value_name = "BOOL")]
    rate_limits: Option<bool>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Reloaded on
    /// SIGHUP: new connections get the new certificate, open ones keep theirs.
    #[arg(long, env = "SIGNOFF_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SIGNOFF_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate that chains to one of these PEM CAs (mutual TLS); a client
    /// without one cannot connect. Needs --tls-cert.
    #[arg(long, env = "SIGNOFF_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// A TOML file with any of: listen, data, database_url, policies, directory, header_timeout,
    /// body_timeout, max_connections, shutdown_grace, state_cache_mb, page_mb, log_format,
    /// metrics_listen, audit_key, insights, tls_cert, tls_key, client_ca, [notify], [retention],
    /// [rate_limits] and [oidc].
    #[arg(long, env = "SIGNOFF_CONFIG")]
    config: Option<PathBuf>,
}

impl ServeArgs {
    /// The flags and environment, as the top layer of settings.
    fn layer(self) -> (Layer, Option<PathBuf>) {
        let layer = Layer {
            listen: self.listen,
            data: self.store.data,
            database_url: self.store.database_url,
            policies: self.policies,
            directory: self.directory,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
            state_cache_mb: self.state_cache_mb,
            page_mb: self.page_mb,
            log_format: self.log_format,
            metrics_listen: self.metrics_listen,
            audit_key: self.audit_key,
            notify: None,
            retention: None,
            insights: self.insights,
            oidc: None,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            client_ca: self.client_ca,
            rate_limits: self.rate_limits.map(|enabled| signoff_server::throttle::RateLimitsFile { enabled: Some(enabled), ..Default::default() }),
        };
        (layer, self.config)
    }
}

/// The settings `args` make, over the config file and the defaults.
pub fn resolve(args: ServeArgs) -> Result<Settings, String> {
    let (flags, config) = args.layer();
    Settings::resolve(flags, config.as_deref()).map_err(|e| e.to_string())
}

/// Who a demo user is, for the first screen: name, groups, manager, admin.
fn role(dir: &signoff_engine::Directory, id: &str) -> String {
    let mut parts = Vec::new();
    if let Some(name) = dir.user(id).and_then(|u| u.name.clone()) {
        parts.push(name);
    }
    let groups = dir.groups_of(id);
    if !groups.is_empty() {
        parts.push(format!("in {}", groups.join(", ")));
    }
    if let Some(manager) = dir.user(id).and_then(|u| u.manager.clone()) {
        parts.push(format!("reports to {manager}"));
    }
    if dir.is_admin(id) {
        parts.push("admin".into());
    }
    if parts.is_empty() { String::new() } else { format!("({})", parts.join("; ")) }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The log on stderr, as `format` says (`RUST_LOG` filters it), and the trace exporter when
/// the environment names an OTLP endpoint.
fn start_log(format: LogFormat) -> Result<Option<Traces>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let traces = Traces::from_env()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into());
    // Only signoff's own spans are exported, not its libraries' inner ones.
    let ours = tracing_subscriber::filter::Targets::new().with_target("signoff_server", tracing::Level::INFO);
    let registry = tracing_subscriber::registry().with(traces.as_ref().map(|t| t.layer().with_filter(ours)));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal; a log file or collector gets plain text.
        LogFormat::Text => registry.with(log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_filter(filter)).init(),
        LogFormat::Json => registry.with(log.json().flatten_event(true).with_current_span(true).with_filter(filter)).init(),
    }
    Ok(traces)
}

pub async fn run(args: ServeArgs) -> u8 {
    let settings = match resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let traces = match start_log(settings.log_format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let service = match signoff_server::build(&settings.config, Arc::new(SystemClock)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: listen: cannot bind {}: {e}", settings.listen);
            return 2;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut metrics_addr = None;
    if let Some(at) = settings.metrics_listen {
        match tokio::net::TcpListener::bind(at).await {
            Ok(l) => {
                metrics_addr = l.local_addr().ok();
                let app = signoff_server::http::metrics_router(service.clone());
                tokio::spawn(async move { axum::serve(l, app).await });
            }
            Err(e) => {
                eprintln!("error: metrics-listen: cannot bind {at}: {e}");
                return 2;
            }
        }
    }
    {
        let mut out = std::io::stdout().lock();
        let scheme = if service.tls().is_some() { "https" } else { "http" };
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = writeln!(out, "web inbox: {scheme}://{addr}/ (sign in with a token)");
        if service.tls().is_some_and(|t| t.requires_client_certificates()) {
            let _ = writeln!(out, "clients must present a certificate from the --client-ca authorities");
        }
        if let Some(m) = metrics_addr {
            let _ = writeln!(out, "metrics: http://{m}/metrics");
        }
        let catalog = service.catalog();
        if !catalog.demo_tokens.is_empty() {
            let _ = writeln!(out, "demo directory loaded; tokens (export SIGNOFF_TOKEN=...):");
            for (user, token) in &catalog.demo_tokens {
                let _ = writeln!(out, "  {user}: {token}  {}", role(&catalog.directory, user));
            }
        }
        let _ = writeln!(out, "policies: {}", catalog.policies.keys().cloned().collect::<Vec<_>>().join(", "));
        let _ = writeln!(out, "data: {}", settings.config.database.describe());
        if !catalog.warnings.is_empty() {
            let _ = writeln!(out, "policy warnings: {} (see the log, or `signoff policy check`)", catalog.warnings.len());
        }
        let _ = out.flush();
    }
    let served = signoff_server::serve(service, listener, shutdown_signal()).await;
    if let Some(t) = traces {
        t.shutdown();
    }
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_server::Database;

    #[test]
    fn defaults_need_no_configuration() {
        let s = resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7800");
        assert_eq!(s.config.database, Database::Sqlite(PathBuf::from("signoff-data/signoff.db")));
    }

    #[test]
    fn flag_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("signoff.toml");
        std::fs::write(&cfg, "listen = \"127.0.0.1:9000\"\ndata = \"/tmp/x\"\n").unwrap();
        let s = resolve(ServeArgs { listen: Some("127.0.0.1:0".into()), config: Some(cfg), ..ServeArgs::default() }).unwrap();
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.config.database, Database::Sqlite(PathBuf::from("/tmp/x/signoff.db")));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = resolve(ServeArgs { listen: Some("nope".into()), ..ServeArgs::default() }).err().unwrap();
        assert!(err.starts_with("listen:"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("signoff.toml");
        std::fs::write(&cfg, "colour = 1\n").unwrap();
        let err = resolve(ServeArgs { config: Some(cfg), ..ServeArgs::default() }).err().unwrap();
        assert!(err.starts_with("config:") && err.contains("colour"), "{err}");
        let err = resolve(ServeArgs { store: crate::StoreArgs { database_url: Some("mysql://x".into()), data: None }, ..ServeArgs::default() }).err().unwrap();
        assert!(err.starts_with("database-url:"), "{err}");
    }

    #[test]
    fn demo_tokens_stay_on_loopback() {
        for addr in ["0.0.0.0:7800", "[::]:7800", "192.0.2.10:7800"] {
            let err = resolve(ServeArgs { listen: Some(addr.into()), ..ServeArgs::default() }).err().unwrap();
            assert!(err.starts_with("directory:") && err.contains("--directory"), "{addr}: {err}");
        }
        for addr in ["127.0.0.1:0", "[::1]:0", "127.0.0.2:0"] {
            assert!(resolve(ServeArgs { listen: Some(addr.into()), ..ServeArgs::default() }).is_ok(), "{addr}");
        }
        let dir = tempfile::tempdir().unwrap();
        let directory = dir.path().join("directory.yaml");
        std::fs::write(&directory, "users: []\n").unwrap();
        let s = resolve(ServeArgs { listen: Some("0.0.0.0:0".into()), directory: Some(directory), ..ServeArgs::default() });
        assert!(s.is_ok(), "a real directory may listen anywhere");
    }
}
