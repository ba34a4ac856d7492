//! The shim's configuration: one clap derive struct, every option also readable from the
//! environment (how a Deployment sets it), validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use url::Url;

/// Configuration of `salve webhook`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "salve-webhook",
    about = "Receive Alertmanager webhooks and turn every alert into exactly one Incident."
)]
pub struct Config {
    /// Namespace the Incidents are created in.
    #[arg(long, env = "SALVE_NAMESPACE", default_value = "salve")]
    pub namespace: String,

    /// Address to listen on.
    #[arg(long, env = "SALVE_WEBHOOK_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// File holding the bearer token Alertmanager must send (a mounted Secret). Re-read when it
    /// changes, so a rotated Secret takes effect without a restart.
    #[arg(long, env = "SALVE_WEBHOOK_TOKEN_FILE")]
    pub token_file: PathBuf,

    /// TLS certificate (PEM). With --tls-key, the shim serves HTTPS only.
    #[arg(long, env = "SALVE_WEBHOOK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "SALVE_WEBHOOK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Base URL of Alertmanager's API (e.g. `http://alertmanager.monitoring:9093`). When set,
    /// a group Alertmanager truncated (`truncatedAlerts > 0`) is fetched whole from its API v2.
    #[arg(long, env = "SALVE_ALERTMANAGER_URL")]
    pub alertmanager_url: Option<Url>,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "SALVE_WEBHOOK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most alerts accepted in one payload (more: 413).
    #[arg(long, env = "SALVE_WEBHOOK_MAX_ALERTS", default_value_t = 1000)]
    pub max_alerts: usize,

    /// How many recently persisted incident names are remembered (duplicates of these cost no
    /// API call).
    #[arg(long, env = "SALVE_WEBHOOK_CACHE_SIZE", default_value_t = 10_000)]
    pub cache_size: usize,

    /// How long a remembered name stays trusted, in seconds.
    #[arg(long, env = "SALVE_WEBHOOK_CACHE_TTL_SECONDS", default_value_t = 3600)]
    pub cache_ttl_seconds: u64,

    /// Most API calls one request makes at the same time.
    #[arg(long, env = "SALVE_WEBHOOK_API_CONCURRENCY", default_value_t = 16)]
    pub api_concurrency: usize,

    /// A request that has not persisted everything after this many seconds is answered 503.
    #[arg(
        long,
        env = "SALVE_WEBHOOK_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub request_timeout_seconds: u64,

    /// On SIGTERM, how long in-flight requests may take to finish, in seconds.
    #[arg(
        long,
        env = "SALVE_WEBHOOK_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 25
    )]
    pub shutdown_grace_seconds: u64,

    /// Seconds a `/readyz` answer is reused before the API server is asked again.
    #[arg(long, env = "SALVE_WEBHOOK_READY_CACHE_SECONDS", default_value_t = 2)]
    pub ready_cache_seconds: u64,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--namespace {0:?} is not a valid namespace name (lowercase DNS-1123 label)")]
    Namespace(String),
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--alertmanager-url {0} must be an http or https URL")]
    AlertmanagerScheme(Url),
}

impl ConfigError {
    /// PascalCase category (metrics label, log field).
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::Namespace(_) => "InvalidNamespace",
            ConfigError::Zero(_) => "InvalidLimit",
            ConfigError::AlertmanagerScheme(_) => "InvalidAlertmanagerUrl",
        }
    }
}

impl Config {
    /// A configuration with every default, for `namespace` and `token_file` (tests, embedding).
    pub fn new(namespace: &str, token_file: impl Into<PathBuf>) -> Config {
        let token_file = token_file.into();
        let mut cfg = Config::parse_from([
            "salve-webhook",
            "--namespace",
            namespace,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "-",
        ]);
        cfg.token_file = token_file;
        cfg
    }

    /// Fails on options that cannot work, with a message naming the option.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !salve_api::names::is_dns1123_label(&self.namespace) {
            return Err(ConfigError::Namespace(self.namespace.clone()));
        }
        for (name, v) in [
            ("max-body-bytes", self.max_body_bytes),
            ("max-alerts", self.max_alerts),
            ("cache-size", self.cache_size),
            ("api-concurrency", self.api_concurrency),
            (
                "request-timeout-seconds",
                self.request_timeout_seconds as usize,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(url) = &self.alertmanager_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(ConfigError::AlertmanagerScheme(url.clone()));
        }
        Ok(())
    }

    /// The per-request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// How long a cached incident name stays trusted.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::new("salve", "/run/secrets/token");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.max_alerts, 1000);
        assert_eq!(c.token_file, PathBuf::from("/run/secrets/token"));
        assert!(c.alertmanager_url.is_none());
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn tls_needs_both_cert_and_key() {
        let r = Config::try_parse_from(["x", "--token-file", "t", "--tls-cert", "c.pem"]);
        assert!(r.is_err());
    }

    #[test]
    fn an_invalid_namespace_or_a_zero_limit_is_refused_at_start() {
        let mut c = Config::new("salve", "t");
        c.namespace = "Not_A_Namespace".into();
        assert!(matches!(c.validate(), Err(ConfigError::Namespace(_))));
        let mut c = Config::new("salve", "t");
        c.max_alerts = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Zero("max-alerts"))));
        let mut c = Config::new("salve", "t");
        c.alertmanager_url = Some(Url::parse("ftp://am").unwrap_or_else(|e| panic!("{e}")));
        assert!(c.validate().is_err());
    }
}
