//! `make bench-controller`: the real `salve operator` binary (release) as its own process
//! against the local control plane, rules path only (no LLM, no Prometheus, no Alertmanager).
//!
//! 1. Idle: catalog loaded, no incidents — RSS.
//! 2. Trickle: low-risk incidents created one every 50 ms — latency from "Incident create
//!    returned" to "the Job appeared on a watch", both on this process's monotonic clock.
//! 3. Burst: 1,000 low-risk incidents created as fast as the API server takes them — the same
//!    latency, now including the operator's queueing, and its throughput.
//!    Every incident of 2 and 3 is then resolved the way production resolves it: kwok completes
//!    the Job's pod, kube-controller-manager marks the Job Complete, the incident reaches
//!    Verifying, and this bench sets `salve.dev/alert-resolved-at` the way the webhook shim
//!    does when Alertmanager sends the resolved notification. API writes per resolved incident
//!    come from the operator's own `salve_operator_api_writes_total`.
//! 4. 10,000: incidents no catalog entry matches (decided to escalate, no Job) until 10,000
//!    Incidents exist in the namespace — time to reach a terminal phase, CPU seconds, RSS.
//!
//! Not a test: it prints numbers (and writes them to target/bench-controller.md) for
//! docs/benchmarks.md. It fails only on functional problems: an incident without a Job, a
//! second Job for one incident, an incident that never reaches the expected phase.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use salve_api::{Incident, Phase, PlaybookCatalog};
use serde_json::json;

/// Defaults; `SALVE_BENCH_TRICKLE`, `SALVE_BENCH_BURST`, `SALVE_BENCH_TOTAL` and
/// `SALVE_BENCH_STABILIZATION_SECONDS` (the catalog entry's `verify.stabilizationSeconds`)
/// override them.
const TRICKLE: usize = 200;
const TRICKLE_EVERY: Duration = Duration::from_millis(50);
const BURST: usize = 1_000;
const TOTAL: usize = 10_000;
const STABILIZATION_SECONDS: u32 = 0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// Creates in flight at once for the burst and the 10,000 (the webhook shim's concurrency in
/// `make bench-webhook` is 8; a burst from several Alertmanager groups is more).
const CREATE_CONCURRENCY: usize = 16;
/// Resolved-annotation patches in flight at once.
const ANNOTATE_CONCURRENCY: usize = 8;
const LOW_RISK_ALERT: &str = "NodeFilesystemSpaceFillingUp";
/// No catalog entry matches it: decided to escalate, no Job.
const UNMATCHED_ALERT: &str = "KubePodCrashLooping";

/// The operator process; killed when dropped (also while unwinding from a panic).
struct Operator(Child);
impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clk_tck()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The control-plane components' pids (tests/cluster/up.sh records them).
fn components() -> Vec<(String, u32)> {
    let dir = salve_tests::cluster_dir().join("pids");
    let mut out: Vec<(String, u32)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let pid = std::fs::read_to_string(e.path())
                        .ok()?
                        .trim()
                        .parse()
                        .ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), pid))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// CPU seconds of the operator and of each control-plane component.
fn cpu_snapshot(op: u32) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::from([("salve operator".to_owned(), cpu_s(op))]);
    for (name, pid) in components() {
        m.insert(name, cpu_s(pid));
    }
    m
}

fn cpu_delta(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> String {
    b.iter()
        .map(|(k, v)| format!("{k} {:.1} s", v - a.get(k).copied().unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The commit the binary was built from, and whether the tree had uncommitted changes.
fn source_state() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(salve_tests::repo_root())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no", "crates"]);
    if dirty.is_empty() {
        format!("commit {head}")
    } else {
        format!(
            "commit {head} plus uncommitted changes in {} file(s) under crates/",
            dirty.lines().count()
        )
    }
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{nproc} cores ({cpu}), {:.1} GiB memory",
        mem_kib as f64 / 1048576.0
    )
}

/// A catalog whose low-risk entry the rules path picks for `LOW_RISK_ALERT`: every required
/// param comes from the labels, one target per instance, no cooldown, no stabilization wait.
/// The medium and high entries are there so the menu is not trivially small.
fn catalog(ns: &str, stabilization: u32) -> PlaybookCatalog {
    serde_json::from_value(json!({
        "apiVersion": "salve.dev/v1alpha1",
        "kind": "PlaybookCatalog",
        "metadata": {"name": "ops", "namespace": ns},
        "spec": {"entries": [
            {
                "name": "clear_disk_space", "description": "Free disk space: rotate logs, prune caches", "risk": "low",
                "playbook": "clear-disk.yml",
                "parameters": {"type": "object", "additionalProperties": false, "required": ["target_host", "mountpoint", "min_free_gb"],
                    "properties": {"target_host": {"type": "string", "pattern": "^[a-z0-9.-]+$", "maxLength": 253},
                                   "mountpoint": {"type": "string", "pattern": "^/[A-Za-z0-9/._-]*$", "maxLength": 255},
                                   "min_free_gb": {"type": "integer", "minimum": 1, "maximum": 100}}},
                "match": {"alertnames": [LOW_RISK_ALERT]},
                "paramsFromLabels": {"target_host": "{{ labels.instance | host }}", "mountpoint": "{{ labels.mountpoint }}", "min_free_gb": "10"},
                "targetParam": "target_host", "maxAttempts": 1, "timeoutSeconds": 300, "cooldownSeconds": 0,
                "verify": {"stabilizationSeconds": stabilization}
            },
            {
                "name": "scale_pods", "description": "Scale a deployment up", "risk": "medium",
                "playbook": "scale-deployment.yml",
                "parameters": {"type": "object", "additionalProperties": false, "required": ["namespace", "deployment", "replicas"],
                    "properties": {"namespace": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                                   "deployment": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                                   "replicas": {"type": "integer", "minimum": 1, "maximum": 10}}},
                "match": {"alertnames": ["KubeHpaMaxedOut"]},
                "paramsFromLabels": {"namespace": "{{ labels.namespace }}", "deployment": "{{ labels.deployment }}", "replicas": "4"},
                "targetParam": "deployment"
            },
            {
                "name": "failover_database", "description": "Promote the replica", "risk": "high",
                "playbook": "db-failover.yml",
                "parameters": {"type": "object", "additionalProperties": false, "required": ["cluster_name"],
                    "properties": {"cluster_name": {"type": "string", "pattern": "^[a-z0-9-]+$"}}},
                "match": {"alertnames": ["PostgresqlDown"]},
                "paramsFromLabels": {"cluster_name": "{{ labels.cluster }}"},
                "targetParam": "cluster_name", "maxAttempts": 1
            }
        ]}
    }))
    .unwrap()
}

/// The Incident the webhook shim would create for alert number `n` (built by the shim's own
/// code from an Alertmanager v4 payload).
fn incident(ns: &str, run: u32, n: usize, low_risk: bool) -> Incident {
    let fingerprint = format!("{run:08x}{n:08x}");
    let starts = Timestamp::now().to_string();
    let (alertname, labels, annotations) = if low_risk {
        (
            LOW_RISK_ALERT,
            json!({"alertname": LOW_RISK_ALERT, "instance": format!("node-{n:05}.prod.example:9100"),
                   "device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": "/var",
                   "job": "node-exporter", "namespace": "monitoring", "prometheus": "monitoring/k8s",
                   "severity": "warning"}),
            json!({"summary": "Filesystem is predicted to run out of space within the next 24 hours.",
                   "description": format!("Filesystem on /dev/nvme0n1p1 at node-{n:05}.prod.example:9100 has only 8.2% available space left and is filling up."),
                   "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/node/nodefilesystemspacefillingup"}),
        )
    } else {
        (
            UNMATCHED_ALERT,
            json!({"alertname": UNMATCHED_ALERT, "namespace": "shop", "pod": format!("checkout-7d9f8b6c5-{n:05}"),
                   "container": "app", "job": "kube-state-metrics", "reason": "CrashLoopBackOff",
                   "severity": "warning"}),
            json!({"summary": "Pod is crash looping.",
                   "description": format!("Pod shop/checkout-7d9f8b6c5-{n:05} (app) is in waiting state (reason: \"CrashLoopBackOff\")."),
                   "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"}),
        )
    };
    let body = serde_json::to_vec(&json!({
        "receiver": "salve", "status": "firing", "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "alerts": [{
            "status": "firing", "labels": labels, "annotations": annotations,
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring.svc:9090/graph?g0.expr=vector%281%29&g0.tab=1",
            "fingerprint": fingerprint,
        }],
    }))
    .unwrap();
    let payload = salve_webhook::payload::parse(&body).unwrap();
    let alert = salve_webhook::payload::check_all(&payload)
        .unwrap()
        .remove(0);
    let group = salve_webhook::build::GroupContext {
        receiver: payload.receiver.clone(),
        group_key: payload.group_key.clone(),
        external_url: payload.external_url.clone(),
    };
    salve_webhook::build::incident(&alert, &group, ns)
}

/// What the bench saw, each on its own monotonic clock reading.
#[derive(Default)]
struct Track {
    sent: HashMap<String, Instant>,
    created: HashMap<String, Instant>,
    /// wall clock of the create call returning, to compare with the operator's log
    created_wall: HashMap<String, Timestamp>,
    /// incident → names of its Jobs (more than one is a failure)
    jobs: HashMap<String, HashSet<String>>,
    job_seen: HashMap<String, Instant>,
    job_complete: HashMap<String, Instant>,
    verifying: HashMap<String, Instant>,
    annotated: HashMap<String, Instant>,
    phase: HashMap<String, Phase>,
    terminal: HashMap<String, Instant>,
}

type Shared = Arc<Mutex<Track>>;

fn job_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// Watches the namespace's Jobs (label `salve.dev/incident`) and records when each appears
/// and completes.
fn watch_jobs(client: Client, ns: &str, track: Shared) -> tokio::task::JoinHandle<()> {
    let api: Api<Job> = Api::namespaced(client, ns);
    let cfg = watcher::Config::default().labels(salve_api::keys::INCIDENT_LABEL);
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg).boxed();
        while let Some(ev) = stream.try_next().await.unwrap_or_else(|e| {
            eprintln!("[bench] Job watch error: {e}");
            None
        }) {
            let now = Instant::now();
            let job = match ev {
                watcher::Event::Apply(j) | watcher::Event::InitApply(j) => j,
                _ => continue,
            };
            let Some(inc) = job.labels().get(salve_api::keys::INCIDENT_LABEL).cloned() else {
                continue;
            };
            let mut t = track.lock().unwrap();
            t.jobs
                .entry(inc.clone())
                .or_default()
                .insert(job.name_any());
            t.job_seen.entry(inc.clone()).or_insert(now);
            if job_complete(&job) {
                t.job_complete.entry(inc).or_insert(now);
            }
        }
        panic!("the Job watch ended");
    })
}

/// Watches the namespace's Incidents: phases, when Verifying and terminal phases are reached;
/// every incident reaching Verifying is sent to `verifying_tx` (to be marked resolved).
fn watch_incidents(
    client: Client,
    ns: &str,
    track: Shared,
    verifying_tx: futures::channel::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Incident> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.try_next().await.unwrap_or_else(|e| {
            eprintln!("[bench] Incident watch error: {e}");
            None
        }) {
            let now = Instant::now();
            let inc = match ev {
                watcher::Event::Apply(i) | watcher::Event::InitApply(i) => i,
                _ => continue,
            };
            let name = inc.name_any();
            let phase = inc.status.as_ref().map_or(Phase::Pending, |s| s.phase);
            let mut t = track.lock().unwrap();
            t.phase.insert(name.clone(), phase);
            if phase == Phase::Verifying && !t.verifying.contains_key(&name) {
                t.verifying.insert(name.clone(), now);
                let _ = verifying_tx.unbounded_send(name.clone());
            }
            if phase.is_terminal() {
                t.terminal.entry(name).or_insert(now);
            }
        }
        panic!("the Incident watch ended");
    })
}

/// Marks each incident sent on `rx` resolved exactly as the webhook shim does when
/// Alertmanager reports the alert resolved (server-side apply of the annotation, field manager
/// `salve-webhook`).
fn annotator(
    client: Client,
    ns: &str,
    track: Shared,
    rx: futures::channel::mpsc::UnboundedReceiver<String>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Incident> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        rx.for_each_concurrent(ANNOTATE_CONCURRENCY, |name| {
            let (api, track) = (api.clone(), track.clone());
            async move {
                let patch = json!({
                    "apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
                    "metadata": {"name": name, "annotations": {
                        salve_api::keys::ALERT_RESOLVED_AT: Timestamp::now().to_string()}}
                });
                api.patch(
                    &name,
                    &PatchParams::apply(salve_api::WEBHOOK_FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .unwrap_or_else(|e| panic!("marking {name} resolved: {e}"));
                track.lock().unwrap().annotated.insert(name, Instant::now());
            }
        })
        .await;
    })
}

async fn create_one(api: &Api<Incident>, inc: Incident, track: &Shared) {
    let name = inc.name_any();
    let sent = Instant::now();
    api.create(&PostParams::default(), &inc)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    let done = Instant::now();
    let wall = Timestamp::now();
    let mut t = track.lock().unwrap();
    t.sent.insert(name.clone(), sent);
    t.created_wall.insert(name.clone(), wall);
    t.created.insert(name, done);
}

/// Creates all of `incs`, `CREATE_CONCURRENCY` at a time.
async fn create_burst(api: &Api<Incident>, incs: Vec<Incident>, track: &Shared) {
    futures::stream::iter(incs)
        .for_each_concurrent(CREATE_CONCURRENCY, |inc| create_one(api, inc, track))
        .await;
}

/// Polls until `done(track)` holds, printing progress; fails after `secs` with a diagnosis.
async fn wait_for(
    op: (&reqwest::Client, &str),
    secs: u64,
    what: &str,
    track: &Shared,
    done: impl Fn(&Track) -> bool,
    progress: impl Fn(&Track) -> String,
) {
    let start = Instant::now();
    let mut last = Instant::now();
    loop {
        let line = {
            let t = track.lock().unwrap();
            if done(&t) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out after {secs}s waiting for {what}: {}",
                progress(&t)
            );
            (last.elapsed() >= Duration::from_secs(10)).then(|| progress(&t))
        };
        if let Some(line) = line {
            let writes = operator_writes(op.0, op.1).await;
            eprintln!(
                "[bench] {:>4.0}s waiting for {what}: {line} (load {}; operator writes so far: {})",
                start.elapsed().as_secs_f64(),
                loadavg(),
                writes
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase_counts(t: &Track, names: &[String]) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        let p = t.phase.get(n).map_or("(not seen)", |p| p.as_str());
        *m.entry(p).or_default() += 1;
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Dist {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles of `v` (milliseconds).
fn dist(mut v: Vec<f64>) -> Dist {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Dist {
        n: v.len(),
        p50: p(0.50),
        p90: p(0.90),
        p99: p(0.99),
        max: v[v.len() - 1],
    }
}

fn ms(a: Instant, b: Instant) -> f64 {
    // Signed: a Job can be seen before the create call's response arrives.
    if b >= a {
        (b - a).as_secs_f64() * 1000.0
    } else {
        -((a - b).as_secs_f64() * 1000.0)
    }
}

fn row(label: &str, d: &Dist) -> String {
    format!(
        "| {label} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |\n",
        d.n, d.p50, d.p90, d.p99, d.max
    )
}

/// Latencies between two recorded instants for `names` (both must exist).
fn between(
    names: &[String],
    from: &HashMap<String, Instant>,
    to: &HashMap<String, Instant>,
) -> Dist {
    dist(
        names
            .iter()
            .filter_map(|n| Some(ms(*from.get(n)?, *to.get(n)?)))
            .collect(),
    )
}

struct Case {
    label: String,
    /// Create → Job
    latency: Dist,
    /// incidents per second from the first create sent to the last Job seen
    throughput: f64,
    /// first create sent → last create returned
    create_span_s: f64,
    /// first create sent → last Job seen
    job_span_s: f64,
    /// first create sent → last incident Resolved
    resolve_span_s: f64,
    job_run: Dist,
    to_verifying: Dist,
    to_resolved: Dist,
    negative: usize,
}

/// Checks every incident of `names` got exactly one Job, and measures.
fn case(label: String, names: Vec<String>, t: &Track) -> Case {
    for n in &names {
        let jobs = t.jobs.get(n).map_or(0, HashSet::len);
        assert_eq!(jobs, 1, "incident {n} has {jobs} Jobs (expected exactly 1)");
    }
    let first_sent = names.iter().map(|n| t.sent[n]).min().unwrap();
    let last_created = names.iter().map(|n| t.created[n]).max().unwrap();
    let last_job = names.iter().map(|n| t.job_seen[n]).max().unwrap();
    let last_resolved = names.iter().map(|n| t.terminal[n]).max().unwrap();
    let latency = between(&names, &t.created, &t.job_seen);
    let negative = names
        .iter()
        .filter(|n| t.job_seen[*n] < t.created[*n])
        .count();
    let job_span_s = (last_job - first_sent).as_secs_f64();
    Case {
        label,
        latency,
        throughput: names.len() as f64 / job_span_s,
        create_span_s: (last_created - first_sent).as_secs_f64(),
        job_span_s,
        resolve_span_s: (last_resolved - first_sent).as_secs_f64(),
        job_run: between(&names, &t.job_seen, &t.job_complete),
        to_verifying: between(&names, &t.job_complete, &t.verifying),
        to_resolved: between(&names, &t.annotated, &t.terminal),
        negative,
    }
}

/// When the operator logged "created remediation Job" for each incident (its own clock; the
/// line is written after the create call returned).
fn jobs_logged(log: &std::path::Path) -> HashMap<String, Timestamp> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut m = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["fields"]["message"] != "created remediation Job" {
            continue;
        }
        let (Some(inc), Some(ts)) = (
            v["span"]["incident"].as_str(),
            v["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok()),
        ) else {
            continue;
        };
        m.entry(inc.to_owned()).or_insert(ts);
    }
    m
}

/// `name{labels} value` lines of a Prometheus text exposition whose name is `metric`.
fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, v) = r.split_once('}')?;
                (labels, v)
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None;
            };
            let value: f64 = value.split_whitespace().next()?.parse().ok()?;
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value))
        })
        .collect()
}

/// The operator's API writes by `resource verb`.
async fn operator_writes(http: &reqwest::Client, url: &str) -> BTreeMap<String, f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut m = BTreeMap::new();
    for (l, v) in samples(&text, "salve_operator_api_writes_total") {
        m.insert(format!("{} {}", l["resource"], l["verb"]), v);
    }
    m
}

async fn operator_metrics(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The API server's own count of write requests for the resources the operator writes, by
/// `VERB resource[/subresource] code` (all clients: the operator, this bench, the controllers).
fn apiserver_writes() -> BTreeMap<String, f64> {
    let kubectl = std::env::var("SALVE_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(salve_tests::cluster_dir().join("kubeconfig"))
        .args(["get", "--raw", "/metrics"])
        .output();
    let Ok(out) = out else {
        return BTreeMap::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut m = BTreeMap::new();
    for (l, v) in samples(&text, "apiserver_request_total") {
        let verb = l.get("verb").map_or("", String::as_str);
        if !matches!(verb, "POST" | "PATCH" | "PUT" | "APPLY" | "DELETE") {
            continue;
        }
        let res = l.get("resource").map_or("", String::as_str);
        if !matches!(
            res,
            "incidents" | "jobs" | "secrets" | "events" | "pods" | "playbookcatalogs"
        ) {
            continue;
        }
        let sub = l.get("subresource").map_or("", String::as_str);
        let key = format!(
            "{verb} {res}{}{} {}",
            if sub.is_empty() { "" } else { "/" },
            sub,
            l.get("code").map_or("", String::as_str)
        );
        *m.entry(key).or_insert(0.0) += v;
    }
    m
}

fn delta(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Watches peak VmRSS of `pid` until aborted.
fn rss_sampler(pid: u32, peak: Arc<std::sync::atomic::AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            peak.fetch_max(vm_kib(pid, "VmRSS:"), std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = std::env::var_os("SALVE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| salve_tests::repo_root().join("target/release/salve"));
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p salve",
        bin.display()
    );
    let trickle_n: usize = env_or("SALVE_BENCH_TRICKLE", TRICKLE);
    let burst_n: usize = env_or("SALVE_BENCH_BURST", BURST);
    let total_n: usize = env_or("SALVE_BENCH_TOTAL", TOTAL).max(trickle_n + burst_n);
    let stabilization: u32 = env_or("SALVE_BENCH_STABILIZATION_SECONDS", STABILIZATION_SECONDS);
    let client = salve_tests::admin().await;
    salve_tests::install_crds(&client).await;
    let ns = salve_tests::namespace(&client, "bench-controller").await;
    let run = std::process::id();
    // Job pods need the namespace's default ServiceAccount (kube-controller-manager adds it).
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    salve_tests::eventually(60, "the default ServiceAccount", || async {
        sas.get_opt("default").await.ok().flatten().map(|_| ())
    })
    .await;
    let catalogs: Api<PlaybookCatalog> = Api::namespaced(client.clone(), &ns);
    catalogs
        .create(&PostParams::default(), &catalog(&ns, stabilization))
        .await
        .unwrap();

    // ---- the operator, its own process
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let help = Command::new(&bin)
        .args(["operator", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut args: Vec<String> = [
        "operator",
        "--namespace",
        &ns,
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--runner-image",
        "salve-runner:bench",
        // Above the number of Jobs that can run at once here, so the cap never holds one back
        // (a held incident waits 10 s): this bench measures the controller, not the cap.
        "--max-concurrent-jobs",
        "2000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let leader_flag = help.contains("--leader-elect");
    if leader_flag {
        args.push("--leader-elect=false".into());
    }
    let logdir = std::env::temp_dir().join(format!("salve-bench-controller-{run}"));
    std::fs::create_dir_all(&logdir).unwrap();
    let log = logdir.join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(&bin)
        .args(&args)
        .env("KUBECONFIG", salve_tests::cluster_dir().join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let op = Operator(child);
    let pid = op.0.id();
    // Interrupted (Ctrl-C, SIGTERM): Drop does not run, so stop the operator here.
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        std::process::exit(130);
    });
    eprintln!(
        "[bench] operator pid {pid}, namespace {ns}, log {}",
        log.display()
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    salve_tests::eventually(30, "the operator to serve /readyz", || async {
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    // The catalog status controller has seen the catalog: the menu is loaded.
    salve_tests::eventually(30, "the catalog's status", || async {
        let c = catalogs.get("ops").await.ok()?;
        (c.status?.valid_entries == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = vm_kib(pid, "VmRSS:");
    let idle_cpu = cpu_s(pid);
    let writes0 = operator_writes(&http, &url).await;
    let api0 = apiserver_writes();
    let cpu0 = cpu_snapshot(pid);
    eprintln!("[bench] idle RSS {:.1} MiB", mib(idle_rss));

    // ---- watchers and the resolver
    let track: Shared = Arc::default();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let _jw = watch_jobs(client.clone(), &ns, track.clone());
    let _iw = watch_incidents(client.clone(), &ns, track.clone(), tx);
    let _an = annotator(client.clone(), &ns, track.clone(), rx);
    let api: Api<Incident> = Api::namespaced(client.clone(), &ns);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = rss_sampler(pid, peak.clone());

    // ---- trickle: one low-risk incident every 50 ms
    eprintln!(
        "[bench] trickle: {trickle_n} incidents, one every {} ms",
        TRICKLE_EVERY.as_millis()
    );
    let load_trickle = loadavg();
    let incs: Vec<Incident> = (0..trickle_n)
        .map(|n| incident(&ns, run, n, true))
        .collect();
    let trickle_names: Vec<String> = incs.iter().map(|i| i.name_any()).collect();
    let mut tick = tokio::time::interval(TRICKLE_EVERY);
    let mut tasks = Vec::new();
    for inc in incs {
        tick.tick().await;
        let (api, track) = (api.clone(), track.clone());
        tasks.push(tokio::spawn(
            async move { create_one(&api, inc, &track).await },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let names = trickle_names.clone();
    wait_for(
        (&http, &url),
        600,
        "the trickle's incidents to resolve",
        &track,
        |t| names.iter().all(|n| t.terminal.contains_key(n)),
        |t| phase_counts(t, &names),
    )
    .await;
    let cpu1 = cpu_snapshot(pid);

    // ---- burst: 1,000 low-risk incidents at once
    eprintln!("[bench] burst: {burst_n} incidents, {CREATE_CONCURRENCY} creates in flight");
    let load_burst = loadavg();
    let incs: Vec<Incident> = (trickle_n..trickle_n + burst_n)
        .map(|n| incident(&ns, run, n, true))
        .collect();
    let burst_names: Vec<String> = incs.iter().map(|i| i.name_any()).collect();
    let burst_start = Instant::now();
    create_burst(&api, incs, &track).await;
    let names = burst_names.clone();
    wait_for(
        (&http, &url),
        120,
        "a Job for every burst incident",
        &track,
        |t| names.iter().all(|n| t.job_seen.contains_key(n)),
        |t| {
            let with_job = names.iter().filter(|n| t.job_seen.contains_key(*n)).count();
            format!("{with_job} with a Job; {}", phase_counts(t, &names))
        },
    )
    .await;
    let rss_after_jobs = vm_kib(pid, "VmRSS:");
    let cpu_jobs = cpu_snapshot(pid);
    wait_for(
        (&http, &url),
        1800,
        "the burst's incidents to resolve",
        &track,
        |t| names.iter().all(|n| t.terminal.contains_key(n)),
        |t| {
            let complete = names
                .iter()
                .filter(|n| t.job_complete.contains_key(*n))
                .count();
            format!("{complete} Jobs Complete; {}", phase_counts(t, &names))
        },
    )
    .await;
    let burst_wall = burst_start.elapsed().as_secs_f64();
    // Let trailing writes (Events after the last status write) land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu2 = cpu_snapshot(pid);
    let rss_1000 = vm_kib(pid, "VmRSS:");
    let writes1 = operator_writes(&http, &url).await;
    let api1 = apiserver_writes();
    let metrics1 = operator_metrics(&http, &url).await;

    let (trickle, burst, resolved_names) = {
        let t = track.lock().unwrap();
        let all: Vec<String> = trickle_names
            .iter()
            .chain(burst_names.iter())
            .cloned()
            .collect();
        for n in &all {
            assert_eq!(
                t.phase.get(n),
                Some(&Phase::Resolved),
                "incident {n} did not resolve"
            );
        }
        (
            case(
                format!("trickle (1 per {} ms)", TRICKLE_EVERY.as_millis()),
                trickle_names.clone(),
                &t,
            ),
            case(
                format!("burst ({burst_n} at once)"),
                burst_names.clone(),
                &t,
            ),
            all,
        )
    };
    let resolved = resolved_names.len() as f64;

    // ---- up to 10,000: incidents no entry matches (escalated, no Job)
    let extra = total_n - trickle_n - burst_n;
    eprintln!("[bench] {extra} more incidents that escalate (no catalog entry matches)");
    let load_10k = loadavg();
    let incs: Vec<Incident> = (trickle_n + burst_n..total_n)
        .map(|n| incident(&ns, run, n, false))
        .collect();
    let esc_names: Vec<String> = incs.iter().map(|i| i.name_any()).collect();
    let esc_start = Instant::now();
    create_burst(&api, incs, &track).await;
    let esc_created_s = esc_start.elapsed().as_secs_f64();
    let names = esc_names.clone();
    wait_for(
        (&http, &url),
        1800,
        "the escalating incidents to reach a terminal phase",
        &track,
        |t| names.iter().all(|n| t.terminal.contains_key(n)),
        |t| phase_counts(t, &names),
    )
    .await;
    let esc_all_s = esc_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu3 = cpu_snapshot(pid);
    let rss_10k = vm_kib(pid, "VmRSS:");
    let hwm = vm_kib(pid, "VmHWM:");
    let writes2 = operator_writes(&http, &url).await;
    let api2 = apiserver_writes();
    // A quiet minute later: does memory come back?
    tokio::time::sleep(Duration::from_secs(30)).await;
    let rss_10k_later = vm_kib(pid, "VmRSS:");
    sampler.abort();
    let metrics2 = operator_metrics(&http, &url).await;
    let (esc_escalated, esc_no_job) = {
        let t = track.lock().unwrap();
        let escalated = esc_names
            .iter()
            .filter(|n| t.phase.get(*n) == Some(&Phase::Escalated))
            .count();
        let no_job = esc_names.iter().all(|n| !t.jobs.contains_key(n));
        (escalated, no_job)
    };
    assert_eq!(
        esc_escalated,
        esc_names.len(),
        "every unmatched incident escalates"
    );
    assert!(esc_no_job, "an unmatched incident got a Job");
    let total_incidents = api
        .list_metadata(&Default::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(total_incidents, total_n);
    let op_cpu_total = cpu_s(pid) - idle_cpu;
    drop(op);
    let logged = jobs_logged(&log);
    let (logged_trickle, logged_burst) = {
        let t = track.lock().unwrap();
        let lat = |names: &[String]| {
            dist(
                names
                    .iter()
                    .filter_map(|n| {
                        let d = logged.get(n)?.duration_since(*t.created_wall.get(n)?);
                        Some(d.as_secs_f64() * 1000.0)
                    })
                    .collect(),
            )
        };
        (lat(&trickle_names), lat(&burst_names))
    };
    let transitions = |text: &str| -> BTreeMap<String, f64> {
        samples(text, "salve_operator_transitions_total")
            .into_iter()
            .map(|(l, v)| (format!("{} → {}", l["from"], l["to"]), v))
            .collect()
    };

    // ---- report
    let w_res = delta(&writes0, &writes1);
    let w_esc = delta(&writes1, &writes2);
    let sum = |m: &BTreeMap<String, f64>, events: bool| -> f64 {
        m.iter()
            .filter(|(k, _)| events || !k.starts_with("events"))
            .map(|(_, v)| v)
            .sum()
    };
    let mut r = String::new();
    let now = Timestamp::now();
    writeln!(r, "date: {now}").unwrap();
    writeln!(r, "machine: {}", machine()).unwrap();
    writeln!(r, "source: {}", source_state()).unwrap();
    writeln!(
        r,
        "operator: `salve operator` release binary, its own process, JSON info logs to a file, \
         flags `{}`{}; the bench (watchers, creates, annotations) and the whole control plane \
         on the same machine\n",
        args.join(" "),
        if leader_flag {
            " (leader election off)"
        } else {
            " (no leader election flag in this build)"
        }
    )
    .unwrap();
    writeln!(
        r,
        "### Incident created → Job created (low risk, rules path)\n"
    )
    .unwrap();
    writeln!(
        r,
        "From the Incident create call returning to the Job appearing on this bench's watch \
         (monotonic clock).\n"
    )
    .unwrap();
    r.push_str("| case | n | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |\n");
    r.push_str(&row(&trickle.label, &trickle.latency));
    r.push_str(&row(&burst.label, &burst.latency));
    writeln!(
        r,
        "\nThe same from the operator's side: create call returned (wall clock) → the \
         operator's log line \"created remediation Job\" (written after its Job create \
         returned; no watch delivery to this bench in it):\n\n\
         | case | n | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |"
    )
    .unwrap();
    r.push_str(&row(&trickle.label, &logged_trickle));
    r.push_str(&row(&burst.label, &logged_burst));
    r.push('\n');
    for c in [&trickle, &burst] {
        writeln!(
            r,
            "- {}: creates took {:.1} s, all Jobs existed {:.1} s after the first create \
             ({:.0} incidents/s end to end), all resolved {:.1} s after the first create; \
             {} Job(s) seen before their create call returned; load average at start {}",
            c.label,
            c.create_span_s,
            c.job_span_s,
            c.throughput,
            c.resolve_span_s,
            c.negative,
            if c.label.starts_with("trickle") {
                &load_trickle
            } else {
                &load_burst
            }
        )
        .unwrap();
    }
    writeln!(
        r,
        "\nThe later stages, for comparison (not the operator alone):\n\n\
         | stage | case | n | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    .unwrap();
    for (stage, f) in [
        (
            "Job created → Job Complete (kube-controller-manager, scheduler, kwok)",
            (|c: &Case| &c.job_run) as fn(&Case) -> &Dist,
        ),
        ("Job Complete → Verifying (operator)", |c: &Case| {
            &c.to_verifying
        }),
        ("resolved annotation → Resolved (operator)", |c: &Case| {
            &c.to_resolved
        }),
    ] {
        for c in [&trickle, &burst] {
            let d = f(c);
            writeln!(
                r,
                "| {stage} | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                c.label, d.n, d.p50, d.p90, d.p99, d.max
            )
            .unwrap();
        }
    }
    writeln!(
        r,
        "\n### API writes per resolved incident\n\n\
         `salve_operator_api_writes_total` (the operator's own count, 409s included) over the \
         {resolved} resolved incidents of the trickle and the burst:\n\n\
         | resource verb | writes | per resolved incident |\n| --- | --- | --- |"
    )
    .unwrap();
    for (k, v) in &w_res {
        writeln!(r, "| {k} | {v} | {:.2} |", v / resolved).unwrap();
    }
    writeln!(
        r,
        "| **total without Events** | {} | **{:.2}** |\n| **total with Events** | {} | **{:.2}** |",
        sum(&w_res, false),
        sum(&w_res, false) / resolved,
        sum(&w_res, true),
        sum(&w_res, true) / resolved
    )
    .unwrap();
    writeln!(
        r,
        "\nPhase transitions the operator counted (`salve_operator_transitions_total`) per \
         resolved incident (1.00 each when every transition is made once):\n"
    )
    .unwrap();
    for (k, v) in transitions(&metrics1) {
        writeln!(r, "- {k}: {v} ({:.2} per resolved incident)", v / resolved).unwrap();
    }
    writeln!(
        r,
        "\nThe API server's own count over the same interval (`apiserver_request_total`, all \
         clients: the operator, this bench's creates and annotations, kube-controller-manager, \
         the scheduler, kwok):\n"
    )
    .unwrap();
    for (k, v) in delta(&api0, &api1) {
        writeln!(r, "- {k}: {v}").unwrap();
    }
    writeln!(r, "\nand over the escalations:\n").unwrap();
    for (k, v) in delta(&api1, &api2) {
        writeln!(r, "- {k}: {v}").unwrap();
    }
    let esc_n = esc_names.len() as f64;
    writeln!(
        r,
        "\nEscalated incidents (no matching entry): {:.2} writes each without Events, {:.2} with \
         ({}).",
        sum(&w_esc, false) / esc_n,
        sum(&w_esc, true) / esc_n,
        w_esc
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    writeln!(
        r,
        "\n### Operator memory and CPU\n\n\
         | when | VmRSS |\n| --- | --- |\n\
         | idle (catalog loaded, no incidents) | {:.1} MiB |\n\
         | 1,000 burst Jobs created | {:.1} MiB |\n\
         | {} incidents resolved | {:.1} MiB |\n\
         | {total_n} incidents in the namespace, all terminal | {:.1} MiB |\n\
         | the same, 30 s later | {:.1} MiB |\n\
         | peak sampled (100 ms) / VmHWM | {:.1} MiB / {:.1} MiB |\n",
        mib(idle_rss),
        mib(rss_after_jobs),
        resolved_names.len(),
        mib(rss_1000),
        mib(rss_10k),
        mib(rss_10k_later),
        mib(peak.load(std::sync::atomic::Ordering::Relaxed)),
        mib(hwm),
    )
    .unwrap();
    writeln!(
        r,
        "- {extra} escalating incidents: created in {esc_created_s:.1} s ({:.0}/s, \
         {CREATE_CONCURRENCY} in flight), all terminal {esc_all_s:.1} s after the first create; \
         load average at start {load_10k}",
        extra as f64 / esc_created_s
    )
    .unwrap();
    writeln!(
        r,
        "- CPU seconds (utime + stime) by phase:\n  - trickle ({trickle_n} resolved): {}\n  - burst \
         until every Job existed: {}\n  - burst, whole ({burst_n} resolved): {}\n  - {extra} \
         escalations: {}\n- operator CPU from idle to the end: {op_cpu_total:.1} s",
        cpu_delta(&cpu0, &cpu1),
        cpu_delta(&cpu1, &cpu_jobs),
        cpu_delta(&cpu1, &cpu2),
        cpu_delta(&cpu2, &cpu3),
    )
    .unwrap();
    let counters = |text: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("salve_operator_transitions_total")
                    || l.starts_with("salve_operator_reconcile_errors_total")
                    || l.starts_with("salve_operator_decisions_total")
                    || l.starts_with("salve_operator_jobs_created_total")
                    || l.starts_with("salve_operator_stale_status_writes_total")
                    || l.starts_with("salve_operator_stale_reconciles_skipped_total")
            })
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        r,
        "\nOperator counters after the burst: {}\n\nat the end: {}\n\nburst wall time \
         (first create → last Resolved, including waiting for Verifying and the annotation): \
         {burst_wall:.1} s",
        counters(&metrics1),
        counters(&metrics2)
    )
    .unwrap();

    println!("{r}");
    let out = salve_tests::repo_root().join("target/bench-controller.md");
    std::fs::write(&out, &r).unwrap();
    println!("written to {}", out.display());
}
