//! Shared harness for the integration tests: connects to the real control plane that
//! `tests/cluster/up.sh` started (via `make test` or `make cluster-up`), installs salve's CRDs,
//! and gives each test its own namespace.
//!
//! There is no fallback: when the control plane is missing or a component crashed, every test
//! fails with a message saying how to start it. A test that passes without a cluster would
//! prove nothing.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // test support: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The state directory of the running control plane.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("SALVE_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster"))
}

/// Fails the test unless every control-plane component is running (a crash is reported with
/// the component's log tail).
pub fn assert_cluster_healthy() {
    let out = std::process::Command::new(repo_root().join("tests/cluster/status.sh"))
        .output()
        .expect("running tests/cluster/status.sh");
    assert!(
        out.status.success(),
        "the local control plane is not healthy — start it with `make cluster-up` (or run `make test`):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A client for the kubeconfig `name` in the cluster directory (`kubeconfig` is the admin,
/// `alice.kubeconfig` and `bob.kubeconfig` ordinary users).
pub async fn client_for(name: &str) -> Client {
    assert_cluster_healthy();
    let path = cluster_dir().join(name);
    let kc = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} — run `make cluster-up`", path.display()));
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is valid");
    Client::try_from(config).expect("client builds")
}

/// The admin client.
pub async fn admin() -> Client {
    client_for("kubeconfig").await
}

/// A fresh namespace for one test: `<prefix>-<pid>-<n>`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

/// Installs (server-side apply) salve's CRDs from the Rust types and waits until each is
/// Established. Safe to call from every test.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("salve-tests").force();
    for crd in salve_api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(&name, &pp, &Patch::Apply(&crd)).await.unwrap();
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within 30s"))
            .unwrap();
    }
}

/// Reads a YAML file of the repository into a typed object.
pub fn yaml<T: serde::de::DeserializeOwned>(relative: &str) -> T {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Polls `f` every 200 ms until it returns `Some`, failing the test with `what` after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
