//! Verification and notifications with the real parts: Prometheus (Debian's `prometheus`)
//! re-evaluating the alert's expression over a gauge the test serves, Alertmanager (Debian's
//! `prometheus-alertmanager`) answering whether a fingerprint is still active and receiving
//! `SalveEscalated`, a loopback HTTP server standing in for Slack and a generic webhook, the
//! approval policy enforced by the real API server, and Jobs run to completion by kwok. Each test
//! has its own namespace and its own in-process operator; every daemon a test starts is killed
//! when the test ends, passing or not.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use salve_api::{AttemptOutcome, Incident, Phase, PlaybookCatalog};
use salve_operator::{EngineDecider, OperatorArgs};
use salve_tests::{admin, client_for, cluster_dir, eventually, install_crds, namespace, yaml};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------ captured operator logs

/// Everything every operator in this test binary logged (tracing, all levels the filter lets
/// through). Tests look for secrets in it.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,hyper_util=info,h2=info,tower=info,rustls=info")
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

// ------------------------------------------------------------------ a recording HTTP server

/// One request the stub received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    content_type: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} sent non-JSON {:?}: {e}", self.path, self.body))
    }
}

/// A loopback HTTP/1.1 server: `GET /metrics` serves `salve_test_gauge{case="verify"}` with the
/// value the test sets; every other request is recorded and answered 200, except paths starting
/// with `/fail` (500) and `/hang` (never answered).
struct Stub {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    gauge: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    async fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let gauge = Arc::new(AtomicI64::new(1));
        let (r, g) = (received.clone(), gauge.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, r.clone(), g.clone()));
            }
        });
        Stub {
            addr,
            received,
            gauge,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Requests to paths starting with `prefix` whose body mentions `needle`.
    fn mentioning(&self, prefix: &str, needle: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix) && r.body.contains(needle))
            .collect()
    }
}

async fn serve(mut sock: TcpStream, received: Arc<Mutex<Vec<Received>>>, gauge: Arc<AtomicI64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let mut length = 0usize;
    let mut content_type = String::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "content-type" => content_type = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + length {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    let (status, reply) = if path == "/metrics" {
        let v = gauge.load(Ordering::SeqCst);
        (
            "200 OK",
            format!("# TYPE salve_test_gauge gauge\nsalve_test_gauge{{case=\"verify\"}} {v}\n"),
        )
    } else {
        received.lock().unwrap().push(Received {
            path: path.clone(),
            content_type,
            body,
        });
        if path.starts_with("/hang") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        if path.starts_with("/fail") {
            ("500 Internal Server Error", "boom".to_owned())
        } else {
            ("200 OK", "ok".to_owned())
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

// ------------------------------------------------------------------ Prometheus, Alertmanager

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "salve-verify-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A daemon the test started: killed and reaped when dropped, also when the test panics (its
/// directory is then kept, with the log, for the post-mortem).
struct Daemon {
    name: &'static str,
    child: Child,
    /// Base URL, including the route prefix (no trailing slash).
    url: String,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{} log kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Daemon {
    async fn start(
        name: &'static str,
        binary: &str,
        dir: PathBuf,
        args: Vec<String>,
        url: String,
    ) -> Daemon {
        assert!(
            Path::new(binary).exists(),
            "{binary} missing: run tests/setup-deps.sh (make deps)"
        );
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(binary)
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            name,
            child,
            url,
            dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..150 {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("{name} exited with {status}:\n{}", d.log());
            }
            if let Ok(r) = http.get(format!("{}/-/ready", d.url)).send().await
                && r.status().is_success()
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{name} not ready after 30s:\n{}", d.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// Prometheus scraping the stub every second, served under `prefix` ("" for none).
async fn prometheus(stub: &Stub, prefix: &str) -> Daemon {
    let dir = temp_dir("prometheus");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: salve-test\n  static_configs: [{{targets: ['{}']}}]\n",
            stub.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let mut args = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    if !prefix.is_empty() {
        args.push(format!("--web.route-prefix={prefix}"));
    }
    let url = format!("http://127.0.0.1:{port}{prefix}");
    Daemon::start("prometheus", "/usr/bin/prometheus", dir, args, url).await
}

/// Alertmanager that routes everything to a receiver without integrations, no HA gossip,
/// served under `prefix` ("" for none).
async fn alertmanager(prefix: &str) -> Daemon {
    let dir = temp_dir("alertmanager");
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route:\n  receiver: nobody\nreceivers:\n- name: nobody\n",
    )
    .unwrap();
    let port = free_port();
    let mut args = vec![
        format!("--config.file={}", dir.join("alertmanager.yml").display()),
        format!("--storage.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_owned(),
    ];
    if !prefix.is_empty() {
        args.push(format!("--web.route-prefix={prefix}"));
    }
    let url = format!("http://127.0.0.1:{port}{prefix}");
    Daemon::start(
        "alertmanager",
        "/usr/bin/prometheus-alertmanager",
        dir,
        args,
        url,
    )
    .await
}

/// `POST /api/v2/alerts` with one alert; resolved (endsAt now) when `resolved`.
async fn am_post(am: &Daemon, labels: &Value, resolved: bool) {
    let mut alert = json!({"labels": labels, "annotations": {"summary": "test"},
        "generatorURL": "http://prometheus.invalid/graph?g0.expr=up"});
    if resolved {
        alert["endsAt"] = json!(jiff::Timestamp::now().to_string());
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([alert]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Alertmanager's active alerts (`GET /api/v2/alerts`).
async fn am_alerts(am: &Daemon) -> Vec<Value> {
    reqwest::Client::new()
        .get(format!("{}/api/v2/alerts", am.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Posts an active alert and returns the fingerprint Alertmanager gave it.
async fn am_fire(am: &Daemon, labels: &Value) -> String {
    am_post(am, labels, false).await;
    eventually(30, "Alertmanager to list the alert", || async {
        am_alerts(am)
            .await
            .into_iter()
            .find(|a| &a["labels"] == labels)
            .map(|a| a["fingerprint"].as_str().unwrap().to_owned())
    })
    .await
}

// ------------------------------------------------------------------ the operator

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: OperatorArgs,
}

/// An in-process operator for one namespace, stopped when dropped.
struct Operator {
    task: tokio::task::JoinHandle<()>,
    metrics: String,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Operator {
    async fn start(client: &Client, ns: &str, extra: &[String]) -> Operator {
        capture_logs();
        let port = free_port();
        let mut argv: Vec<String> = [
            "salve",
            "--namespace",
            ns,
            "--runner-image",
            "salve-runner:test",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.push("--metrics-addr".into());
        argv.push(format!("127.0.0.1:{port}"));
        argv.extend_from_slice(extra);
        let args = Cli::parse_from(argv).args;
        let mut registry = Registry::default();
        let engine =
            salve_decide::DecisionEngine::new(args.decide_config(), &mut registry).unwrap();
        let client = client.clone();
        let task = tokio::spawn(async move {
            salve_operator::run_with(args, client, Arc::new(EngineDecider(engine)), registry)
                .await
                .unwrap();
        });
        let metrics = format!("http://127.0.0.1:{port}/metrics");
        eventually(30, "the operator's /metrics", || async {
            reqwest::get(&metrics).await.ok()?.error_for_status().ok()
        })
        .await;
        Operator { task, metrics }
    }

    /// The value of counter `name` with label `category`, 0 when absent.
    async fn counter(&self, name: &str, category: &str) -> u64 {
        let text = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("{name}{{category=\"{category}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

/// A file holding `url` (how the operator takes secrets).
fn secret_file(url: &str) -> String {
    let p = temp_dir("secret").join("url");
    std::fs::write(&p, format!("{url}\n")).unwrap();
    p.display().to_string()
}

// ------------------------------------------------------------------ catalog and incidents

/// Low risk `restart_web` (two attempts) for the `low` alertnames, medium risk `scale_web` for
/// the `medium` ones, with the given stabilization wait and cancel window, and high risk
/// `failover_web` for `SalveNotifyHigh`.
fn catalog(
    ns: &str,
    stabilization: u32,
    cancel_window: u32,
    low: &[&str],
    medium: &[&str],
) -> PlaybookCatalog {
    // An empty `alertnames` would match every alert.
    let medium = if medium.is_empty() {
        &["SalveNeverFires"][..]
    } else {
        medium
    };
    let params = json!({"type": "object", "additionalProperties": false, "required": ["target_host"],
        "properties": {"target_host": {"type": "string", "pattern": "^[a-z0-9.-]+$"}}});
    serde_json::from_value(json!({
        "apiVersion": "salve.dev/v1alpha1",
        "kind": "PlaybookCatalog",
        "metadata": {"name": "verify", "namespace": ns},
        "spec": {"entries": [
            {
                "name": "restart_web", "description": "restart the web service", "risk": "low",
                "playbook": "restart-service.yml", "parameters": params,
                "match": {"alertnames": low},
                "paramsFromLabels": {"target_host": "{{ labels.instance | host }}"},
                "targetParam": "target_host", "maxAttempts": 2, "timeoutSeconds": 60,
                "verify": {"stabilizationSeconds": stabilization}
            },
            {
                "name": "scale_web", "description": "add web capacity", "risk": "medium",
                "playbook": "scale-deployment.yml", "parameters": params,
                "match": {"alertnames": medium},
                "paramsFromLabels": {"target_host": "{{ labels.instance | host }}"},
                "targetParam": "target_host", "maxAttempts": 1, "timeoutSeconds": 60,
                "cancelWindowSeconds": cancel_window,
                "verify": {"stabilizationSeconds": stabilization}
            },
            {
                "name": "failover_web", "description": "fail the web tier over", "risk": "high",
                "playbook": "db-failover.yml", "parameters": params,
                "match": {"alertnames": ["SalveNotifyHigh"]},
                "paramsFromLabels": {"target_host": "{{ labels.instance | host }}"},
                "targetParam": "target_host", "maxAttempts": 1, "timeoutSeconds": 60,
                "verify": {"stabilizationSeconds": stabilization}
            }
        ]}
    }))
    .unwrap()
}

async fn setup(prefix: &str, catalog_of: impl FnOnce(&str) -> PlaybookCatalog) -> (Client, String) {
    let client = admin().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    Api::<PlaybookCatalog>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &catalog_of(&ns))
        .await
        .unwrap();
    (client, ns)
}

/// A unique fingerprint for incidents that no Alertmanager knows.
fn fingerprint() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:08x}{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// An Incident as the shim would write it for an alert with `labels` (which name it).
fn incident(ns: &str, fingerprint: &str, labels: &Value, generator: Option<&str>) -> Incident {
    let alertname = labels["alertname"].as_str().unwrap();
    let starts = jiff::Timestamp::now().to_string();
    let name = salve_api::names::incident_name(alertname, fingerprint, &starts);
    let mut alert = json!({"name": alertname, "labels": labels,
        "annotations": {"summary": "test"}, "startsAt": starts});
    if let Some(g) = generator {
        alert["generatorURL"] = json!(g);
    }
    serde_json::from_value(json!({
        "apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": name, "namespace": ns, "labels": {"salve.dev/fingerprint": fingerprint}},
        "spec": {"fingerprint": fingerprint, "receiver": "salve", "groupKey": "{}",
                 "externalURL": "http://am", "alert": alert}
    }))
    .unwrap()
}

async fn create(api: &Api<Incident>, inc: &Incident) -> String {
    api.create(&PostParams::default(), inc).await.unwrap();
    inc.metadata.name.clone().unwrap()
}

async fn wait_phase(api: &Api<Incident>, name: &str, phase: Phase) -> Incident {
    eventually(120, &format!("{name} to reach {phase}"), || async {
        let inc = api.get(name).await.ok()?;
        let st = inc.status.as_ref()?;
        if st.phase != phase && st.phase.is_terminal() {
            panic!("{name} ended {} instead of {phase}: {st:?}", st.phase);
        }
        (st.phase == phase).then_some(inc)
    })
    .await
}

async fn jobs_of(client: &Client, ns: &str, incident: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("salve.dev/incident={incident}")))
        .await
        .unwrap()
        .items
}

async fn events_of(client: &Client, ns: &str, incident: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(incident))
        .collect()
}

fn check_mode(job: &Job) -> Option<String> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "SALVE_CHECK_MODE")
        .and_then(|e| e.value.clone())
}

/// The secret never shows in the namespace's Events, in any Incident (spec, status,
/// annotations), or in anything the operators logged.
async fn assert_no_leak(client: &Client, ns: &str, secrets: &[&str]) {
    let events = serde_json::to_string(
        &Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let incidents = serde_json::to_string(
        &Api::<Incident>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let logs = logs();
    assert!(!events.is_empty() && !logs.is_empty());
    for s in secrets {
        assert!(!events.contains(s), "secret {s} in Events: {events}");
        assert!(!incidents.contains(s), "secret {s} in an Incident");
        assert!(!logs.contains(s), "secret {s} in the operator's logs");
    }
}

// ------------------------------------------------------------------ 1. Prometheus

/// A Prometheus graph URL for `expr`, as a rule's generatorURL is.
fn generator_url(prometheus: &Daemon, expr: &str) -> String {
    url::Url::parse_with_params(
        &format!("{}/graph", prometheus.url),
        &[("g0.expr", expr), ("g0.tab", "1")],
    )
    .unwrap()
    .to_string()
}

const EXPR: &str = "salve_test_gauge{case=\"verify\"} > 0";

/// Waits until Prometheus has scraped the gauge with value `v` (so the expression answers as
/// the test intends before the operator asks).
async fn until_prometheus_sees(prom: &Daemon, v: i64) {
    let http = reqwest::Client::new();
    eventually(
        60,
        &format!("Prometheus to scrape the gauge at {v}"),
        || async {
            let body: Value = http
                .get(format!("{}/api/v1/query", prom.url))
                .query(&[("query", "salve_test_gauge{case=\"verify\"}")])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let got = body["data"]["result"][0]["value"][1].as_str()?;
            (got == v.to_string()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn prometheus_still_firing_after_each_attempt_escalates() {
    let (client, ns) = setup("verify-prom-firing", |ns| {
        catalog(ns, 1, 1, &["SalveVerifyLow"], &[])
    })
    .await;
    let stub = Stub::start().await;
    // Served under a route prefix, configured without a trailing slash, as an operator behind
    // a path-routing ingress would be.
    let prom = prometheus(&stub, "/prom").await;
    until_prometheus_sees(&prom, 1).await;
    let _op = Operator::start(&client, &ns, &["--prometheus-url".into(), prom.url.clone()]).await;
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);
    let labels = json!({"alertname": "SalveVerifyLow", "instance": "web-1:9100"});
    let name = create(
        &api,
        &incident(
            &ns,
            &fingerprint(),
            &labels,
            Some(&generator_url(&prom, EXPR)),
        ),
    )
    .await;

    let done = wait_phase(&api, &name, Phase::Escalated).await;
    let st = done.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("AttemptsExhausted"), "{st:?}");
    let msg = st.message.clone().unwrap_or_default();
    assert!(msg.contains("still firing after attempt 2"), "{msg}");
    assert_eq!(st.attempts.len(), 2, "maxAttempts is 2: {:?}", st.attempts);
    assert!(
        st.attempts
            .iter()
            .all(|a| a.outcome == Some(AttemptOutcome::StillFiring)),
        "each Job succeeded but the expression still returned series: {:?}",
        st.attempts
    );
    assert_eq!(
        jobs_of(&client, &ns, &name).await.len(),
        2,
        "one Job per attempt"
    );
    let trail: Vec<_> = st.history.iter().map(|h| h.to).collect();
    assert_eq!(
        trail,
        [
            Phase::Decided,
            Phase::Executing,
            Phase::Verifying,
            Phase::Executing,
            Phase::Verifying,
            Phase::Escalated
        ]
    );
    let events = eventually(30, "the escalation Event", || async {
        let ev = events_of(&client, &ns, &name).await;
        ev.iter()
            .any(|e| e.reason.as_deref() == Some("AttemptsExhausted"))
            .then_some(ev)
    })
    .await;
    let esc = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("AttemptsExhausted"))
        .unwrap();
    assert_eq!(esc.type_.as_deref(), Some("Warning"));
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("StillFiring")),
        "the retry is recorded as an Event too: {events:?}"
    );
    // Prometheus answered: the operator said so in its log, for this incident.
    assert!(
        logs().lines().any(|l| l.contains(&name)
            && l.contains("source=prometheus")
            && l.contains("StillFiring")),
        "no log line says Prometheus answered for {name}"
    );
}

#[tokio::test]
async fn prometheus_cleared_after_the_job_resolves() {
    // Stabilization 5 s: the remediation "works" when the Job runs, and Prometheus (scraping
    // every second) sees it before salve looks.
    let (client, ns) = setup("verify-prom-cleared", |ns| {
        catalog(ns, 5, 1, &["SalveVerifyLow"], &[])
    })
    .await;
    let stub = Stub::start().await;
    let prom = prometheus(&stub, "").await;
    until_prometheus_sees(&prom, 1).await;
    let _op = Operator::start(&client, &ns, &["--prometheus-url".into(), prom.url.clone()]).await;
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);
    let labels = json!({"alertname": "SalveVerifyLow", "instance": "web-2:9100"});
    let name = create(
        &api,
        &incident(
            &ns,
            &fingerprint(),
            &labels,
            Some(&generator_url(&prom, EXPR)),
        ),
    )
    .await;
    wait_phase(&api, &name, Phase::Executing).await;
    stub.gauge.store(0, Ordering::SeqCst);

    let done = wait_phase(&api, &name, Phase::Resolved).await;
    let st = done.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Verified"), "{st:?}");
    assert!(
        st.message
            .as_deref()
            .unwrap_or("")
            .contains("alert cleared"),
        "{st:?}"
    );
    let last = st.attempts.last().unwrap();
    assert_eq!(last.outcome, Some(AttemptOutcome::Succeeded));
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "Done" && c.status == "True"),
        "{:?}",
        st.conditions
    );
    assert!(
        logs()
            .lines()
            .any(|l| l.contains(&name) && l.contains("source=prometheus") && l.contains("Cleared")),
        "no log line says Prometheus answered for {name}"
    );
}

// ------------------------------------------------------------------ 2. Alertmanager fallback

#[tokio::test]
async fn without_prometheus_alertmanager_decides_whether_the_alert_still_fires() {
    // Under a route prefix, configured without a trailing slash.
    let am = alertmanager("/am").await;
    let (client, ns) = setup("verify-am", |ns| {
        catalog(ns, 3, 1, &["SalveVerifyLow"], &[])
    })
    .await;
    let _op = Operator::start(&client, &ns, &["--alertmanager-url".into(), am.url.clone()]).await;
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);

    // Still active in Alertmanager after each attempt: escalated. The generatorURL names a
    // Prometheus nobody configured: it is not consulted.
    let firing = json!({"alertname": "SalveVerifyLow", "instance": "web-3:9100", "ns": ns});
    let fp = am_fire(&am, &firing).await;
    let firing_name = create(
        &api,
        &incident(
            &ns,
            &fp,
            &firing,
            Some("http://127.0.0.1:1/graph?g0.expr=up"),
        ),
    )
    .await;

    // Resolved in Alertmanager while the Job runs: verified.
    let fixed = json!({"alertname": "SalveVerifyLow", "instance": "web-4:9100", "ns": ns});
    let fixed_fp = am_fire(&am, &fixed).await;
    let fixed_name = create(&api, &incident(&ns, &fixed_fp, &fixed, None)).await;
    wait_phase(&api, &fixed_name, Phase::Executing).await;
    am_post(&am, &fixed, true).await;

    let done = wait_phase(&api, &fixed_name, Phase::Resolved).await;
    let st = done.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Verified"), "{st:?}");
    assert_eq!(st.attempts.len(), 1, "{:?}", st.attempts);
    assert!(
        !done
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("salve.dev/alert-resolved-at"),
        "Alertmanager's API answered, not the shim's resolved mark"
    );

    let esc = wait_phase(&api, &firing_name, Phase::Escalated).await;
    let st = esc.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("AttemptsExhausted"), "{st:?}");
    assert_eq!(st.attempts.len(), 2);
    assert!(
        st.attempts
            .iter()
            .all(|a| a.outcome == Some(AttemptOutcome::StillFiring))
    );
    assert_eq!(jobs_of(&client, &ns, &firing_name).await.len(), 2);
    let log = logs();
    for (name, said) in [(&firing_name, "StillFiring"), (&fixed_name, "Cleared")] {
        assert!(
            log.lines().any(|l| l.contains(name.as_str())
                && l.contains("source=alertmanager")
                && l.contains(said)),
            "no log line says Alertmanager answered {said} for {name}"
        );
    }
}

// ------------------------------------------------------------------ 3. notifications

/// The approval policy of the chart, bound to `ns`, with alice (salve-approvers) and bob
/// (developers) allowed by RBAC to patch incidents: only the policy stops bob.
async fn install_approval_policy(client: &Client, ns: &str) {
    let pp = PatchParams::apply("salve-tests").force();
    let policy: ValidatingAdmissionPolicy = yaml("charts/salve/files/approval-policy.yaml");
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .patch("salve-approvals", &pp, &Patch::Apply(&policy))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"salve.dev/approval-test": "true"}}})),
        )
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "salve-approvals", "namespace": ns},
        "data": {"approverGroup": "salve-approvers"}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch("salve-approvals", &pp, &Patch::Apply(&cm))
        .await
        .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "salve-approvals-test"},
        "spec": {"policyName": "salve-approvals", "validationActions": ["Deny"],
                 "paramRef": {"name": "salve-approvals", "parameterNotFoundAction": "Deny"},
                 "matchResources": {"namespaceSelector": {"matchLabels": {"salve.dev/approval-test": "true"}}}}
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .patch("salve-approvals-test", &pp, &Patch::Apply(&binding))
        .await
        .unwrap();
    let role: ClusterRole =
        serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": "salve-incident-editor-test"},
        "rules": [{"apiGroups": ["salve.dev"], "resources": ["incidents"],
                   "verbs": ["get", "list", "watch", "patch", "update"]}]}))
        .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .patch("salve-incident-editor-test", &pp, &Patch::Apply(&role))
        .await
        .unwrap();
    let rb: ClusterRoleBinding = serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": "salve-incident-editor-test"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "salve-incident-editor-test"},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "salve-approvers"},
                     {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "developers"}]}))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch("salve-incident-editor-test", &pp, &Patch::Apply(&rb))
        .await
        .unwrap();
}

/// The control plane's kubectl (`SALVE_KUBECTL` from the cluster's env file).
fn kubectl() -> PathBuf {
    if let Some(p) = std::env::var_os("SALVE_KUBECTL") {
        return PathBuf::from(p);
    }
    let env = std::fs::read_to_string(cluster_dir().join("env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix("SALVE_KUBECTL="))
        .map(PathBuf::from)
        .expect("SALVE_KUBECTL in the cluster's env file")
}

/// Runs `command` in a shell as the user of `kubeconfig`, with `kubectl` on PATH.
async fn shell_as(kubeconfig: &str, command: &str) -> std::process::Output {
    let bin = temp_dir("kubectl-bin");
    std::os::unix::fs::symlink(kubectl(), bin.join("kubectl")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("KUBECONFIG", cluster_dir().join(kubeconfig))
        .env("PATH", path)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn escalations_and_cancel_windows_reach_slack_the_webhook_and_alertmanager() {
    // The API client first: building it installs the process's TLS crypto provider, which
    // every reqwest client needs.
    let (client, ns) = setup("verify-notify", |ns| {
        catalog(ns, 1, 600, &["SalveNotifyLow"], &["SalveNotifyMedium"])
    })
    .await;
    let stub = Stub::start().await;
    let am = alertmanager("").await;
    // Webhook URLs embed their token: they are secrets, read from files.
    let slack_secret = "T0SALVE/B0SALVE/slacksecret9f8e7d";
    let hook_secret = "hooksecret-5c4b3a2910";
    let slack = secret_file(&stub.url(&format!("/slack/{slack_secret}")));
    let hook = secret_file(&stub.url(&format!("/hook/{hook_secret}")));
    install_approval_policy(&client, &ns).await;
    let _op = Operator::start(
        &client,
        &ns,
        &[
            "--slack-webhook-file".into(),
            slack,
            "--notify-webhook-file".into(),
            hook,
            "--alertmanager-url".into(),
            am.url.clone(),
            "--escalate-to-alertmanager".into(),
        ],
    )
    .await;
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);

    // A low-risk alert that stays active in Alertmanager: two runs, then escalated.
    let labels = json!({"alertname": "SalveNotifyLow", "instance": "web-9:9100",
                        "team": "storage", "severity": "critical", "ns": ns});
    let fp = am_fire(&am, &labels).await;
    let esc_name = create(&api, &incident(&ns, &fp, &labels, None)).await;
    // A medium-risk alert: its cancel window is announced with the command to cancel.
    let medium = json!({"alertname": "SalveNotifyMedium", "instance": "web-8:9100"});
    let med_name = create(&api, &incident(&ns, &fingerprint(), &medium, None)).await;
    // A high-risk alert: it waits for an approval, and the notice says how to give it.
    let high = json!({"alertname": "SalveNotifyHigh", "instance": "db-5:9100"});
    let high_name = create(&api, &incident(&ns, &fingerprint(), &high, None)).await;

    let st = wait_phase(&api, &esc_name, Phase::Escalated)
        .await
        .status
        .unwrap();
    assert_eq!(st.reason.as_deref(), Some("AttemptsExhausted"));

    // Slack: `{"text": …}` as JSON, for each run and for the escalation.
    let slack_msgs = eventually(30, "Slack to hear of the escalation", || async {
        let m = stub.mentioning("/slack/", &esc_name);
        m.iter()
            .any(|r| {
                r.json()["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("escalated")
            })
            .then_some(m)
    })
    .await;
    for r in &slack_msgs {
        assert_eq!(r.path, format!("/slack/{slack_secret}"));
        assert!(r.content_type.starts_with("application/json"), "{r:?}");
        let body = r.json();
        assert!(body["text"].is_string(), "Slack payload shape: {body}");
    }
    let texts: Vec<String> = slack_msgs
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("is running restart_web"))
            .count(),
        2,
        "one auto-remediation notice per attempt: {texts:?}"
    );
    assert_eq!(
        texts.iter().filter(|t| t.contains("escalated")).count(),
        1,
        "{texts:?}"
    );

    // The generic webhook: a JSON body naming the incident, its phase and why.
    let hooks = stub.mentioning("/hook/", &esc_name);
    let escalated: Vec<Value> = hooks
        .iter()
        .map(Received::json)
        .filter(|b| b["event"] == "Escalated")
        .collect();
    assert_eq!(escalated.len(), 1, "{hooks:?}");
    let b = &escalated[0];
    assert_eq!(b["incident"], esc_name.as_str());
    assert_eq!(b["namespace"], ns.as_str());
    assert_eq!(b["phase"], "Escalated");
    assert_eq!(b["reason"], "AttemptsExhausted", "{b}");
    assert_eq!(b["alertname"], "SalveNotifyLow");
    assert_eq!(b["fingerprint"], fp.as_str());

    // Alertmanager now has SalveEscalated, carrying the incident's labels, so routes page.
    let salve_alert = eventually(30, "SalveEscalated in Alertmanager", || async {
        am_alerts(&am).await.into_iter().find(|a| {
            a["labels"]["alertname"] == "SalveEscalated"
                && a["labels"]["salve_incident"] == esc_name.as_str()
        })
    })
    .await;
    let l = &salve_alert["labels"];
    for (k, v) in [
        ("team", "storage"),
        ("severity", "critical"),
        ("instance", "web-9:9100"),
        ("ns", ns.as_str()),
        ("original_alertname", "SalveNotifyLow"),
    ] {
        assert_eq!(l[k], v, "label {k}: {salve_alert}");
    }
    assert_eq!(salve_alert["status"]["state"], "active", "{salve_alert}");
    // salve posts it once: it must not resolve itself after Alertmanager's resolve_timeout
    // (5 minutes by default) while nobody has taken over.
    let at = |k: &str| -> jiff::Timestamp { salve_alert[k].as_str().unwrap().parse().unwrap() };
    let held = at("endsAt").duration_since(at("startsAt"));
    assert!(
        held >= jiff::SignedDuration::from_hours(1),
        "SalveEscalated ends {held:?} after it starts: {salve_alert}"
    );

    // The medium-risk cancel window: Slack and the webhook carry the exact command.
    wait_phase(&api, &med_name, Phase::AwaitingApproval).await;
    let notice = eventually(30, "the cancel-window notice", || async {
        stub.mentioning("/slack/", &med_name).into_iter().next()
    })
    .await;
    let text = notice.json()["text"].as_str().unwrap().to_owned();
    let hook_cmd = eventually(30, "the cancel-window webhook", || async {
        stub.mentioning("/hook/", &med_name)
            .iter()
            .map(Received::json)
            .find(|b| b["event"] == "CancelWindow")
    })
    .await["command"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains(&hook_cmd),
        "Slack shows the same command: {text}"
    );
    assert!(
        hook_cmd.starts_with(&format!(
            "kubectl -n {ns} annotate --overwrite incident {med_name} salve.dev/cancel=true salve.dev/cancelled-by="
        )),
        "{hook_cmd}"
    );

    // The command works as written under the admission policy: first prove the policy is
    // enforced (bob, not an approver, is refused), then alice runs it verbatim.
    let bob: Api<Incident> = Api::namespaced(client_for("bob.kubeconfig").await, &ns);
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let bob_cancels = Patch::Merge(json!({"metadata": {"annotations": {
        "salve.dev/cancel": "true", "salve.dev/cancelled-by": "bob"}}}));
    eventually(30, "the approval policy to be enforced", || async {
        bob.patch(&med_name, &dry, &bob_cancels)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let out = shell_as("bob.kubeconfig", &hook_cmd).await;
    assert!(!out.status.success(), "bob may not cancel");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bob is not"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A teammate left a note meanwhile (anyone may edit salve.dev/reason): the command must
    // still work, replacing it.
    bob.patch(
        &med_name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"salve.dev/reason": "deploy running?"}}}),
        ),
    )
    .await
    .unwrap();
    let out = shell_as("alice.kubeconfig", &hook_cmd).await;
    assert!(
        out.status.success(),
        "the command from the notice failed for an approver:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cancelled = wait_phase(&api, &med_name, Phase::Cancelled).await;
    let st = cancelled.status.clone().unwrap();
    assert_eq!(
        st.approval.as_ref().unwrap().reason.as_deref(),
        Some("..."),
        "the reason placeholder of the command replaced the note"
    );
    let approval = cancelled.status.unwrap().approval.unwrap();
    assert_eq!(approval.cancelled_by.as_deref(), Some("alice"));
    assert!(
        jobs_of(&client, &ns, &med_name).await.is_empty(),
        "a cancelled incident never runs"
    );

    // The high-risk notice's approve command works verbatim for alice; the remediation runs
    // and is verified (Alertmanager does not know this alert: cleared).
    wait_phase(&api, &high_name, Phase::AwaitingApproval).await;
    let approve_cmd = eventually(30, "the approval notice", || async {
        stub.mentioning("/hook/", &high_name)
            .iter()
            .map(Received::json)
            .find(|b| b["event"] == "ApprovalRequired")
    })
    .await["command"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        stub.mentioning("/slack/", &high_name)
            .iter()
            .any(|r| r.json()["text"].as_str().unwrap().contains(&approve_cmd)),
        "Slack shows the approve command"
    );
    assert!(jobs_of(&client, &ns, &high_name).await.is_empty());
    let out = shell_as("alice.kubeconfig", &approve_cmd).await;
    assert!(
        out.status.success(),
        "the approve command failed for an approver:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = wait_phase(&api, &high_name, Phase::Resolved).await;
    let st = done.status.unwrap();
    assert_eq!(
        st.approval.unwrap().approved_by.as_deref(),
        Some("alice"),
        "approved as the API server authenticated her"
    );
    assert_eq!(st.reason.as_deref(), Some("Verified"));
    assert_eq!(jobs_of(&client, &ns, &high_name).await.len(), 1);
    assert!(
        stub.mentioning("/slack/", &high_name)
            .iter()
            .any(|r| r.json()["text"]
                .as_str()
                .unwrap()
                .starts_with("salve resolved")),
        "the resolution is announced"
    );

    // 5. The webhook URLs never leak.
    assert_no_leak(
        &client,
        &ns,
        &[slack_secret, hook_secret, "slacksecret", "hooksecret"],
    )
    .await;
}

#[tokio::test]
async fn failing_and_hanging_endpoints_neither_block_nor_fail_incidents() {
    let (client, ns) = setup("verify-notify-fail", |ns| {
        catalog(ns, 1, 1, &["SalveNotifyLow"], &[])
    })
    .await;
    let stub = Stub::start().await;
    let slack_secret = "failsecret-0a1b2c3d";
    let hook_secret = "hangsecret-4e5f6a7b";
    let slack = secret_file(&stub.url(&format!("/fail/{slack_secret}")));
    let hook = secret_file(&stub.url(&format!("/hang/{hook_secret}")));
    // Alertmanager on a port nobody listens on: posting SalveEscalated fails too, and so does
    // verification, which then gives up after --verify-timeout-seconds.
    let dead_am = format!("http://127.0.0.1:{}", free_port());
    let op = Operator::start(
        &client,
        &ns,
        &[
            "--slack-webhook-file".into(),
            slack,
            "--notify-webhook-file".into(),
            hook,
            "--alertmanager-url".into(),
            dead_am,
            "--escalate-to-alertmanager".into(),
            "--verify-timeout-seconds".into(),
            "2".into(),
        ],
    )
    .await;
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);
    // No catalog entry matches: escalated at once.
    let none = json!({"alertname": "SalveNotifyUnknown", "instance": "web-7:9100"});
    let none_name = create(&api, &incident(&ns, &fingerprint(), &none, None)).await;
    // A remediation runs (notice fails), then verification cannot answer: escalated.
    let low = json!({"alertname": "SalveNotifyLow", "instance": "web-6:9100"});
    let low_name = create(&api, &incident(&ns, &fingerprint(), &low, None)).await;

    let st = wait_phase(&api, &none_name, Phase::Escalated)
        .await
        .status
        .unwrap();
    assert_eq!(st.reason.as_deref(), Some("NoCandidate"), "{st:?}");
    let st = wait_phase(&api, &low_name, Phase::Escalated)
        .await
        .status
        .unwrap();
    assert_eq!(st.attempts.len(), 1);
    assert_eq!(st.attempts[0].outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(jobs_of(&client, &ns, &low_name).await.len(), 1);

    // Every failed delivery is counted, per channel: 2 escalations + 1 auto-remediation.
    eventually(60, "the failure counters", || async {
        let slack = op
            .counter("salve_operator_notification_failures_total", "slack")
            .await;
        let hook = op
            .counter("salve_operator_notification_failures_total", "webhook")
            .await;
        let am = op
            .counter("salve_operator_notification_failures_total", "alertmanager")
            .await;
        (slack >= 3 && hook >= 3 && am >= 2).then_some(())
    })
    .await;
    // The Kubernetes Event is the channel that always works.
    for (name, reason) in [(&none_name, "NoCandidate"), (&low_name, "StillFiring")] {
        eventually(30, &format!("the {reason} Event of {name}"), || async {
            events_of(&client, &ns, name)
                .await
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning")
                })
                .then_some(())
        })
        .await;
    }
    assert!(stub.received().iter().any(|r| r.path.starts_with("/fail/")));
    assert!(stub.received().iter().any(|r| r.path.starts_with("/hang/")));
    assert_no_leak(
        &client,
        &ns,
        &[slack_secret, hook_secret, "failsecret", "hangsecret"],
    )
    .await;
}

// ------------------------------------------------------------------ 4. dry run

#[tokio::test]
async fn dry_run_incidents_run_in_check_mode_and_page_nobody() {
    let cat = |ns: &str| catalog(ns, 1, 1, &["SalveDryLow"], &["SalveDryMedium"]);
    let (client, ns) = setup("verify-dry", cat).await;
    let stub = Stub::start().await;
    let am = alertmanager("").await;
    let slack = secret_file(&stub.url("/slack/dry"));
    let hook = secret_file(&stub.url("/hook/dry"));
    let channels = |am: &Daemon| -> Vec<String> {
        vec![
            "--slack-webhook-file".into(),
            slack.clone(),
            "--notify-webhook-file".into(),
            hook.clone(),
            "--alertmanager-url".into(),
            am.url.clone(),
            "--escalate-to-alertmanager".into(),
        ]
    };

    // Per incident: spec.dryRun, the salve.dev/dry-run annotation, a medium-risk one, and one
    // no entry matches. And a normal incident, to show the channels work.
    let _op = Operator::start(&client, &ns, &channels(&am)).await;
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);
    let mut by_spec = incident(
        &ns,
        &fingerprint(),
        &json!({"alertname": "SalveDryLow", "instance": "web-11:9100"}),
        None,
    );
    by_spec.spec.dry_run = true;
    let mut by_annotation = incident(
        &ns,
        &fingerprint(),
        &json!({"alertname": "SalveDryLow", "instance": "web-12:9100"}),
        None,
    );
    by_annotation.metadata.annotations = Some(BTreeMap::from([(
        "salve.dev/dry-run".into(),
        "true".into(),
    )]));
    let mut medium = incident(
        &ns,
        &fingerprint(),
        &json!({"alertname": "SalveDryMedium", "instance": "web-13:9100"}),
        None,
    );
    medium.spec.dry_run = true;
    let mut unmatched = incident(
        &ns,
        &fingerprint(),
        &json!({"alertname": "SalveDryUnknown", "instance": "web-14:9100"}),
        None,
    );
    unmatched.spec.dry_run = true;
    let control = incident(
        &ns,
        &fingerprint(),
        &json!({"alertname": "SalveDryLow", "instance": "web-15:9100"}),
        None,
    );
    let dry_names = [
        create(&api, &by_spec).await,
        create(&api, &by_annotation).await,
        create(&api, &medium).await,
    ];
    let unmatched_name = create(&api, &unmatched).await;
    let control_name = create(&api, &control).await;

    // Global: --dry-run on another operator.
    let (gclient, gns) = setup("verify-dry-global", cat).await;
    let mut flags = channels(&am);
    flags.push("--dry-run".into());
    let _gop = Operator::start(&gclient, &gns, &flags).await;
    let gapi: Api<Incident> = Api::namespaced(gclient.clone(), &gns);
    let global_name = create(
        &gapi,
        &incident(
            &gns,
            &fingerprint(),
            &json!({"alertname": "SalveDryLow", "instance": "web-16:9100"}),
            None,
        ),
    )
    .await;

    let mut all = vec![];
    for name in &dry_names {
        all.push((api.clone(), ns.clone(), name.clone()));
    }
    all.push((gapi.clone(), gns.clone(), global_name.clone()));
    for (api, ns, name) in &all {
        let done = wait_phase(api, name, Phase::Resolved).await;
        let st = done.status.unwrap();
        assert_eq!(
            st.reason.as_deref(),
            Some("DryRunComplete"),
            "{name}: {st:?}"
        );
        assert_eq!(st.attempts.len(), 1, "{name}");
        assert!(
            st.attempts[0].dry_run,
            "{name}: the attempt is recorded as a dry run"
        );
        assert_eq!(st.attempts[0].outcome, Some(AttemptOutcome::Succeeded));
        let jobs = jobs_of(&client, ns, name).await;
        assert_eq!(jobs.len(), 1, "{name}");
        assert_eq!(
            check_mode(&jobs[0]).as_deref(),
            Some("true"),
            "{name}: the Job runs --check --diff"
        );
    }
    // The control incident was remediated and announced (it resolves: Alertmanager does
    // not know its fingerprint).
    wait_phase(&api, &control_name, Phase::Resolved).await;
    eventually(30, "the control incident's notices", || async {
        (!stub.mentioning("/slack/", &control_name).is_empty()
            && !stub.mentioning("/hook/", &control_name).is_empty())
        .then_some(())
    })
    .await;
    let control_jobs = jobs_of(&client, &ns, &control_name).await;
    assert_eq!(check_mode(&control_jobs[0]).as_deref(), Some("false"));

    // The unmatched dry-run incident escalates (recorded, with an Event), but pages nobody.
    let st = wait_phase(&api, &unmatched_name, Phase::Escalated)
        .await
        .status
        .unwrap();
    assert_eq!(st.reason.as_deref(), Some("NoCandidate"));

    // Nobody was paged for any dry-run incident: no Slack, no webhook, no SalveEscalated.
    // Notices go out right after the status that records a transition; give the last ones a
    // moment to arrive before asserting that none did.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut quiet = dry_names.to_vec();
    quiet.push(global_name.clone());
    quiet.push(unmatched_name.clone());
    let salve_alerts: Vec<Value> = am_alerts(&am)
        .await
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "SalveEscalated")
        .collect();
    for name in &quiet {
        let heard: Vec<String> = stub
            .received()
            .into_iter()
            .filter(|r| r.body.contains(name.as_str()))
            .map(|r| format!("{} {}", r.path, r.body))
            .collect();
        assert!(heard.is_empty(), "dry run {name} paged: {heard:?}");
        assert!(
            !salve_alerts
                .iter()
                .any(|a| a["labels"]["salve_incident"] == name.as_str()),
            "dry run {name} raised SalveEscalated"
        );
    }
}
