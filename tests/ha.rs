//! HA on the real control plane: real `salve operator` processes (target/debug/salve) stand for
//! election on one Lease. Only the holder acts; SIGKILLing it while incidents are in flight
//! hands the Lease to the standby, which finishes them with exactly one Job per
//! (incident, attempt); SIGTERM releases the Lease at once; a leader that loses its Lease
//! (taken over, or frozen past its renew deadline) stops and exits non-zero.
//!
//! Durations are measured and printed, never asserted (speed is for benchmarks); each wait
//! has only a generous failure timeout. Every child process is killed when its guard drops,
//! also when a test panics.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use salve_api::{Incident, Phase, PlaybookCatalog};
use salve_tests::{admin, cluster_dir, eventually, install_crds, namespace, repo_root};
use serde_json::json;

const LEASE: &str = "salve-operator";

/// The `salve` binary, built once per test run (a no-op when `cargo test --workspace` just
/// built it; keeps `cargo test -p salve-tests --test ha` from running a stale binary).
/// `SALVE_BIN` overrides.
fn salve_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SALVE_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "salve"])
            .current_dir(repo_root())
            .status()
            .expect("running cargo build -p salve");
        assert!(status.success(), "cargo build -p salve failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let bin = target.join("debug/salve");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}

/// One `salve operator` process; SIGKILLed and reaped when dropped.
struct Replica {
    name: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts replica `name` (its POD_NAME, hence its Lease identity) for namespace `ns`.
    fn start(name: &str, ns: &str) -> Replica {
        let mut child = Command::new(salve_bin())
            .args([
                "operator",
                "--namespace",
                ns,
                "--leader-election-namespace",
                ns,
                "--metrics-addr",
                "127.0.0.1:0",
                "--runner-image",
                "salve-runner:test",
                "--max-concurrent-jobs",
                "3",
            ])
            .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
            .env("POD_NAME", name)
            .env_remove("POD_NAMESPACE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting salve operator");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("SALVE_HA_VERBOSE").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Replica {
            name: name.to_owned(),
            child,
            logs,
        }
    }

    fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn log_dump(&self) -> String {
        let logs = self.logs.lock().unwrap();
        let tail = logs.len().saturating_sub(40);
        logs[tail..].join("\n")
    }

    /// The address /metrics is served on (logged at start).
    async fn metrics_url(&self) -> String {
        eventually(60, &format!("{} to serve /metrics", self.name), || async {
            let logs = self.logs.lock().unwrap();
            logs.iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let f = v.get("fields")?;
                if f.get("message")?.as_str()? != "serving /metrics, /healthz, /readyz" {
                    return None;
                }
                Some(format!("http://{}", f.get("addr")?.as_str()?))
            })
        })
        .await
    }

    /// One sample of a metric without labels (`None` when absent).
    async fn metric(&self, name: &str) -> Option<f64> {
        let url = self.metrics_url().await;
        let body = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let url = self.metrics_url().await;
        let r = reqwest::get(format!("{url}{path}")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// Waits for the process to exit by itself.
    async fn exit_status(&mut self, secs: u64) -> ExitStatus {
        let name = self.name.clone();
        let child = &mut self.child;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not exit within {secs}s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A catalog with one low-risk entry that decides by rules (no LLM).
fn catalog(ns: &str) -> PlaybookCatalog {
    serde_json::from_value(json!({
        "apiVersion": "salve.dev/v1alpha1",
        "kind": "PlaybookCatalog",
        "metadata": {"name": "ops", "namespace": ns},
        "spec": {"entries": [{
            "name": "clear_disk_space", "description": "free disk space", "risk": "low",
            "playbook": "clear-disk.yml",
            "parameters": {"type": "object", "additionalProperties": false, "required": ["target_host", "min_free_gb"],
                "properties": {"target_host": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
                               "min_free_gb": {"type": "integer", "minimum": 1, "maximum": 100}}},
            "match": {"alertnames": ["NodeFilesystemSpaceFillingUp"]},
            "paramsFromLabels": {"target_host": "{{ labels.instance | host }}", "min_free_gb": "10"},
            "targetParam": "target_host", "maxAttempts": 2, "timeoutSeconds": 60,
            "verify": {"stabilizationSeconds": 1}
        }]}
    }))
    .unwrap()
}

/// Incident `i` of the test: its own fingerprint and target host.
fn incident(ns: &str, i: u32) -> Incident {
    let alertname = "NodeFilesystemSpaceFillingUp";
    let fingerprint = format!("{:016x}", 0xa0a0_0000_u64 + u64::from(i));
    let starts = "2026-11-28T00:11:26.568Z";
    let name = salve_api::names::incident_name(alertname, &fingerprint, starts);
    serde_json::from_value(json!({
        "apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": name, "namespace": ns, "labels": {"salve.dev/fingerprint": fingerprint}},
        "spec": {"fingerprint": fingerprint, "receiver": "salve", "groupKey": "{}", "externalURL": "http://am",
                 "alert": {"name": alertname,
                           "labels": {"alertname": alertname, "instance": format!("node-{i}:9100"), "mountpoint": "/"},
                           "annotations": {"summary": "disk filling up"}, "startsAt": "2026-11-28T00:11:26Z"}}
    }))
    .unwrap()
}

async fn create_incidents(api: &Api<Incident>, ns: &str, ids: std::ops::Range<u32>) -> Vec<String> {
    let mut names = Vec::new();
    for i in ids {
        let inc = incident(ns, i);
        names.push(inc.name_any());
        api.create(&PostParams::default(), &inc).await.unwrap();
    }
    names
}

async fn setup(prefix: &str) -> (Client, String) {
    let client = admin().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    Api::<PlaybookCatalog>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &catalog(&ns))
        .await
        .unwrap();
    (client, ns)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Polls the Lease every 20 ms until `want` holds it; returns how long that took from `since`.
async fn wait_holder(leases: &Api<Lease>, want: &str, since: Instant, secs: u64) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if holder(leases).await.as_deref() == Some(want) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{want} did not take the lease within {secs}s (holder: {:?})",
            holder(leases).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn phases(api: &Api<Incident>, names: &[String]) -> BTreeMap<String, Phase> {
    let mut out = BTreeMap::new();
    for inc in api.list(&ListParams::default()).await.unwrap() {
        if names.contains(&inc.name_any()) {
            let phase = inc.status.as_ref().map_or(Phase::Pending, |s| s.phase);
            out.insert(inc.name_any(), phase);
        }
    }
    out
}

async fn wait_all(api: &Api<Incident>, names: &[String], phase: Phase, secs: u64) {
    eventually(secs, &format!("all incidents to reach {phase}"), || async {
        let p = phases(api, names).await;
        (p.len() == names.len() && p.values().all(|x| *x == phase)).then_some(())
    })
    .await;
}

/// Every salve Job in `ns`, by incident.
async fn jobs_by_incident(client: &Client, ns: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let jobs = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=salve"))
        .await
        .unwrap();
    for j in jobs {
        let inc = j
            .labels()
            .get("salve.dev/incident")
            .cloned()
            .unwrap_or_default();
        out.entry(inc).or_default().push(j.name_any());
    }
    out
}

#[tokio::test]
async fn two_replicas_one_acts_and_a_killed_leader_hands_over_without_duplicate_jobs() {
    let (client, ns) = setup("ha-kill").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let incidents: Api<Incident> = Api::namespaced(client.clone(), &ns);

    // Two replicas start together; exactly one takes the Lease.
    let a = Replica::start("salve-a", &ns);
    let b = Replica::start("salve-b", &ns);
    let first = eventually(60, "a replica to take the lease", || holder(&leases)).await;
    let (mut leader, standby) = match first.as_str() {
        "salve-a" => (a, b),
        "salve-b" => (b, a),
        other => panic!("unexpected holder {other}"),
    };
    println!("leader: {}, standby: {}", leader.name, standby.name);
    eventually(60, "the standby to stand by", || async {
        standby
            .logged("the lease is held by another replica")
            .then_some(())
    })
    .await;
    // Both serve health, readiness and metrics; only the leader leads.
    for r in [&leader, &standby] {
        assert_eq!(r.get("/healthz").await, (200, "ok".into()), "{}", r.name);
        assert_eq!(r.get("/readyz").await.0, 200, "{}", r.name);
    }
    assert_eq!(leader.metric("salve_operator_leader").await, Some(1.0));
    assert_eq!(standby.metric("salve_operator_leader").await, Some(0.0));

    // Batch 1, created before the kill.
    let mut names = create_incidents(&incidents, &ns, 0..8).await;
    // Kill the leader as soon as it has started acting, with incidents still in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while jobs_by_incident(&client, &ns).await.is_empty() {
        assert!(Instant::now() < deadline, "the leader created no Job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        standby.metric("salve_operator_jobs_created_total").await,
        Some(0.0),
        "the standby acted"
    );
    assert!(
        !standby.logged("acquired the lease"),
        "{}",
        standby.log_dump()
    );
    leader.child.kill().unwrap(); // SIGKILL: no chance to release the lease
    let killed = Instant::now();
    let _ = leader.child.wait();
    let before = phases(&incidents, &names).await;
    let jobs_at_kill: usize = jobs_by_incident(&client, &ns)
        .await
        .values()
        .map(Vec::len)
        .sum();
    let in_flight = before
        .values()
        .filter(|p| !matches!(p, Phase::Verifying | Phase::Resolved))
        .count();
    println!(
        "at the kill: {jobs_at_kill} Jobs, {in_flight} of {} incidents still in flight: {:?}",
        names.len(),
        before.values().collect::<Vec<_>>()
    );
    assert!(
        in_flight > 0,
        "nothing was in flight at the kill: {before:?}"
    );

    // The standby takes over (bounded by the lease timings; measured, not asserted).
    let handover = wait_holder(&leases, &standby.name, killed, 60).await;
    println!(
        "HANDOVER after SIGKILL: {:.2} s (kill → {} holds the lease; bound 12 s + round trips)",
        handover.as_secs_f64(),
        standby.name
    );
    eventually(30, "the standby to report leading", || async {
        (standby.metric("salve_operator_leader").await == Some(1.0)).then_some(())
    })
    .await;

    // Batch 2, created after the kill; the new leader finishes both batches.
    names.extend(create_incidents(&incidents, &ns, 8..16).await);
    wait_all(&incidents, &names, Phase::Verifying, 180).await;
    for n in &names {
        incidents
            .patch(
                n,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "salve.dev/alert-resolved-at": "2026-11-28T01:00:00Z"}}})),
            )
            .await
            .unwrap();
    }
    wait_all(&incidents, &names, Phase::Resolved, 120).await;

    // Exactly one Job per (incident, attempt), and no other salve Job.
    let jobs = jobs_by_incident(&client, &ns).await;
    let mut expected_total = 0;
    for inc in incidents.list(&ListParams::default()).await.unwrap() {
        let name = inc.name_any();
        let attempts = inc.status.as_ref().unwrap().attempts.clone();
        assert_eq!(attempts.len(), 1, "{name}: {attempts:?}");
        let want: BTreeSet<String> = (1..=attempts.len() as u32)
            .map(|n| salve_api::names::job_name(&name, n))
            .collect();
        let have: Vec<String> = jobs.get(&name).cloned().unwrap_or_default();
        assert_eq!(
            have.len(),
            want.len(),
            "{name}: Jobs {have:?}, attempts {attempts:?}"
        );
        assert_eq!(have.into_iter().collect::<BTreeSet<_>>(), want, "{name}");
        expected_total += want.len();
    }
    let total: usize = jobs.values().map(Vec::len).sum();
    assert_eq!(total, expected_total, "a Job outside any attempt: {jobs:?}");
    assert_eq!(total, names.len());
    let by_new = standby
        .metric("salve_operator_jobs_created_total")
        .await
        .unwrap();
    println!(
        "{} incidents resolved, {total} Jobs: {jobs_at_kill} by the killed leader, {by_new} by the new one",
        names.len()
    );
    assert!(by_new >= 8.0, "batch 2 was run by the new leader");

    // A rolling update: a new standby joins, SIGTERM to the leader releases the Lease at once.
    let c = Replica::start("salve-c", &ns);
    eventually(60, "salve-c to stand by", || async {
        c.logged("the lease is held by another replica")
            .then_some(())
    })
    .await;
    let mut old = standby;
    old.signal("-TERM");
    let termed = Instant::now();
    let graceful = wait_holder(&leases, "salve-c", termed, 60).await;
    println!(
        "HANDOVER after SIGTERM: {:.2} s (SIGTERM → salve-c holds the lease)",
        graceful.as_secs_f64()
    );
    let st = old.exit_status(30).await;
    assert!(st.success(), "SIGTERM exit: {st:?}\n{}", old.log_dump());
    assert!(old.logged("released the lease"), "{}", old.log_dump());
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_acting_and_exits_non_zero() {
    let (client, ns) = setup("ha-lost").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let incidents: Api<Incident> = Api::namespaced(client.clone(), &ns);

    // 1. Taken over: someone else writes the Lease; the leader notices at its next renewal.
    let mut a = Replica::start("salve-a", &ns);
    wait_holder(&leases, "salve-a", Instant::now(), 60).await;
    let names = create_incidents(&incidents, &ns, 100..101).await;
    wait_all(&incidents, &names, Phase::Verifying, 120).await;
    let mut lease = leases.get(LEASE).await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    spec.lease_duration_seconds = Some(12);
    leases
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .unwrap();
    let st = a.exit_status(30).await;
    assert!(!st.success(), "exit status {st:?}");
    assert!(a.logged("lost the lease"), "{}", a.log_dump());
    assert!(a.logged("intruder"), "{}", a.log_dump());

    // 2. Frozen past its renew deadline: SIGSTOP the leader, the standby takes over when the
    //    term runs out, and the leader, once resumed, stops instead of acting on.
    let b = Replica::start("salve-b", &ns);
    let c = Replica::start("salve-c", &ns);
    let first = eventually(60, "a replica to take the lease", || async {
        holder(&leases)
            .await
            .filter(|h| h == "salve-b" || h == "salve-c")
    })
    .await;
    let (mut frozen, other) = if first == "salve-b" { (b, c) } else { (c, b) };
    frozen.signal("-STOP");
    let stopped = Instant::now();
    let took = wait_holder(&leases, &other.name, stopped, 60).await;
    println!(
        "handover from a frozen leader: {:.2} s (SIGSTOP → {} holds the lease)",
        took.as_secs_f64(),
        other.name
    );
    frozen.signal("-CONT");
    let st = frozen.exit_status(30).await;
    assert!(!st.success(), "exit status {st:?}");
    assert!(frozen.logged("renew deadline"), "{}", frozen.log_dump());

    // The new leader acts.
    let more = create_incidents(&incidents, &ns, 101..103).await;
    wait_all(&incidents, &more, Phase::Verifying, 120).await;
    assert_eq!(other.metric("salve_operator_leader").await, Some(1.0));
}
