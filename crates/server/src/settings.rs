//! Layered settings: flag > environment > configuration file > default. The binary reads flags
//! and the environment (`SIGNOFF_<FLAG>`) into a `Layer`; `Settings::resolve` lays it over the
//! TOML file's, fills in the defaults and checks every setting before anything starts, each
//! problem one line that names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::StartError;
use crate::notify::NotifyConfig;
use crate::transport::Limits;
use crate::{Config, Database, Memory, Sources};

/// One layer of settings: what flags and the environment say, or what the file says. Unset
/// fields fall through to the layer below.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub database_url: Option<String>,
    pub policies: Option<PathBuf>,
    pub directory: Option<PathBuf>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub state_cache_mb: Option<u64>,
    pub page_mb: Option<u64>,
    /// `text` (default) or `json`, one object per line, for log pipelines.
    pub log_format: Option<String>,
    /// An address to serve `/metrics` on besides the main listener.
    pub metrics_listen: Option<String>,
    /// The file holding the audit log's signing key (created if missing).
    pub audit_key: Option<PathBuf>,
    /// Where notifications go; only in the file, since it holds secrets.
    pub notify: Option<NotifyConfig>,
    /// Archiving and pruning (`[retention]`); only in the file.
    pub retention: Option<crate::retention::RetentionConfig>,
    /// Keep the analytics projection current in the background (default true); off, it
    /// catches up when it is read.
    pub insights: Option<bool>,
    /// Rate limits (`[rate_limits]`; `--rate-limits` sets `enabled`).
    pub rate_limits: Option<crate::throttle::RateLimitsFile>,
    /// Single sign-on (`[oidc]`); only in the file, since it holds the client secret.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// PEM certificate chain to serve HTTPS with (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CAs client certificates must chain to; with it every client needs one.
    pub client_ca: Option<PathBuf>,
}

impl Layer {
    /// The file at `path`, as a layer.
    pub fn from_file(path: &Path) -> Result<Layer, StartError> {
        let text = std::fs::read_to_string(path).map_err(|e| setting(format!("config: {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| setting(format!("config: {}: {}", path.display(), e.message())))
    }

    /// This layer over `lower`: each setting this one has, else `lower`'s.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            listen: self.listen.or(lower.listen),
            data: self.data.or(lower.data),
            database_url: self.database_url.or(lower.database_url),
            policies: self.policies.or(lower.policies),
            directory: self.directory.or(lower.directory),
            header_timeout: self.header_timeout.or(lower.header_timeout),
            body_timeout: self.body_timeout.or(lower.body_timeout),
            max_connections: self.max_connections.or(lower.max_connections),
            shutdown_grace: self.shutdown_grace.or(lower.shutdown_grace),
            state_cache_mb: self.state_cache_mb.or(lower.state_cache_mb),
            page_mb: self.page_mb.or(lower.page_mb),
            log_format: self.log_format.or(lower.log_format),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            audit_key: self.audit_key.or(lower.audit_key),
            notify: self.notify.or(lower.notify),
            retention: self.retention.or(lower.retention),
            insights: self.insights.or(lower.insights),
            oidc: self.oidc.or(lower.oidc),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            client_ca: self.client_ca.or(lower.client_ca),
            rate_limits: match (self.rate_limits, lower.rate_limits) {
                (Some(upper), Some(lower)) => Some(crate::throttle::RateLimitsFile { enabled: upper.enabled.or(lower.enabled), ..lower }),
                (upper, lower) => upper.or(lower),
            },
        }
    }
}

fn setting(message: String) -> StartError {
    StartError::Setting(message)
}

/// The resolved settings of a server.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub config: Config,
    pub log_format: LogFormat,
    pub metrics_listen: Option<SocketAddr>,
}

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for a person.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl Settings {
    /// `flags` over the file at `config` (if any) over the defaults, checked.
    pub fn resolve(flags: Layer, config: Option<&Path>) -> Result<Settings, StartError> {
        let file = config.map(Layer::from_file).transpose()?.unwrap_or_default();
        Settings::from_layer(flags.over(file))
    }

    /// `layer` with the defaults filled in, checked.
    pub fn from_layer(layer: Layer) -> Result<Settings, StartError> {
        let listen = layer.listen.unwrap_or_else(|| "127.0.0.1:7800".into());
        let listen: SocketAddr = listen.parse().map_err(|_| setting(format!("listen: `{listen}` is not an address like 127.0.0.1:7800")))?;
        let database = database(layer.data, layer.database_url)?;
        let sources = sources(layer.policies, layer.directory, listen)?;
        let notify = layer.notify.unwrap_or_default();
        notify.check().map_err(setting)?;
        let limits = limits(layer.header_timeout, layer.body_timeout, layer.max_connections, layer.shutdown_grace)?;
        let memory = memory(layer.state_cache_mb, layer.page_mb)?;
        let log_format = match layer.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(setting(format!("log-format: `{other}` is neither text nor json"))),
        };
        let metrics_listen = match layer.metrics_listen {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| setting(format!("metrics-listen: `{a}` is not an address like 127.0.0.1:9100")))?),
        };
        let rate_limits = layer.rate_limits.unwrap_or_default().resolve().map_err(setting)?;
        if let Some(o) = &layer.oidc {
            o.check().map_err(setting)?;
        }
        let tls = match (layer.tls_cert, layer.tls_key, layer.client_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(crate::tls::TlsFiles { cert, key, client_ca }),
            (Some(_), None, _) => return Err(setting("tls-key: --tls-cert needs --tls-key, the certificate's private key".into())),
            (None, Some(_), _) => return Err(setting("tls-cert: --tls-key needs --tls-cert, the certificate chain it goes with".into())),
            (None, None, Some(_)) => return Err(setting("client-ca: client certificates need TLS: give --tls-cert and --tls-key too".into())),
        };
        let config = Config {
            notify,
            limits,
            memory,
            audit_key: layer.audit_key,
            retention: layer.retention,
            insights: layer.insights.unwrap_or(true),
            rate_limits,
            tls,
            oidc: layer.oidc,
            ..Config::new(database, sources)
        };
        Ok(Settings { listen, config, log_format, metrics_listen })
    }
}

/// The database `database_url` names, else the embedded one in `data` (`./signoff-data`).
pub fn database(data: Option<PathBuf>, database_url: Option<String>) -> Result<Database, StartError> {
    match database_url {
        Some(url) => Database::parse(&url).map_err(setting),
        None => Ok(Database::Sqlite(data.unwrap_or_else(|| PathBuf::from("signoff-data")).join("signoff.db"))),
    }
}

fn sources(policies: Option<PathBuf>, directory: Option<PathBuf>, listen: SocketAddr) -> Result<Sources, StartError> {
    if let Some(p) = &policies
        && !p.is_dir()
    {
        return Err(setting(format!("policies: {} is not a directory", p.display())));
    }
    if let Some(d) = &directory
        && !d.is_file()
    {
        return Err(setting(format!("directory: {} is not a file", d.display())));
    }
    if directory.is_none() && !listen.ip().is_loopback() {
        return Err(setting(format!(
            "directory: the built-in demo directory makes a token for every demo user (the admin's too), so it is served only on a loopback address; pass --directory FILE to listen on {listen}"
        )));
    }
    Ok(Sources { policies, directory })
}

fn duration(name: &str, value: Option<String>, default: Duration) -> Result<Duration, StartError> {
    let Some(text) = value else { return Ok(default) };
    let d = signoff_engine::duration::parse(&text).map_err(|e| setting(format!("{name}: `{text}`: {e}")))?;
    d.try_into()
        .ok()
        .filter(|d: &Duration| !d.is_zero())
        .ok_or_else(|| setting(format!("{name}: `{text}` must be a positive duration such as 10s")))
}

fn limits(header_timeout: Option<String>, body_timeout: Option<String>, max_connections: Option<usize>, shutdown_grace: Option<String>) -> Result<Limits, StartError> {
    let defaults = Limits::default();
    let max_connections = max_connections.unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err(setting("max-connections: must be at least 1".into()));
    }
    Ok(Limits {
        header_timeout: duration("header-timeout", header_timeout, defaults.header_timeout)?,
        body_timeout: duration("body-timeout", body_timeout, defaults.body_timeout)?,
        max_connections,
        shutdown_grace: duration("shutdown-grace", shutdown_grace, defaults.shutdown_grace)?,
        ..defaults
    })
}

fn memory(state_cache_mb: Option<u64>, page_mb: Option<u64>) -> Result<Memory, StartError> {
    const MIB: u64 = 1024 * 1024;
    let defaults = Memory::default();
    if page_mb == Some(0) {
        return Err(setting("page-mb: must be at least 1".into()));
    }
    Ok(Memory {
        state_cache_bytes: state_cache_mb.map_or(defaults.state_cache_bytes, |mb| mb.saturating_mul(MIB)),
        page_bytes: page_mb.map_or(defaults.page_bytes, |mb| mb.saturating_mul(MIB) as usize),
    })
}
