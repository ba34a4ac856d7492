//! The Helm chart (charts/salve) on the real control plane: `helm install` with the helm that
//! tests/tools/build-helm.sh builds, then proof that the RBAC it grants is *sufficient*, not just
//! present: the real operator runs in-process with a client authenticated as the chart's
//! operator ServiceAccount (a TokenRequest token), with the very arguments of the installed
//! Deployment, and the real webhook shim runs in-process as the chart's webhook ServiceAccount
//! with the chart's generated bearer token. An Alertmanager capture goes in, the operator
//! creates the remediation Job (kwok completes it), the resolved capture comes in, and the
//! Incident ends Resolved — every API call made as the chart's identities. Then the approval
//! policy is checked with two real users, invalid values are refused by `helm install`, and
//! `helm uninstall` leaves nothing of the release but the CRDs.
//!
//! The operator and webhook pods themselves land on kwok's fake node (no image runs here).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use prometheus_client::registry::Registry;
use salve_api::{Incident, Phase, PlaybookCatalog};
use salve_operator::{EngineDecider, OperatorArgs};
use salve_tests::{admin, client_for, cluster_dir, eventually, namespace, repo_root};
use serde_json::json;

// ------------------------------------------------------------------ helm

/// The pinned helm, built from Go modules on first use (cached by version).
fn helm_bin() -> PathBuf {
    static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let out = std::process::Command::new(repo_root().join("tests/tools/build-helm.sh"))
            .output()
            .expect("running tests/tools/build-helm.sh");
        assert!(
            out.status.success(),
            "building helm failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(path.lines().last().unwrap().trim())
    })
    .clone()
}

struct HelmOut {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs helm against the test cluster's admin kubeconfig, with its own config/cache dirs (no
/// state outside the temp dir), killed if the test is dropped mid-command.
async fn helm(args: &[&str]) -> HelmOut {
    let home = std::env::temp_dir().join(format!("salve-chart-helm-{}", std::process::id()));
    let child = tokio::process::Command::new(helm_bin())
        .args(args)
        .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), child)
        .await
        .unwrap_or_else(|_| panic!("helm {args:?} did not finish within 240s"))
        .unwrap();
    HelmOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn chart_dir() -> String {
    repo_root().join("charts/salve").display().to_string()
}

/// An installed release, uninstalled when dropped (also on panic), so a failed test leaves no
/// cluster-wide policy or ClusterRole behind for the tests that follow.
struct Release {
    name: String,
    ns: String,
    uninstalled: bool,
}

impl Release {
    async fn install(name: &str, ns: &str, values: &[(&str, &str)]) -> Release {
        let mut args = vec![
            "install".to_owned(),
            name.to_owned(),
            chart_dir(),
            "--namespace".into(),
            ns.into(),
            "--wait".into(),
            "--timeout".into(),
            "180s".into(),
        ];
        for (k, v) in values {
            args.push("--set".into());
            args.push(format!("{k}={v}"));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm(&argv).await;
        let release = Release {
            name: name.to_owned(),
            ns: ns.to_owned(),
            uninstalled: false,
        };
        assert!(
            out.ok,
            "helm install failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        assert!(
            out.stdout.contains("kubectl -n") && out.stdout.contains("salve.dev/approve=true"),
            "NOTES.txt missing from the install output:\n{}",
            out.stdout
        );
        release
    }

    /// The chart's resource-name prefix for this release.
    fn fullname(&self) -> String {
        if self.name.contains("salve") {
            self.name.clone()
        } else {
            format!("{}-salve", self.name)
        }
    }

    async fn uninstall(&mut self) {
        let out = helm(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.ns,
            "--wait",
            "--timeout",
            "120s",
        ])
        .await;
        self.uninstalled = true;
        assert!(out.ok, "helm uninstall failed:\n{}", out.stderr);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        // Synchronous on purpose: Drop may run while a panic unwinds the test's runtime.
        let home = std::env::temp_dir().join(format!("salve-chart-helm-{}", std::process::id()));
        let _ = std::process::Command::new(helm_bin())
            .args(["uninstall", &self.name, "--namespace", &self.ns])
            .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(std::process::Stdio::null())
            .output();
    }
}

// ------------------------------------------------------------------ logs

/// Warnings and errors of everything in this process (the operator and shim run in-process),
/// so a call the chart's RBAC refuses cannot go unnoticed even where salve only logs it
/// (Events, retried reconciles).
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_ansi(false)
        .with_writer(|| LogSink)
        .try_init();
}

/// Fails if anything in the process logged a refusal by the API server.
fn assert_no_refusal_logged() {
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden") || l.contains(" 403"))
        .collect();
    assert!(
        refused.is_empty(),
        "the API server refused calls made as the chart's accounts:\n{}",
        refused.join("\n")
    );
}

// ------------------------------------------------------------------ identities

/// A client authenticated as `sa` in `ns` by a bound token from the TokenRequest API: exactly
/// what the pod would get, minus the pod.
async fn client_as_service_account(admin: &Client, ns: &str, sa: &str) -> Client {
    let req: TokenRequest = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa}: {e}"))
        .status
        .unwrap()
        .token;
    let kc = kube::config::Kubeconfig::read_from(cluster_dir().join("kubeconfig")).unwrap();
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    // Only the API server's address and CA stay; the admin's client certificate goes.
    cfg.auth_info = serde_json::from_value(json!({ "token": token })).unwrap();
    cfg.connect_timeout = Some(Duration::from_secs(3));
    cfg.read_timeout = Some(Duration::from_secs(30));
    cfg.write_timeout = Some(Duration::from_secs(8));
    Client::try_from(cfg).unwrap()
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

// ------------------------------------------------------------------ the installed Deployments

/// The container args of the installed Deployment `name`.
async fn deployment_args(admin: &Client, ns: &str, name: &str) -> Vec<String> {
    let d = Api::<Deployment>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .unwrap();
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
}

/// Replaces `--flag=…` in `args` (clap refuses a repeated flag), or appends it.
fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    let prefix = format!("{flag}=");
    args.retain(|a| !a.starts_with(&prefix) && a != flag);
    args.push(format!("{flag}={value}"));
}

#[derive(Parser)]
struct OperatorCli {
    #[command(flatten)]
    args: OperatorArgs,
}

/// The operator in-process, aborted on drop.
struct RunningOperator(tokio::task::JoinHandle<()>);

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the real operator with the Deployment's own arguments (first element `operator`),
/// only the listen address changed, as `client`; rules-only decisions (no LLM configured).
fn start_operator(mut args: Vec<String>, client: Client) -> RunningOperator {
    assert_eq!(args.first().map(String::as_str), Some("operator"));
    set_flag(&mut args, "--metrics-addr", "127.0.0.1:0");
    let argv = std::iter::once("salve".to_owned()).chain(args.into_iter().skip(1));
    let args = OperatorCli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("the chart's operator args do not parse with this salve: {e}"))
        .args;
    let mut registry = Registry::default();
    let engine = salve_decide::DecisionEngine::new(args.decide_config(), &mut registry).unwrap();
    RunningOperator(tokio::spawn(async move {
        if let Err(e) =
            salve_operator::run_with(args, client, Arc::new(EngineDecider(engine)), registry).await
        {
            panic!("operator stopped: {e}");
        }
    }))
}

/// Starts the real webhook shim with the Deployment's arguments (first element `webhook`),
/// listening on loopback and reading `token_file` instead of the pod's mount.
async fn start_webhook(
    mut args: Vec<String>,
    token_file: &Path,
    client: Client,
) -> salve_webhook::RunningServer {
    assert_eq!(args.first().map(String::as_str), Some("webhook"));
    set_flag(&mut args, "--listen", "127.0.0.1:0");
    set_flag(&mut args, "--token-file", &token_file.display().to_string());
    let argv = std::iter::once("salve-webhook".to_owned()).chain(args.into_iter().skip(1));
    let cfg = salve_webhook::Config::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("the chart's webhook args do not parse with this salve: {e}"));
    salve_webhook::start(cfg, client).await.unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SALVE_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/fixtures/alertmanager"));
    let p = dir.join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (set SALVE_FIXTURES_DIR)", p.display()))
}

async fn post_alert(shim: &salve_webhook::RunningServer, token: &str, body: Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("{}/alert", shim.url()))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "the shim refused the alert: {text}");
}

/// The chart's webhook token, from the Secret the chart generated, into a 0600 temp file.
async fn token_from_chart(admin: &Client, release: &Release) -> (String, PathBuf) {
    let secret = Api::<Secret>::namespaced(admin.clone(), &release.ns)
        .get(&format!("{}-webhook-token", release.fullname()))
        .await
        .unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert_eq!(token.len(), 48, "a 48-character generated token");
    let dir = std::env::temp_dir().join(format!(
        "salve-chart-token-{}-{}",
        std::process::id(),
        release.name
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, &token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (token, path)
}

/// A catalog with one low-risk entry decided by rules, run as the chart's API-less runner
/// account. Applied by the admin: catalogs come from Git, not from salve.
async fn apply_catalog(admin: &Client, ns: &str, runner_sa: &str) {
    let pbc: PlaybookCatalog = serde_json::from_value(json!({
        "apiVersion": "salve.dev/v1alpha1", "kind": "PlaybookCatalog",
        "metadata": {"name": "chart-test", "namespace": ns},
        "spec": {"entries": [{
            "name": "clear_disk_space", "description": "free disk space", "risk": "low",
            "playbook": "clear-disk.yml",
            "parameters": {"type": "object", "additionalProperties": false, "required": ["target_host", "min_free_gb"],
                "properties": {"target_host": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
                               "min_free_gb": {"type": "integer", "minimum": 1, "maximum": 100}}},
            "match": {"alertnames": ["NodeFilesystemSpaceFillingUp"]},
            "paramsFromLabels": {"target_host": "{{ labels.instance | host }}", "min_free_gb": "10"},
            "targetParam": "target_host", "maxAttempts": 1, "timeoutSeconds": 60,
            "verify": {"stabilizationSeconds": 1},
            "serviceAccountName": runner_sa
        }]}
    }))
    .unwrap();
    Api::<PlaybookCatalog>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &pbc)
        .await
        .unwrap();
}

async fn wait_phase(api: &Api<Incident>, name: &str, phase: Phase) -> Incident {
    eventually(90, &format!("{name} to reach {phase}"), || async {
        let inc = api.get(name).await.ok()?;
        (inc.status.as_ref()?.phase == phase).then_some(inc)
    })
    .await
}

/// Alert in through the shim (as the webhook's account), remediation Job and status by the
/// operator (as the operator's account), resolved alert in through the shim, Resolved.
async fn drive_alert_to_resolution(
    admin: &Client,
    ns: &str,
    shim: &salve_webhook::RunningServer,
    token: &str,
    runner_sa: &str,
) {
    let name = salve_api::names::incident_name(
        "NodeFilesystemSpaceFillingUp",
        "0914bba24938a788",
        "2026-11-28T00:11:26.568Z",
    );
    post_alert(shim, token, fixture("webhook-firing-single.json")).await;
    let api: Api<Incident> = Api::namespaced(admin.clone(), ns);
    let inc = api.get(&name).await.unwrap();
    // The object (not its status, which the operator may already have written) is the shim's.
    let managers: Vec<_> = inc
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|m| m.subresource.is_none())
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec![salve_api::WEBHOOK_FIELD_MANAGER.to_owned()]);

    // The operator decides by rules and creates the params Secret and the Job.
    let job_name = salve_api::names::job_name(&name, 1);
    let job = eventually(60, "the remediation Job", || async {
        Api::<Job>::namespaced(admin.clone(), ns)
            .get_opt(&job_name)
            .await
            .unwrap()
    })
    .await;
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(runner_sa));
    Api::<Secret>::namespaced(admin.clone(), ns)
        .get(&job_name)
        .await
        .unwrap();

    // kwok completes the Job's pod; no verification source is configured, so the incident
    // waits in Verifying for the resolved notification, which the shim records.
    wait_phase(&api, &name, Phase::Verifying).await;
    post_alert(shim, token, fixture("webhook-resolved-single.json")).await;
    let done = wait_phase(&api, &name, Phase::Resolved).await;
    let st = done.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Verified"));

    // The operator's Events reached the API server (events.k8s.io as the operator's account).
    eventually(30, "an Event about the incident", || async {
        let evs = Api::<Event>::namespaced(admin.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap();
        evs.items
            .into_iter()
            .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name))
    })
    .await;
}

// ------------------------------------------------------------------ uninstall

/// Names of the objects labelled for `release` that are still there, by kind.
async fn leftovers(admin: &Client, release: &Release) -> BTreeMap<&'static str, Vec<String>> {
    let sel = ListParams::default().labels(&format!("app.kubernetes.io/instance={}", release.name));
    let ns = release.ns.as_str();
    async fn names<K>(api: Api<K>, lp: &ListParams) -> Vec<String>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        api.list(lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| o.meta().name.clone().unwrap_or_default())
            .collect()
    }
    let c = admin.clone();
    let mut out = BTreeMap::new();
    out.insert(
        "Deployment",
        names(Api::<Deployment>::namespaced(c.clone(), ns), &sel).await,
    );
    out.insert(
        "Service",
        names(Api::<Service>::namespaced(c.clone(), ns), &sel).await,
    );
    out.insert(
        "ServiceAccount",
        names(Api::<ServiceAccount>::all(c.clone()), &sel).await,
    );
    out.insert("Secret", names(Api::<Secret>::all(c.clone()), &sel).await);
    out.insert(
        "ConfigMap",
        names(Api::<ConfigMap>::all(c.clone()), &sel).await,
    );
    out.insert("Role", names(Api::<Role>::all(c.clone()), &sel).await);
    out.insert(
        "RoleBinding",
        names(Api::<RoleBinding>::all(c.clone()), &sel).await,
    );
    out.insert(
        "ClusterRole",
        names(Api::<ClusterRole>::all(c.clone()), &sel).await,
    );
    out.insert(
        "ClusterRoleBinding",
        names(Api::<ClusterRoleBinding>::all(c.clone()), &sel).await,
    );
    out.insert(
        "PodDisruptionBudget",
        names(Api::<PodDisruptionBudget>::all(c.clone()), &sel).await,
    );
    out.insert(
        "ValidatingAdmissionPolicy",
        names(Api::<ValidatingAdmissionPolicy>::all(c.clone()), &sel).await,
    );
    out.insert(
        "ValidatingAdmissionPolicyBinding",
        names(
            Api::<ValidatingAdmissionPolicyBinding>::all(c.clone()),
            &sel,
        )
        .await,
    );
    // helm's own release record.
    out.insert(
        "helm release Secret",
        names(
            Api::<Secret>::namespaced(c.clone(), ns),
            &ListParams::default().labels(&format!("owner=helm,name={}", release.name)),
        )
        .await,
    );
    out.retain(|_, v| !v.is_empty());
    out
}

async fn uninstall_and_check(admin: &Client, release: &mut Release) {
    assert!(
        !leftovers(admin, release).await.is_empty(),
        "the label selector finds the release's objects"
    );
    release.uninstall().await;
    let left = eventually(60, "the release's objects to go", || async {
        let l = leftovers(admin, release).await;
        l.is_empty().then_some(l)
    })
    .await;
    assert!(left.is_empty());
    // The API server enforces admission policies from a cache that lags their deletion. Wait
    // until it stops enforcing this release's approval policy (a dry-run cancel by an admin
    // outside the approver group goes through), so that later tests on this control plane do
    // not meet a policy that no longer exists.
    let incident = salve_api::names::incident_name(
        "NodeFilesystemSpaceFillingUp",
        "0914bba24938a788",
        "2026-11-28T00:11:26.568Z",
    );
    let incidents: Api<Incident> = Api::namespaced(admin.clone(), &release.ns);
    let probe = json!({"metadata": {"annotations": {"salve.dev/cancel": "true"}}});
    let dry_run = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(
        60,
        "the API server to stop enforcing the approval policy",
        || async {
            incidents
                .patch(&incident, &dry_run, &Patch::Merge(&probe))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    // The CRDs stay (helm never deletes crds/): Incidents are evidence.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in ["incidents.salve.dev", "playbookcatalogs.salve.dev"] {
        assert!(crds.get_opt(crd).await.unwrap().is_some(), "{crd} removed");
    }
}

// ------------------------------------------------------------------ tests

/// `make generate` copies crds/ into the chart; a forgotten copy fails here.
#[test]
fn the_charts_crds_are_the_generated_ones() {
    let root = repo_root();
    let mut names: Vec<_> = std::fs::read_dir(root.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut chart: Vec<_> = std::fs::read_dir(root.join("charts/salve/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    chart.sort();
    assert_eq!(
        names, chart,
        "charts/salve/crds lists other files than crds/"
    );
    for n in names {
        let a = std::fs::read(root.join("crds").join(&n)).unwrap();
        let b = std::fs::read(root.join("charts/salve/crds").join(&n)).unwrap();
        assert!(
            a == b,
            "charts/salve/crds/{} differs from crds/ — run `make generate`",
            n.to_string_lossy()
        );
    }
}

#[tokio::test]
async fn default_install_cluster_wide_rbac_runs_the_operator_and_the_webhook() {
    capture_logs();
    let admin = admin().await;
    let ns = namespace(&admin, "chart").await;
    // The strictest Pod Security Standard, enforced by the API server's PodSecurity admission:
    // the chart's pods must be admitted under it.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted"}}})),
        )
        .await
        .unwrap();
    let mut release = Release::install("chart-cw", &ns, &[]).await;
    let full = release.fullname();
    let op_sa = format!("{full}-operator");
    let wh_sa = format!("{full}-webhook");

    // The Deployments as installed: 2 replicas each, hardened, the downward API, probes, and
    // no secret anywhere in args or env.
    let deps = Api::<Deployment>::namespaced(admin.clone(), &ns);
    let (token, token_file) = token_from_chart(&admin, &release).await;
    for name in [&op_sa, &wh_sa] {
        let d = deps.get(name).await.unwrap();
        let spec = d.spec.clone().unwrap();
        assert_eq!(spec.replicas, Some(2), "{name}");
        let pod = spec.template.spec.unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/healthz")
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        assert!(c.resources.as_ref().unwrap().requests.is_some());
        let status = d.status.unwrap();
        assert_eq!(
            status.ready_replicas,
            Some(2),
            "{name} ready on the kwok node"
        );
        assert!(
            !serde_json::to_string(&d.metadata).unwrap().contains(&token)
                && !serde_json::to_string(c).unwrap().contains(&token),
            "the webhook token appears in {name}"
        );
    }
    let op = deps.get(&op_sa).await.unwrap();
    let env: Vec<String> = op.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .filter(|e| e.value_from.is_some())
        .map(|e| e.name)
        .collect();
    assert!(env.contains(&"POD_NAME".to_owned()) && env.contains(&"POD_NAMESPACE".to_owned()));
    Api::<PodDisruptionBudget>::namespaced(admin.clone(), &ns)
        .get(&op_sa)
        .await
        .unwrap();

    // Identities from the chart's ServiceAccounts.
    let op_client = client_as_service_account(&admin, &ns, &op_sa).await;
    let wh_client = client_as_service_account(&admin, &ns, &wh_sa).await;

    // Cluster-wide: the operator may list and watch its resources everywhere ...
    let other = namespace(&admin, "chart-other").await;
    Api::<Incident>::all(op_client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();
    Api::<PlaybookCatalog>::all(op_client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();
    Api::<Job>::all(op_client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();
    // ... but never read a Secret, delete a Job or write an Incident's spec.
    forbidden(
        Api::<Secret>::namespaced(op_client.clone(), &ns)
            .get(&format!("{full}-webhook-token"))
            .await,
        "operator reading a Secret",
    );
    forbidden(
        Api::<Secret>::namespaced(op_client.clone(), &other)
            .list(&ListParams::default())
            .await,
        "operator listing Secrets",
    );
    forbidden(
        Api::<Job>::namespaced(op_client.clone(), &ns)
            .delete("x", &Default::default())
            .await,
        "operator deleting a Job",
    );
    // The webhook may create Incidents only in its namespace.
    forbidden(
        Api::<Incident>::namespaced(wh_client.clone(), &other)
            .list(&ListParams::default())
            .await,
        "webhook listing Incidents in another namespace",
    );
    forbidden(
        Api::<Incident>::namespaced(wh_client.clone(), &ns)
            .delete("x", &Default::default())
            .await,
        "webhook deleting an Incident",
    );

    // The real operator (the Deployment's args; scoped to the test namespace so it leaves
    // other tests' incidents alone) and the real shim, each as its chart identity.
    let runner_sa = format!("{full}-runner");
    apply_catalog(&admin, &ns, &runner_sa).await;
    let mut op_args = deployment_args(&admin, &ns, &op_sa).await;
    assert!(
        !op_args.iter().any(|a| a.starts_with("--namespace")),
        "default install watches all namespaces: {op_args:?}"
    );
    set_flag(&mut op_args, "--namespace", &ns);
    let operator = start_operator(op_args, op_client.clone());
    let wh_args = deployment_args(&admin, &ns, &wh_sa).await;
    assert!(
        wh_args.contains(&format!("--namespace={ns}")),
        "{wh_args:?}"
    );
    let shim = start_webhook(wh_args, &token_file, wh_client.clone()).await;
    drive_alert_to_resolution(&admin, &ns, &shim, &token, &runner_sa).await;
    assert_no_refusal_logged();

    // Leader election: the in-process operator (the Deployment's --leader-elect=true and
    // Lease name) holds the Lease in the release namespace, as the operator's account.
    let lease_name = format!("{full}-operator");
    let op_args = deployment_args(&admin, &ns, &op_sa).await;
    assert!(
        op_args.contains(&"--leader-elect=true".to_owned())
            && op_args.contains(&format!("--leader-election-namespace={ns}"))
            && op_args.contains(&format!("--leader-election-lease={lease_name}")),
        "{op_args:?}"
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), &ns);
    let lease = eventually(30, "the operator's Lease", || async {
        leases.get_opt(&lease_name).await.unwrap()
    })
    .await;
    assert!(lease.spec.unwrap().holder_identity.is_some());
    shim.shutdown().await.unwrap();
    drop(operator);

    // An upgrade keeps the generated token (Alertmanager holds a copy of it).
    let up = helm(&[
        "upgrade",
        &release.name,
        &chart_dir(),
        "--namespace",
        &ns,
        "--reuse-values",
        "--set",
        "operator.maxConcurrentJobs=7",
        "--wait",
        "--timeout",
        "180s",
    ])
    .await;
    assert!(up.ok, "helm upgrade failed:\n{}", up.stderr);
    assert_eq!(token_from_chart(&admin, &release).await.0, token);
    assert!(
        deployment_args(&admin, &ns, &op_sa)
            .await
            .contains(&"--max-concurrent-jobs=7".to_owned())
    );

    // The policy carries the group itself: a ConfigMap paramKind would stop working for good
    // after an uninstall (kubernetes/kubernetes#130887; see templates/approvals.yaml).
    let vap = Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .get(&format!("{full}-approvals-{ns}"))
        .await
        .unwrap();
    assert!(vap.spec.unwrap().param_kind.is_none());

    // Approvals, with two real users: alice (salve-approvers, the default approverGroup) may
    // approve as herself only; bob (developers) has no RBAC on Incidents at all.
    let inc_name = salve_api::names::incident_name(
        "NodeFilesystemSpaceFillingUp",
        "0914bba24938a788",
        "2026-11-28T00:11:26.568Z",
    );
    let as_alice: Api<Incident> = Api::namespaced(client_for("alice.kubeconfig").await, &ns);
    let as_bob: Api<Incident> = Api::namespaced(client_for("bob.kubeconfig").await, &ns);
    let approve = |by: &str| {
        Patch::Merge(json!({"metadata": {"annotations": {
            salve_api::keys::APPROVE: "true", salve_api::keys::APPROVED_BY: by}}}))
    };
    let forged = as_alice
        .patch(&inc_name, &PatchParams::default(), &approve("bob"))
        .await;
    match forged {
        Err(kube::Error::Api(s)) => assert!(
            s.message.contains("salve.dev/approved-by=alice"),
            "the chart's policy refused with: {}",
            s.message
        ),
        other => panic!("a forged approver was accepted: {other:?}"),
    }
    as_alice
        .patch(&inc_name, &PatchParams::default(), &approve("alice"))
        .await
        .unwrap();
    forbidden(
        as_bob
            .patch(&inc_name, &PatchParams::default(), &approve("bob"))
            .await,
        "bob approving",
    );

    uninstall_and_check(&admin, &mut release).await;
}

#[tokio::test]
async fn namespaced_install_gets_a_role_and_runs_the_operator_with_its_own_args() {
    capture_logs();
    let admin = admin().await;
    let ns = namespace(&admin, "chart-ns").await;
    let other = namespace(&admin, "chart-ns-other").await;
    let mut release = Release::install(
        "chart-ns",
        &ns,
        &[
            ("operator.watchNamespace", &ns),
            ("operator.replicas", "1"),
            ("operator.leaderElection.enabled", "false"),
            ("webhook.replicas", "1"),
            ("approvals.enabled", "false"),
        ],
    )
    .await;
    let full = release.fullname();
    let op_sa = format!("{full}-operator");
    let wh_sa = format!("{full}-webhook");
    // A Role in the watched namespace, and only the CRD check cluster-wide.
    Api::<Role>::namespaced(admin.clone(), &ns)
        .get(&op_sa)
        .await
        .unwrap();
    let cr = Api::<ClusterRole>::all(admin.clone())
        .get(&format!("{op_sa}-{ns}"))
        .await
        .unwrap();
    let rules = cr.rules.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        rules[0].resources,
        Some(vec!["customresourcedefinitions".to_owned()])
    );

    let op_client = client_as_service_account(&admin, &ns, &op_sa).await;
    let wh_client = client_as_service_account(&admin, &ns, &wh_sa).await;
    forbidden(
        Api::<Incident>::all(op_client.clone())
            .list(&ListParams::default())
            .await,
        "namespaced operator listing Incidents cluster-wide",
    );
    forbidden(
        Api::<Job>::namespaced(op_client.clone(), &other)
            .list(&ListParams::default())
            .await,
        "namespaced operator listing Jobs elsewhere",
    );

    let runner_sa = format!("{full}-runner");
    apply_catalog(&admin, &ns, &runner_sa).await;
    // The Deployment's args exactly (they carry --namespace and --leader-elect=false).
    let op_args = deployment_args(&admin, &ns, &op_sa).await;
    assert!(
        op_args.contains(&format!("--namespace={ns}")),
        "{op_args:?}"
    );
    let operator = start_operator(op_args, op_client);
    let (token, token_file) = token_from_chart(&admin, &release).await;
    let shim = start_webhook(
        deployment_args(&admin, &ns, &wh_sa).await,
        &token_file,
        wh_client,
    )
    .await;
    drive_alert_to_resolution(&admin, &ns, &shim, &token, &runner_sa).await;
    assert_no_refusal_logged();
    shim.shutdown().await.unwrap();
    drop(operator);
    assert!(
        Api::<ValidatingAdmissionPolicy>::all(admin.clone())
            .list(&ListParams::default().labels("app.kubernetes.io/instance=chart-ns"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "approvals.enabled=false installs no policy"
    );
    uninstall_and_check(&admin, &mut release).await;
}

#[tokio::test]
async fn invalid_values_fail_helm_install_with_a_message_naming_the_value() {
    let admin = admin().await;
    let ns = namespace(&admin, "chart-bad").await;
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "operator.replicas=-1"],
            &["/operator/replicas", "minimum"],
        ),
        (
            &["--set", "approvals.approverGroup="],
            &["/approvals/approverGroup", "minLength"],
        ),
        (
            &["--set", "operator.replicaz=2"],
            &["/operator", "additional properties 'replicaz' not allowed"],
        ),
        (
            &["--set", "webhook.token.existingSecret=Not_A_Name"],
            &["/webhook/token/existingSecret"],
        ),
        (
            &["--set", "operator.watchNamespace=elsewhere"],
            &["operator.watchNamespace=\"elsewhere\" must be empty"],
        ),
        (
            &["--set", "operator.leaderElection.enabled=false"],
            &["operator.replicas=2 needs operator.leaderElection.enabled=true"],
        ),
    ];
    for (extra, expect) in cases {
        let chart = chart_dir();
        let mut args = vec!["install", "chart-bad", chart.as_str(), "--namespace", &ns];
        args.extend_from_slice(extra);
        let out = helm(&args).await;
        assert!(!out.ok, "helm install {extra:?} succeeded");
        for e in *expect {
            assert!(
                out.stderr.contains(e),
                "helm install {extra:?}: {e:?} not in the message:\n{}",
                out.stderr
            );
        }
    }
    // Nothing was installed.
    let list = helm(&["list", "--namespace", &ns, "--all", "--short"]).await;
    assert!(list.ok, "{}", list.stderr);
    assert_eq!(list.stdout.trim(), "", "a release was recorded");
    assert!(
        Api::<Deployment>::namespaced(admin.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
