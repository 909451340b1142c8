//! `signoff serve`: settings layered flag > environment (`SIGNOFF_<FLAG>`) > config file >
//! default, checked before anything starts, each problem reported as one line naming the
//! setting. Prints `listening on http://…` as its first line on stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::Deserialize;
use signoff_server::{Config, Database, Sources, SystemClock};

#[derive(Args, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7800]; port 0 picks a free port.
    #[arg(long, env = "SIGNOFF_LISTEN")]
    listen: Option<String>,
    /// Directory of the embedded database [default: ./signoff-data].
    #[arg(long, env = "SIGNOFF_DATA")]
    data: Option<PathBuf>,
    /// sqlite://PATH (default: <data>/signoff.db).
    #[arg(long, env = "SIGNOFF_DATABASE_URL")]
    database_url: Option<String>,
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
    /// A TOML file with any of: listen, data, database_url, policies, directory, header_timeout,
    /// body_timeout, max_connections, shutdown_grace, state_cache_mb, page_mb, and [notify].
    #[arg(long, env = "SIGNOFF_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data: Option<PathBuf>,
    database_url: Option<String>,
    policies: Option<PathBuf>,
    directory: Option<PathBuf>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    max_connections: Option<usize>,
    shutdown_grace: Option<String>,
    state_cache_mb: Option<u64>,
    page_mb: Option<u64>,
    /// Where notifications go (webhooks); only in the file, since it holds secrets.
    #[serde(default)]
    notify: signoff_server::notify::NotifyConfig,
}

/// The resolved settings.
pub struct Settings {
    pub listen: SocketAddr,
    pub config: Config,
}

pub fn resolve(args: ServeArgs) -> Result<Settings, String> {
    let file: FileConfig = match &args.config {
        None => FileConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("config: {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("config: {}: {}", path.display(), e.message()))?
        }
    };
    let listen = args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:7800".into());
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("listen: `{listen}` is not an address like 127.0.0.1:7800"))?;
    let data = args.data.or(file.data).unwrap_or_else(|| PathBuf::from("signoff-data"));
    let database = match args.database_url.or(file.database_url) {
        Some(url) => Database::parse(&url)?,
        None => Database::Sqlite(data.join("signoff.db")),
    };
    let policies = args.policies.or(file.policies);
    if let Some(p) = &policies
        && !p.is_dir() {
            return Err(format!("policies: {} is not a directory", p.display()));
        }
    let directory = args.directory.or(file.directory);
    if let Some(d) = &directory
        && !d.is_file() {
            return Err(format!("directory: {} is not a file", d.display()));
        }
    if directory.is_none() && !listen.ip().is_loopback() {
        return Err(format!(
            "directory: the built-in demo directory makes a token for every demo user (the admin's too), so it is served only on a loopback address; pass --directory FILE to listen on {listen}"
        ));
    }
    file.notify.check()?;
    let defaults = signoff_server::transport::Limits::default();
    let duration = |name: &str, value: Option<String>, default: std::time::Duration| -> Result<std::time::Duration, String> {
        let Some(text) = value else { return Ok(default) };
        let d = signoff_engine::duration::parse(&text).map_err(|e| format!("{name}: `{text}`: {e}"))?;
        d.try_into().ok().filter(|d: &std::time::Duration| !d.is_zero()).ok_or_else(|| format!("{name}: `{text}` must be a positive duration such as 10s"))
    };
    let max_connections = args.max_connections.or(file.max_connections).unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err("max-connections: must be at least 1".into());
    }
    let limits = signoff_server::transport::Limits {
        header_timeout: duration("header-timeout", args.header_timeout.or(file.header_timeout), defaults.header_timeout)?,
        body_timeout: duration("body-timeout", args.body_timeout.or(file.body_timeout), defaults.body_timeout)?,
        max_connections,
        shutdown_grace: duration("shutdown-grace", args.shutdown_grace.or(file.shutdown_grace), defaults.shutdown_grace)?,
        ..defaults
    };
    const MIB: u64 = 1024 * 1024;
    let memory_defaults = signoff_server::Memory::default();
    let page_mb = args.page_mb.or(file.page_mb);
    if page_mb == Some(0) {
        return Err("page-mb: must be at least 1".into());
    }
    let memory = signoff_server::Memory {
        state_cache_bytes: args.state_cache_mb.or(file.state_cache_mb).map_or(memory_defaults.state_cache_bytes, |mb| mb.saturating_mul(MIB)),
        page_bytes: page_mb.map_or(memory_defaults.page_bytes, |mb| mb.saturating_mul(MIB) as usize),
    };
    Ok(Settings { listen, config: Config { database, sources: Sources { policies, directory }, notify: file.notify, limits, memory } })
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

pub async fn run(args: ServeArgs) -> u8 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; a log file or collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = match resolve(args) {
        Ok(s) => s,
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
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
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
    match signoff_server::serve(service, listener, shutdown_signal()).await {
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
        let err = resolve(ServeArgs { database_url: Some("mysql://x".into()), ..ServeArgs::default() }).err().unwrap();
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
