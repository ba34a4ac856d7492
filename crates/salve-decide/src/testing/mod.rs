//! Test support, reused by the controller's tests (feature `testing`): catalog and alert
//! fixtures and, in [`server`], a scripted OpenAI-compatible Chat Completions server on
//! loopback that the real async-openai client talks to.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salve_api::{
    AlertSnapshot, CatalogEntry, LabelMatcher, MatchOperator, MatchSpec, PlaybookCatalog,
    PlaybookCatalogSpec, Risk, VerifySpec,
};
use serde_json::{Value, json};

use crate::llm::LlmConfig;

#[cfg(feature = "testing")]
pub mod server;

/// When every fixture alert started firing.
pub const STARTS_AT: &str = "2026-11-28T00:11:26.568Z";

/// An alert named `name` (also its `alertname` label) with these labels and annotations.
pub fn alert(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> AlertSnapshot {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.entry("alertname".to_owned())
        .or_insert_with(|| name.to_owned());
    AlertSnapshot {
        name: name.to_owned(),
        labels: l,
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        starts_at: Time(STARTS_AT.parse().unwrap_or_default()),
        generator_url: None,
    }
}

/// The alert of `shared/fixtures/alertmanager/webhook-firing-single.json`, as the webhook
/// shim records it.
pub fn filesystem_alert() -> AlertSnapshot {
    let mut a = alert(
        "NodeFilesystemSpaceFillingUp",
        &[
            ("device", "/dev/sda1"),
            ("fstype", "ext4"),
            ("instance", "web-3:9100"),
            ("job", "node"),
            ("mountpoint", "/"),
            ("severity", "warning"),
        ],
        &[
            (
                "description",
                "Filesystem on /dev/sda1 at web-3:9100 has only 8.2% available space left and is filling up.",
            ),
            (
                "runbook_url",
                "https://runbooks.prometheus-operator.dev/runbooks/node/nodefilesystemspacefillingup",
            ),
            (
                "summary",
                "Filesystem is predicted to run out of space within the next 24 hours.",
            ),
        ],
    );
    a.generator_url = Some(
        "http://prometheus.monitoring.svc:9090/graph?g0.expr=vector%281%29&g0.tab=1".to_owned(),
    );
    a
}

/// A catalog entry with test defaults: matches every alert, no templates, no target.
pub fn entry(name: &str, risk: Risk, parameters: Value) -> CatalogEntry {
    CatalogEntry {
        name: name.to_owned(),
        description: format!("{name} (test entry)"),
        risk,
        playbook: format!("{}.yml", name.replace('_', "-")),
        parameters,
        match_: MatchSpec::default(),
        params_from_labels: BTreeMap::new(),
        target_param: None,
        target_from_alert: true,
        timeout_seconds: 600,
        cooldown_seconds: 0,
        max_attempts: 2,
        cancel_window_seconds: None,
        approval_timeout_seconds: None,
        verify: VerifySpec::default(),
        service_account_name: None,
    }
}

/// A catalog named `name` in namespace `salve`, generation 1.
pub fn catalog(name: &str, entries: Vec<CatalogEntry>) -> PlaybookCatalog {
    let mut c = PlaybookCatalog::new(name, PlaybookCatalogSpec { entries });
    c.metadata.namespace = Some("salve".to_owned());
    c.metadata.generation = Some(1);
    c
}

const HOST: &str = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$";
const DNS_LABEL: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// The article's four remediations (and a systemd-unit variant) as a reviewed catalog (`demo`), with typed, bounded,
/// patterned params:
///
/// | entry | risk | alerts | rules path |
/// | --- | --- | --- | --- |
/// | `restart_service` | low | ServiceDown, HostOutOfMemory, PostgresPrimaryDown | host from `instance`, service from `service` |
/// | `restart_systemd_unit` | low | SystemdUnitFailed | host from `instance`, unit from `name` |
/// | `clear_disk_space` | low | NodeFilesystemSpaceFillingUp, NodeFilesystemAlmostOutOfSpace | host from `instance` |
/// | `scale_pods` | medium | KubeDeploymentReplicasMismatch, HighRequestLatency | needs the LLM (replicas) |
/// | `failover_database` | high | PostgresPrimaryDown, PostgresReplicationLagHigh | needs the LLM |
pub fn demo_catalog() -> PlaybookCatalog {
    let mut restart = entry(
        "restart_service",
        Risk::Low,
        json!({
            "type": "object",
            "properties": {
                "host": {"type": "string", "pattern": HOST, "description": "host to act on"},
                "service": {"type": "string", "pattern": "^[a-zA-Z0-9@._-]{1,64}$", "description": "systemd unit"}
            },
            "required": ["host", "service"],
            "additionalProperties": false
        }),
    );
    restart.description = "Restart a systemd service on one host.".to_owned();
    restart.match_.alertnames = names(&["ServiceDown", "HostOutOfMemory", "PostgresPrimaryDown"]);
    restart.target_param = Some("host".to_owned());
    restart.params_from_labels = templates(&[
        ("host", "{{ labels.instance | host }}"),
        ("service", "{{ labels.service }}"),
    ]);

    let mut unit = entry(
        "restart_systemd_unit",
        Risk::Low,
        json!({
            "type": "object",
            "properties": {
                "host": {"type": "string", "pattern": HOST},
                "unit": {"type": "string", "pattern": "^[a-zA-Z0-9@._-]{1,64}$"}
            },
            "required": ["host", "unit"],
            "additionalProperties": false
        }),
    );
    unit.description =
        "Restart a failed systemd unit (node_exporter's name label) on one host.".to_owned();
    unit.match_.alertnames = names(&["SystemdUnitFailed"]);
    unit.target_param = Some("host".to_owned());
    unit.params_from_labels = templates(&[
        ("host", "{{ labels.instance | host }}"),
        ("unit", "{{ labels.name }}"),
    ]);

    let mut disk = entry(
        "clear_disk_space",
        Risk::Low,
        json!({
            "type": "object",
            "properties": {
                "host": {"type": "string", "pattern": HOST},
                "min_free_gb": {"type": "integer", "minimum": 1, "maximum": 500}
            },
            "required": ["host"],
            "additionalProperties": false
        }),
    );
    disk.description =
        "Clean temp files, old journal logs and package caches to free disk space.".to_owned();
    disk.match_.alertnames = names(&[
        "NodeFilesystemSpaceFillingUp",
        "NodeFilesystemAlmostOutOfSpace",
    ]);
    disk.target_param = Some("host".to_owned());
    disk.params_from_labels = templates(&[("host", "{{ labels.instance | host }}")]);

    let mut scale = entry(
        "scale_pods",
        Risk::Medium,
        json!({
            "type": "object",
            "properties": {
                "namespace": {"type": "string", "pattern": DNS_LABEL},
                "deployment": {"type": "string", "pattern": DNS_LABEL},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 50}
            },
            "required": ["namespace", "deployment", "replicas"],
            "additionalProperties": false
        }),
    );
    scale.description = "Scale a Kubernetes Deployment to a number of replicas.".to_owned();
    scale.match_.alertnames = names(&["KubeDeploymentReplicasMismatch", "HighRequestLatency"]);
    scale.target_param = Some("deployment".to_owned());
    scale.params_from_labels = templates(&[
        ("namespace", "{{ labels.namespace }}"),
        ("deployment", "{{ labels.deployment }}"),
    ]);
    scale.service_account_name = Some("salve-scaler".to_owned());

    let mut failover = entry(
        "failover_database",
        Risk::High,
        json!({
            "type": "object",
            "properties": {"cluster_name": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"}},
            "required": ["cluster_name"],
            "additionalProperties": false
        }),
    );
    failover.description = "Promote a database replica to primary.".to_owned();
    failover.match_.alertnames = names(&["PostgresPrimaryDown", "PostgresReplicationLagHigh"]);
    failover.target_param = Some("cluster_name".to_owned());

    catalog("demo", vec![restart, unit, disk, scale, failover])
}

/// Realistic alert names the generated catalogs spread their entries over.
pub const GENERATED_ALERTNAMES: [&str; 40] = [
    "NodeFilesystemSpaceFillingUp",
    "NodeFilesystemAlmostOutOfSpace",
    "NodeFilesystemFilesFillingUp",
    "NodeMemoryHighUtilization",
    "NodeCPUHighUsage",
    "NodeNetworkReceiveErrs",
    "NodeClockSkewDetected",
    "NodeDiskIOSaturation",
    "HostOutOfMemory",
    "HostSystemdServiceCrashed",
    "ServiceDown",
    "SystemdUnitFailed",
    "HighErrorRate",
    "HighRequestLatency",
    "KubePodCrashLooping",
    "KubePodNotReady",
    "KubeDeploymentReplicasMismatch",
    "KubeStatefulSetReplicasMismatch",
    "KubeJobFailed",
    "KubeHpaMaxedOut",
    "KubePersistentVolumeFillingUp",
    "KubeContainerWaiting",
    "KubeletTooManyPods",
    "PostgresPrimaryDown",
    "PostgresReplicationLagHigh",
    "PostgresTooManyConnections",
    "MySQLReplicationStopped",
    "RedisMemoryHigh",
    "RedisRejectedConnections",
    "RabbitMQQueueBacklog",
    "KafkaConsumerLagHigh",
    "ElasticsearchHeapHigh",
    "NginxHighErrorRate",
    "HAProxyBackendDown",
    "CertificateExpiringSoon",
    "BlackboxProbeFailed",
    "EtcdHighFsyncDurations",
    "CoreDNSErrorsHigh",
    "PrometheusTargetMissing",
    "LokiIngestionRateHigh",
];

const VERBS: [&str; 8] = [
    "restart", "clean", "rotate", "scale", "drain", "reload", "flush", "resize",
];
const OBJECTS: [&str; 10] = [
    "service",
    "disk",
    "logs",
    "pods",
    "node",
    "config",
    "cache",
    "queue",
    "volume",
    "connections",
];

/// A catalog of `n` realistic entries spread over [`GENERATED_ALERTNAMES`] (entry `i` matches
/// alert name `i % 40`), each with a description, a typed two- or three-param schema and
/// templates for some params. With 200 entries every alert name has 5 candidates.
pub fn generated_catalog(n: usize) -> PlaybookCatalog {
    let entries = (0..n)
        .map(|i| {
            let verb = VERBS[(i + i / GENERATED_ALERTNAMES.len()) % VERBS.len()];
            let object = OBJECTS[(i / VERBS.len() + 3 * (i / GENERATED_ALERTNAMES.len())) % OBJECTS.len()];
            let alertname = GENERATED_ALERTNAMES[i % GENERATED_ALERTNAMES.len()];
            let risk = match i % 5 {
                0..=2 => Risk::Low,
                3 => Risk::Medium,
                _ => Risk::High,
            };
            let mut properties = serde_json::Map::new();
            properties.insert("host".into(), json!({"type": "string", "pattern": HOST}));
            properties.insert(object.into(), json!({"type": "string", "pattern": "^[a-zA-Z0-9@._-]{1,64}$"}));
            if i % 3 == 0 {
                properties.insert("timeout_minutes".into(), json!({"type": "integer", "minimum": 1, "maximum": 60}));
            }
            let mut e = entry(
                &format!("{verb}_{object}_{i:03}"),
                risk,
                json!({"type": "object", "properties": properties, "required": ["host", object], "additionalProperties": false}),
            );
            e.description = format!(
                "{} the {object} on the affected host when {alertname} fires; safe to repeat, finishes within ten minutes.",
                capitalize(verb)
            );
            e.match_.alertnames = vec![alertname.to_owned()];
            if i % 7 == 0 {
                e.match_.matchers.push(LabelMatcher {
                    label: "severity".into(),
                    operator: MatchOperator::Regex,
                    value: "warning|critical".into(),
                });
            }
            e.target_param = Some("host".to_owned());
            e.params_from_labels = templates(&[("host", "{{ labels.instance | host }}")]);
            e
        })
        .collect();
    catalog("generated", entries)
}

/// An [`LlmConfig`] for tests: the given endpoint, short timeouts, millisecond backoffs.
pub fn fast_llm_config(base_url: &str) -> LlmConfig {
    let mut c = LlmConfig::new(base_url, "scripted-model");
    c.request_timeout = Duration::from_millis(1500);
    c.deadline = Duration::from_secs(5);
    c.backoff_base = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(50);
    c.max_completion_tokens = 256;
    c
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn templates(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
