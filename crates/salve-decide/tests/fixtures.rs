//! Real Alertmanager traffic (shared/fixtures/alertmanager, captured from Alertmanager 0.25)
//! through the rules path of the demo catalog, with no LLM configured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::registry::Registry;
use salve_api::{AlertSnapshot, DecisionSource};
use salve_decide::testing::demo_catalog;
use salve_decide::{DecideConfig, DecisionEngine, OutcomeKind, check_catalogs};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Webhook {
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Timestamp,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
}

fn fixture(name: &str) -> Vec<AlertSnapshot> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/alertmanager")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hook: Webhook = serde_json::from_str(&text).expect("Alertmanager webhook payload");
    hook.alerts
        .into_iter()
        .filter(|a| a.status == "firing")
        .map(|a| AlertSnapshot {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            labels: a.labels,
            annotations: a.annotations,
            starts_at: Time(a.starts_at),
            generator_url: a.generator_url,
        })
        .collect()
}

async fn decide_all(name: &str) -> Vec<(OutcomeKind, salve_api::Decision)> {
    let mut registry = Registry::default();
    let engine = DecisionEngine::new(DecideConfig::default(), &mut registry).expect("engine");
    let report = check_catalogs(&[demo_catalog()]);
    let now: Timestamp = "2026-11-28T00:12:00Z".parse().expect("timestamp");
    let mut out = Vec::new();
    for a in fixture(name) {
        let o = engine.decide_with(&a, &report, now).await;
        out.push((o.kind, o.decision));
    }
    out
}

#[tokio::test]
async fn the_filesystem_alert_is_decided_by_the_rules() {
    let decisions = decide_all("webhook-firing-single.json").await;
    assert_eq!(decisions.len(), 1);
    let (kind, d) = &decisions[0];
    assert_eq!(*kind, OutcomeKind::RulesMatched);
    assert_eq!(d.source, DecisionSource::Rules);
    assert_eq!(d.playbook.as_deref(), Some("clear_disk_space"));
    assert_eq!(d.params, Some(json!({"host": "web-3"})));
    assert_eq!(d.risk, Some(salve_api::Risk::Low));
}

#[tokio::test]
async fn each_systemd_unit_of_a_truncated_group_gets_its_own_rules_decision() {
    let decisions = decide_all("webhook-firing-truncated-group.json").await;
    assert_eq!(decisions.len(), 5);
    for (i, (kind, d)) in decisions.iter().enumerate() {
        assert_eq!(*kind, OutcomeKind::RulesMatched);
        assert_eq!(d.playbook.as_deref(), Some("restart_systemd_unit"));
        assert_eq!(
            d.params,
            Some(json!({"host": "db-1", "unit": format!("worker@{i}.service")}))
        );
    }
}

#[tokio::test]
async fn a_group_of_memory_alerts_restarts_each_service() {
    let decisions = decide_all("webhook-firing-group-of-3.json").await;
    let services: Vec<_> = decisions.iter().map(|(_, d)| d.params.clone()).collect();
    assert_eq!(
        services,
        vec![
            Some(json!({"host": "app-2", "service": "api-0"})),
            Some(json!({"host": "app-2", "service": "api-1"})),
            Some(json!({"host": "app-2", "service": "api-2"})),
        ]
    );
    let mixed = decide_all("webhook-mixed-firing-resolved.json").await;
    assert_eq!(mixed.len(), 2, "resolved alerts are not decided");
}

#[tokio::test]
async fn a_crash_looping_pod_has_no_candidate_in_the_demo_catalog() {
    let decisions = decide_all("webhook-firing-k8s-pod.json").await;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].0, OutcomeKind::NoCandidate);
    assert_eq!(
        decisions[0].1.validation,
        "NoCandidate: no valid catalog entry matches alert \"KubePodCrashLooping\""
    );
}

#[tokio::test]
async fn the_article_catalog_fills_its_host_list_from_the_alert() {
    // examples/article-catalog.yaml declares target_hosts as an array of host names.
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/article-catalog.yaml");
    let text = std::fs::read_to_string(&path).expect("article catalog");
    let catalog: salve_api::PlaybookCatalog = serde_yaml::from_str(&text).expect("catalog YAML");
    let report = check_catalogs(&[catalog]);
    assert!(
        report.catalogs[0].problems.is_empty(),
        "{:?}",
        report.catalogs[0].problems
    );
    let mut registry = Registry::default();
    let engine = DecisionEngine::new(DecideConfig::default(), &mut registry).expect("engine");
    let now: Timestamp = "2026-11-28T00:12:00Z".parse().expect("timestamp");
    let alert = &fixture("webhook-firing-single.json")[0];
    let o = engine.decide_with(alert, &report, now).await;
    assert_eq!(o.kind, OutcomeKind::RulesMatched, "{:?}", o.decision);
    assert_eq!(o.decision.playbook.as_deref(), Some("clear_disk_space"));
    assert_eq!(
        o.decision.params,
        Some(json!({"target_hosts": ["web-3"], "min_free_gb": 10}))
    );
}
