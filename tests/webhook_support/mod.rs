//! Support for the webhook shim's integration tests: the real shim in-process against the real
//! control plane, a TCP proxy to the API server that a test can close and reopen, and the real
//! Alertmanager captures.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use salve_webhook::RunningServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-token-123";

/// The real captures (`shared/fixtures/alertmanager` beside the repository, or
/// `$SALVE_FIXTURES_DIR`).
pub fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SALVE_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| salve_tests::repo_root().join("../shared/fixtures/alertmanager"));
    let p = dir.join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (set SALVE_FIXTURES_DIR)", p.display()))
}

/// A fresh temp directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "salve-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A token file holding [`TOKEN`].
pub fn token_file() -> PathBuf {
    let p = temp_dir("token").join("token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    p
}

/// The admin kubeconfig as a client config, optionally pointed at `via` instead of the API
/// server (same TLS identity: the proxy forwards bytes).
pub async fn admin_config(via: Option<SocketAddr>) -> Config {
    salve_tests::assert_cluster_healthy();
    let kc = Kubeconfig::read_from(salve_tests::cluster_dir().join("kubeconfig")).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    if let Some(addr) = via {
        cfg.cluster_url = format!("https://127.0.0.1:{}", addr.port())
            .parse()
            .unwrap();
    }
    cfg.connect_timeout = Some(Duration::from_secs(2));
    cfg.read_timeout = Some(Duration::from_secs(4));
    cfg.write_timeout = Some(Duration::from_secs(4));
    cfg
}

/// The API server's address.
pub async fn apiserver_addr() -> SocketAddr {
    let cfg = admin_config(None).await;
    let port = cfg.cluster_url.port_u16().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts the real shim on 127.0.0.1:0 for namespace `ns`, with `client`.
pub async fn start_shim(
    ns: &str,
    client: Client,
    alertmanager: Option<url::Url>,
    tweak: impl FnOnce(&mut salve_webhook::Config),
) -> RunningServer {
    let mut cfg = salve_webhook::Config::new(ns, token_file());
    cfg.alertmanager_url = alertmanager;
    cfg.request_timeout_seconds = 6;
    cfg.shutdown_grace_seconds = 10;
    tweak(&mut cfg);
    salve_webhook::start(cfg, client).await.unwrap()
}

/// POSTs `body` to the shim's `/alert` with the token; returns status, Retry-After and body.
pub async fn post_alert(
    shim: &RunningServer,
    body: &[u8],
) -> (u16, Option<String>, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/alert", shim.url()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.bytes().await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, retry, v)
}

/// GETs a path of the shim; returns status and body text.
pub async fn get(shim: &RunningServer, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", shim.url()))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A loopback TCP proxy to `target` that a test can take down (listener closed, every
/// connection cut: the client sees a real dead endpoint) and bring back on the same port, and
/// slow down.
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// A running proxy on a free loopback port.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = TcpProxy {
            addr: listener.local_addr().unwrap(),
            target,
            delay_ms: Arc::new(AtomicU64::new(0)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accept: Mutex::new(None),
        };
        p.serve(listener);
        p
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every chunk forwarded to the target by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let conns = self.conns.clone();
        let delay = self.delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay = delay.clone();
                let h = tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let d = delay.load(Ordering::SeqCst);
                            if d > 0 {
                                tokio::time::sleep(Duration::from_millis(d)).await;
                            }
                            if uw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = uw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut ur, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
                conns.lock().unwrap().push(h.abort_handle());
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Closes the listener and cuts every open connection.
    pub async fn down(&self) {
        if let Some(t) = self.accept.lock().unwrap().take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            TcpStream::connect(self.addr).await.is_err(),
            "proxy port still accepts connections"
        );
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not re-listen on {}: {last:?}", self.addr);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(t) = self.accept.lock().unwrap().take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
