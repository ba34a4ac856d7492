//! Starting and stopping the shim: Kubernetes client, listener (plain or TLS), token
//! refresher, and graceful shutdown that lets in-flight requests finish.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::alertmanager::{AlertmanagerClient, FetchError};
use crate::auth::{Token, TokenError};
use crate::cache::RecentCache;
use crate::config::{Config, ConfigError};
use crate::handlers::{AppState, router};
use crate::metrics::Metrics;
use crate::store::Store;

/// How often the token file is checked for a rotation.
const TOKEN_REFRESH: Duration = Duration::from_secs(10);

/// Why the shim could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("building the Kubernetes client: {0}")]
    Kube(#[source] kube::Error),
    #[error(
        "the Incident CRD is not installed (incidents.salve.dev not found): install it with `salve crd | kubectl apply -f -`"
    )]
    CrdMissing,
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("loading TLS certificate and key: {0}")]
    Tls(#[source] std::io::Error),
    #[error(transparent)]
    Alertmanager(#[from] FetchError),
    #[error("server stopped with an error: {0}")]
    Serve(#[source] std::io::Error),
}

impl ServerError {
    /// PascalCase category.
    pub fn category(&self) -> &'static str {
        match self {
            ServerError::Config(e) => e.category(),
            ServerError::Token(e) => e.category(),
            ServerError::Kube(_) => "KubeClient",
            ServerError::CrdMissing => "CrdMissing",
            ServerError::Bind { .. } => "Bind",
            ServerError::Tls(_) => "Tls",
            ServerError::Alertmanager(e) => e.category(),
            ServerError::Serve(_) => "Serve",
        }
    }
}

/// Makes ring the process's rustls provider (TLS listener, Alertmanager client). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A shim serving in the background (see [`start`]).
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    metrics: Arc<Metrics>,
    handle: axum_server::Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
    refresher: JoinHandle<()>,
    grace: Duration,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://127.0.0.1:PORT` or `https://...`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Its metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (up to the grace period),
    /// and waits for the server to stop.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.handle.graceful_shutdown(Some(self.grace));
        self.refresher.abort();
        match self.task.await {
            Ok(r) => r.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }

    /// Waits until the server stops by itself (after a signal handled elsewhere).
    pub async fn wait(self) -> Result<(), ServerError> {
        let r = match self.task.await {
            Ok(r) => r.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        };
        self.refresher.abort();
        r
    }

    /// A handle that can trigger a graceful shutdown from elsewhere (a signal handler).
    pub fn shutdown_trigger(&self) -> impl Fn() + Send + 'static {
        let handle = self.handle.clone();
        let grace = self.grace;
        move || handle.graceful_shutdown(Some(grace))
    }
}

/// Starts the shim on `config.listen` with `client`, serving in the background.
pub async fn start(config: Config, client: Client) -> Result<RunningServer, ServerError> {
    config.validate()?;
    install_crypto_provider();
    let token = Token::from_file(&config.token_file)?;
    let metrics = Arc::new(Metrics::new());
    let recent = Arc::new(RecentCache::new(config.cache_size, config.cache_ttl()));
    let store = Store::new(client, &config.namespace, recent, metrics.clone());
    let alertmanager = match &config.alertmanager_url {
        Some(url) => Some(AlertmanagerClient::new(url.clone())?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen).map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(ServerError::Tls)?,
        ),
        _ => None,
    };
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let namespace = config.namespace.clone();
    let state = Arc::new(AppState::new(
        config,
        token,
        store,
        alertmanager,
        metrics.clone(),
    ));
    let app = router(state.clone()).into_make_service();
    let handle = axum_server::Handle::<SocketAddr>::new();
    let task = match tls.clone() {
        Some(tls) => {
            let server = axum_server::from_tcp_rustls(listener, tls)
                .map_err(|source| ServerError::Bind { addr, source })?
                .handle(handle.clone());
            tokio::spawn(async move { server.serve(app).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(|source| ServerError::Bind { addr, source })?
                .handle(handle.clone());
            tokio::spawn(async move { server.serve(app).await })
        }
    };
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TOKEN_REFRESH);
        tick.tick().await;
        loop {
            tick.tick().await;
            match state.token.refresh() {
                Ok(true) => info!("token file changed; new token in effect"),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "token file unusable; keeping the previous token"),
            }
        }
    });
    info!(%addr, tls = tls.is_some(), namespace = %namespace, "salve webhook listening");
    Ok(RunningServer {
        addr,
        tls: tls.is_some(),
        metrics,
        handle,
        task,
        refresher,
        grace,
    })
}

/// A client from the environment (in-cluster or KUBECONFIG) with timeouts that keep a dead API
/// server from holding a request past its deadline.
pub async fn default_client() -> Result<Client, ServerError> {
    let mut cfg = kube::Config::infer()
        .await
        .map_err(|e| ServerError::Kube(kube::Error::InferConfig(e)))?;
    cfg.connect_timeout = Some(Duration::from_secs(3));
    cfg.read_timeout = Some(Duration::from_secs(8));
    cfg.write_timeout = Some(Duration::from_secs(8));
    Client::try_from(cfg).map_err(ServerError::Kube)
}

/// `salve webhook`: checks the CRD, serves until SIGTERM or SIGINT, then drains.
pub async fn run(config: Config) -> Result<(), ServerError> {
    config.validate()?;
    install_crypto_provider();
    let client = default_client().await?;
    check_crd(&client, &config.namespace).await?;
    let server = start(config, client).await?;
    let trigger = server.shutdown_trigger();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown signal received; finishing in-flight requests");
        trigger();
    });
    server.wait().await?;
    info!("salve webhook stopped");
    Ok(())
}

/// Fails fast with a hint when the CRD is missing; an unreachable API server is only a
/// warning (readiness reports it, and Alertmanager retries).
async fn check_crd(client: &Client, namespace: &str) -> Result<(), ServerError> {
    let api: kube::Api<salve_api::Incident> = kube::Api::namespaced(client.clone(), namespace);
    match api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && s.reason == "NotFound" => {
            Err(ServerError::CrdMissing)
        }
        Err(e) => {
            warn!(error = %e, "Kubernetes API not usable at start; serving anyway (readiness will say so)");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
