//! `make bench-webhook`: the real `salve webhook` binary (release) as its own process against
//! the local control plane, loaded at concurrency 8 with one alert per POST:
//! (a) every alert new (one Incident created per request), (b) 90 % duplicates (re-sends of
//! alerts already persisted). Reports sustained alerts/s, p50/p99 latency from POST to 2xx,
//! and the shim's RSS idle and under load (VmRSS from /proc). Not a test: it prints numbers
//! (and writes them to target/bench-webhook.md) for docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

#[path = "webhook_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 8;
const PHASE: Duration = Duration::from_secs(15);

struct Shim(Child);
impl Drop for Shim {
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

fn payload(alertname: &str, n: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "receiver": "salve", "status": "firing", "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": alertname},
        "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "instance": format!("node-{n}:9100"), "job": "node", "severity": "warning"},
            "annotations": {"summary": "Filesystem is predicted to run out of space within the next 24 hours.", "description": format!("Filesystem on /dev/sda1 at node-{n}:9100 has only 8.2% available space left.")},
            "startsAt": "2026-11-28T00:11:26.568Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring.svc:9090/graph?g0.expr=vector%281%29",
            "fingerprint": format!("{n:016x}"),
        }],
    }))
    .unwrap()
}

struct Phase {
    alerts_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests: usize,
    errors: u64,
    peak_rss_kib: u64,
}

/// Runs `CONCURRENCY` workers for `PHASE`; `next(i)` gives the alert number of request `i`.
async fn load(
    url: &str,
    pid: u32,
    alertname: &'static str,
    next: Arc<dyn Fn(u64) -> u64 + Send + Sync>,
) -> Phase {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + PHASE;
    let start = Instant::now();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(vm_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, url, counter, errors, next) = (
            http.clone(),
            url.to_owned(),
            counter.clone(),
            errors.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(40_000);
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let body = payload(alertname, next(i));
                let t = Instant::now();
                let ok = http
                    .post(format!("{url}/alert"))
                    .header("authorization", format!("Bearer {}", support::TOKEN))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    sampler.abort();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Phase {
        alerts_per_s: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: *all.last().unwrap() as f64 / 1000.0,
        requests: all.len(),
        errors: errors.load(Ordering::Relaxed),
        peak_rss_kib: peak.load(Ordering::Relaxed),
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
    let client = salve_tests::admin().await;
    salve_tests::install_crds(&client).await;
    let ns = salve_tests::namespace(&client, "bench-webhook").await;
    let token = support::token_file();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = support::temp_dir("bench-webhook").join("shim.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(&bin)
        .args([
            "webhook",
            "--namespace",
            &ns,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--token-file")
        .arg(&token)
        .env("KUBECONFIG", salve_tests::cluster_dir().join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let shim = Shim(child);
    let pid = shim.0.id();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    salve_tests::eventually(30, "the shim to be ready", || async {
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = vm_kib(pid, "VmRSS:");

    // Warm-up (connections, API discovery), not measured: 300 distinct alerts.
    for n in 0..300u64 {
        let r = http
            .post(format!("{url}/alert"))
            .header("authorization", format!("Bearer {}", support::TOKEN))
            .header("content-type", "application/json")
            .body(payload("BenchWarmup", n))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "warm-up: {}", r.status());
    }

    // (a) every alert new.
    let a = load(&url, pid, "BenchNew", Arc::new(|i| i)).await;
    // (b) 90 % duplicates: 9 of 10 requests re-send one of the alerts persisted in (a); the
    // tenth is new.
    let persisted = a.requests as u64;
    let b = load(
        &url,
        pid,
        "BenchNew",
        Arc::new(move |i| {
            if i % 10 == 9 {
                1_000_000_000 + i
            } else {
                (i.wrapping_mul(2_654_435_761)) % persisted.max(1)
            }
        }),
    )
    .await;
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hwm = vm_kib(pid, "VmHWM:");
    let after_rss = vm_kib(pid, "VmRSS:");
    let grab = |name: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.to_owned())
            .collect::<Vec<_>>()
            .join("; ")
    };

    let mib = |k: u64| k as f64 / 1024.0;
    let report = format!(
        "machine: {}\n\
         shim: `salve webhook` release binary, separate process, JSON info logs to a file; load generator (reqwest, {CONCURRENCY} workers, one alert per POST) and the whole control plane on the same machine\n\n\
         | scenario | alerts/s | p50 | p99 | max | requests | errors | peak RSS |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | (a) 100 % new alerts | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {:.1} MiB |\n\
         | (b) 90 % duplicates | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {:.1} MiB |\n\n\
         RSS: idle {:.1} MiB (after start, before any alert), after load {:.1} MiB, high-water mark {:.1} MiB\n\n\
         counters: {}; {}; {}\n",
        machine(),
        a.alerts_per_s,
        a.p50_ms,
        a.p99_ms,
        a.max_ms,
        a.requests,
        a.errors,
        mib(a.peak_rss_kib),
        b.alerts_per_s,
        b.p50_ms,
        b.p99_ms,
        b.max_ms,
        b.requests,
        b.errors,
        mib(b.peak_rss_kib),
        mib(idle_rss),
        mib(after_rss),
        mib(hwm),
        grab("salve_webhook_incidents_created_total"),
        grab("salve_webhook_duplicates_absorbed_total"),
        grab("salve_webhook_api_requests_total"),
    );
    println!("{report}");
    let out = salve_tests::repo_root().join("target/bench-webhook.md");
    std::fs::write(&out, &report).unwrap();
    println!("written to {}", out.display());
    drop(shim);
}
