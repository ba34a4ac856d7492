//! End to end with a real Alertmanager (Debian's `prometheus-alertmanager`, started by the test
//! on loopback with its own storage and no HA gossip) and the real shim on the real control
//! plane: alerts posted to Alertmanager's API v2 are grouped, truncated by `max_alerts: 5`,
//! delivered with a bearer token from a credentials file, and the shim completes the group from
//! Alertmanager's API, so exactly one Incident exists per alert.
#![allow(clippy::unwrap_used)]

#[path = "webhook_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client};
use salve_api::{Incident, keys};
use salve_webhook::Metrics;
use serde_json::{Value, json};
use support::{fixture, post_alert, start_shim, temp_dir, token_file};

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// A running Alertmanager, killed (and reaped) when dropped, even when the test fails.
struct Alertmanager {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Alertmanager {
    /// Starts Alertmanager on `port` with `config` (YAML) and waits until it is ready.
    async fn start(port: u16, config: &str) -> Alertmanager {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} missing: run tests/setup-deps.sh (make deps)"
        );
        let dir = temp_dir("alertmanager");
        std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BINARY)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("alertmanager exited with {status}:\n{}", am.log_text());
            }
            if let Ok(r) = http.get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return am;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("alertmanager not ready after 20s:\n{}", am.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST /api/v2/alerts`.
    async fn post_alerts(&self, alerts: &Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(alerts).unwrap())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// `GET /api/v2/alerts`.
    async fn alerts(&self) -> Vec<Value> {
        let body = reqwest::Client::new()
            .get(format!("{}/api/v2/alerts", self.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}

async fn setup(prefix: &str) -> (Client, String) {
    let client = salve_tests::admin().await;
    salve_tests::install_crds(&client).await;
    let ns = salve_tests::namespace(&client, prefix).await;
    (client, ns)
}

async fn incidents(client: &Client, ns: &str) -> Vec<Incident> {
    Api::<Incident>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// Seven failed units on one host: one group (`alertname`, `instance`) of seven alerts.
fn seven_alerts(alertname: &str, starts_at: &str, ends_at: Option<&str>) -> Value {
    Value::Array(
        (0..7)
            .map(|i| {
                let mut a = json!({
                    "labels": {
                        "alertname": alertname,
                        "instance": "db-1:9100",
                        "job": "node",
                        "name": format!("worker@{i}.service"),
                        "severity": "critical",
                        "state": "failed",
                    },
                    "annotations": {
                        "description": format!("The unit worker@{i}.service on db-1 entered state failed."),
                        "summary": format!("Systemd unit worker@{i}.service failed"),
                    },
                    "startsAt": starts_at,
                    "generatorURL": "http://prometheus.example:9090/graph?g0.expr=node_systemd_unit_state",
                });
                if let Some(e) = ends_at {
                    a["endsAt"] = json!(e);
                }
                a
            })
            .collect(),
    )
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[tokio::test]
async fn seven_alerts_through_a_real_truncating_alertmanager_become_exactly_seven_incidents() {
    let (client, ns) = setup("am-e2e").await;
    let token = token_file();
    let am_port = free_port();
    let am_url = url::Url::parse(&format!("http://127.0.0.1:{am_port}")).unwrap();
    let shim = start_shim(&ns, client.clone(), Some(am_url), |c| {
        c.token_file = token.clone()
    })
    .await;
    let config = format!(
        r#"route:
  receiver: salve
  group_by: ['alertname', 'instance']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
- name: salve
  webhook_configs:
  - url: '{}/alert'
    send_resolved: true
    max_alerts: 5
    http_config:
      authorization:
        type: Bearer
        credentials_file: '{}'
"#,
        shim.url(),
        token.display()
    );
    let am = Alertmanager::start(am_port, &config).await;
    let started = now_rfc3339();
    am.post_alerts(&seven_alerts("SalveE2EUnitFailed", &started, None))
        .await;

    let m = shim.metrics();
    salve_tests::eventually(30, "7 incidents from a truncated group", || async {
        (incidents(&client, &ns).await.len() >= 7).then_some(())
    })
    .await;
    assert!(
        Metrics::outcome(&m.truncated_groups, "fetched") >= 1,
        "Alertmanager really truncated the group:\n{}",
        am.log_text()
    );
    assert_eq!(m.truncated_alerts_recovered.get(), 2);
    // Give Alertmanager time for more flushes (group_interval 2s): nothing new appears.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = incidents(&client, &ns).await;
    assert_eq!(all.len(), 7, "exactly one Incident per alert");
    assert_eq!(m.api_calls("create"), 7, "exactly one write per alert");
    let mut units: Vec<String> = all
        .iter()
        .map(|i| i.spec.alert.labels["name"].clone())
        .collect();
    units.sort();
    assert_eq!(
        units,
        (0..7)
            .map(|i| format!("worker@{i}.service"))
            .collect::<Vec<_>>()
    );
    for i in &all {
        assert_eq!(i.spec.receiver, "salve");
        assert!(
            i.spec.group_key.contains("SalveE2EUnitFailed"),
            "{}",
            i.spec.group_key
        );
    }

    // Resolve them all: Alertmanager delivers the resolved group, truncated again.
    let now = now_rfc3339();
    am.post_alerts(&seven_alerts("SalveE2EUnitFailed", &started, Some(&now)))
        .await;
    let marked = salve_tests::eventually(30, "resolved marks", || async {
        let n = incidents(&client, &ns)
            .await
            .iter()
            .filter(|i| {
                i.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(keys::ALERT_RESOLVED_AT))
            })
            .count();
        (n >= 5).then_some(n)
    })
    .await;
    // The two resolved alerts Alertmanager leaves out are not in its API any more (it lists
    // active alerts only): they stay unmarked here, and the operator's verification (is the
    // fingerprint still active?) covers them.
    assert!(marked >= 5, "{marked}");
    assert!(
        am.alerts().await.is_empty(),
        "Alertmanager holds no active alert"
    );
    drop(am);
    shim.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_captured_truncated_group_is_completed_from_a_live_alertmanager() {
    let (client, ns) = setup("am-capture").await;
    // An Alertmanager that holds the same seven alerts the capture came from, and notifies
    // nobody (the capture plays the notification).
    let am_port = free_port();
    let am = Alertmanager::start(
        am_port,
        "route:\n  receiver: salve\n  group_by: ['alertname', 'instance']\n  group_wait: 1h\nreceivers:\n- name: salve\n",
    )
    .await;
    let starts_at = "2026-11-28T00:13:21.65817Z";
    am.post_alerts(&seven_alerts("SystemdUnitFailed", starts_at, None))
        .await;
    let held = am.alerts().await;
    assert_eq!(held.len(), 7);
    assert!(
        held.iter().any(|a| a["fingerprint"] == "26956628bb7294fe"
            && a["startsAt"] == "2026-11-28T00:13:21.658Z"),
        "the live Alertmanager fingerprints the capture's label sets the same: {held:?}"
    );

    let shim = start_shim(
        &ns,
        client.clone(),
        Some(url::Url::parse(&am.url).unwrap()),
        |_| {},
    )
    .await;
    let capture = fixture("webhook-firing-truncated-group.json");
    let (status, _, v) = post_alert(&shim, &capture).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["created"], 7, "{v}");
    assert_eq!(v["recoveredFromAlertmanager"], 2, "{v}");
    assert_eq!(v["truncatedUnrecovered"], 0, "{v}");
    let all = incidents(&client, &ns).await;
    assert_eq!(all.len(), 7);
    for fp in ["26956628bb7294fe", "415554befa28c052"] {
        let want =
            salve_api::names::incident_name("SystemdUnitFailed", fp, "2026-11-28T00:13:21.658Z");
        assert!(
            all.iter()
                .any(|i| i.metadata.name.as_deref() == Some(want.as_str())),
            "{want}"
        );
    }
    // The re-send of the same truncated group: nothing new, no write.
    let (status, _, v) = post_alert(&shim, &capture).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["created"], 0, "{v}");
    assert_eq!(incidents(&client, &ns).await.len(), 7);
    assert_eq!(shim.metrics().api_calls("create"), 7);

    // Alertmanager gone: the truncated payload is answered 503, so Alertmanager retries.
    drop(am);
    let fresh_ns = salve_tests::namespace(&client, "am-gone").await;
    let shim2 = start_shim(
        &fresh_ns,
        client.clone(),
        Some(url::Url::parse(&format!("http://127.0.0.1:{am_port}")).unwrap()),
        |_| {},
    )
    .await;
    let (status, retry, v) = post_alert(&shim2, &capture).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("fetching the truncated group from Alertmanager failed"),
        "{v}"
    );
    shim.shutdown().await.unwrap();
    shim2.shutdown().await.unwrap();
}
