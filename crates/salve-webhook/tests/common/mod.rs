//! Helpers shared by this crate's tests: the real Alertmanager captures and a shim wired to a
//! Kubernetes API endpoint where nothing listens (these tests never reach persistence, or
//! check that its failure is a 503).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use salve_webhook::Config;
use salve_webhook::auth::Token;
use salve_webhook::cache::RecentCache;
use salve_webhook::handlers::AppState;
use salve_webhook::metrics::Metrics;
use salve_webhook::store::Store;

/// The captures in `shared/fixtures/alertmanager` (beside the repository), or
/// `$SALVE_FIXTURES_DIR`.
pub fn fixtures_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SALVE_FIXTURES_DIR") {
        return PathBuf::from(d);
    }
    // Read at run time (cargo sets it for tests too), so a binary built in another checkout
    // still finds this checkout's neighbour.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let d = manifest.join("../../../shared/fixtures/alertmanager");
    assert!(
        d.join("README.md").exists(),
        "Alertmanager captures not found at {} (set SALVE_FIXTURES_DIR)",
        d.display()
    );
    d
}

/// A capture, byte for byte.
pub fn fixture(name: &str) -> Vec<u8> {
    let p = fixtures_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every webhook capture: (file name, bytes).
pub fn webhook_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("webhook-") && n.ends_with(".json"))
        .map(|n| {
            let b = fixture(&n);
            (n, b)
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 7,
        "expected the 7 webhook captures, found {}",
        v.len()
    );
    v
}

pub const TOKEN: &str = "test-token-123";

/// A token file holding `token`, in a fresh temp dir.
pub fn token_file(token: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "salve-webhook-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

/// A kube client for an API server that is not there (connection refused).
pub fn dead_client() -> kube::Client {
    let mut cfg = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    cfg.connect_timeout = Some(Duration::from_millis(500));
    cfg.read_timeout = Some(Duration::from_secs(1));
    kube::Client::try_from(cfg).unwrap()
}

/// A shim's state with `config`, persisting to a dead API server.
pub fn state(config: Config) -> Arc<AppState> {
    let metrics = Arc::new(Metrics::new());
    let recent = Arc::new(RecentCache::new(config.cache_size, config.cache_ttl()));
    let store = Store::new(dead_client(), &config.namespace, recent, metrics.clone());
    let token = Token::from_file(&config.token_file).unwrap();
    Arc::new(AppState::new(config, token, store, None, metrics))
}

/// Default config with a token file holding [`TOKEN`].
pub fn config() -> Config {
    let mut c = Config::new("salve-test", token_file(TOKEN));
    c.request_timeout_seconds = 3;
    c
}
