//! The PlaybookCatalog resource: the reviewed menu of remediations, owned by Git.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default Job deadline when an entry sets none.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 600;
/// Default number of Job runs per incident.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 2;
/// Default wait between a successful Job and the verification.
pub const DEFAULT_STABILIZATION_SECONDS: u32 = 60;

/// A reviewed set of remediations salve may choose from. Several catalogs merge (one per team
/// is typical); entry names must be unique across all of them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "salve.dev",
    version = "v1alpha1",
    kind = "PlaybookCatalog",
    namespaced,
    status = "PlaybookCatalogStatus",
    shortname = "pbc",
    category = "salve",
    doc = "A reviewed menu of remediations (Ansible playbooks) salve may choose from, with their risk tiers, parameter schemas and the alerts they apply to.",
    printcolumn = r#"{"name":"Entries","type":"integer","jsonPath":".status.validEntries","description":"Entries usable as candidates"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"All entries valid"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PlaybookCatalogSpec {
    /// The remediations in this catalog (names unique: the API server enforces it).
    #[schemars(length(min = 1, max = 200), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub entries: Vec<CatalogEntry>,
}

/// One remediation: which playbook, with which typed params, for which alerts, at what risk.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    /// Unique name of the entry (what the decision records), e.g. `restart_service`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What the remediation does and when it is appropriate; shown to the LLM and to humans.
    #[schemars(length(min = 1, max = 1024))]
    pub description: String,
    /// Risk tier: low runs at once, medium after a cancel window, high only with an approval.
    pub risk: Risk,
    /// Path of the playbook inside the runner image's project, e.g. `restart-service.yml`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.ya?ml$")
    )]
    #[x_kube(validation = Rule::new("!self.contains('..')").message("playbook must be a path inside the runner's project, without '..'"))]
    pub playbook: String,
    /// JSON Schema (an object schema) the params must validate against. Type, bound and
    /// pattern every property: it is what stands between the LLM and the playbook.
    #[schemars(schema_with = "parameters_schema")]
    pub parameters: serde_json::Value,
    /// Which alerts make this entry a candidate.
    #[serde(rename = "match")]
    pub match_: MatchSpec,
    /// Params filled from the alert without an LLM: param name → template such as
    /// `{{ labels.instance | host }}` or `{{ labels.service }}`. When every required param has
    /// one and this is the only candidate, salve decides without the LLM (source `rules`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    pub params_from_labels: BTreeMap<String, String>,
    /// The param naming the remediation's target (a host or a deployment): used for the
    /// per-target lock, and checked against the alert unless `targetFromAlert` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub target_param: Option<String>,
    /// When true (default) the target param must relate to the alert (e.g. equal the host of
    /// the alert's `instance` label).
    #[serde(default = "default_true")]
    pub target_from_alert: bool,
    /// Job deadline (`activeDeadlineSeconds`).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 10, max = 86400))]
    pub timeout_seconds: u32,
    /// Minimum time between two runs of this entry on the same target.
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub cooldown_seconds: u32,
    /// Job runs per incident before escalating.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 5))]
    pub max_attempts: u32,
    /// Medium risk: how long humans may cancel before it runs (overrides the operator default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub cancel_window_seconds: Option<u32>,
    /// High risk: escalate when nobody approves within this time (overrides the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 604800))]
    pub approval_timeout_seconds: Option<u32>,
    /// How salve verifies the remediation.
    #[serde(default)]
    pub verify: VerifySpec,
    /// ServiceAccount the Job runs as (for playbooks that talk to the Kubernetes API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub service_account_name: Option<String>,
}

/// `parameters` is free-form JSON Schema, but the API server still checks that it is an object
/// schema: `type: object` is required, everything else is preserved as written.
fn parameters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {
                "type": "string",
                "enum": ["object"],
                "description": "Always `object`: params are a map of named, typed values."
            }
        },
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

/// Risk tier of a remediation.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Runs at once.
    Low,
    /// Runs after a cancel window unless a human cancels.
    Medium,
    /// Runs only after a human approves.
    High,
}

impl Risk {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// Which alerts select an entry. All given conditions must hold.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MatchSpec {
    /// The alert's `alertname` must be one of these (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub alertnames: Vec<String>,
    /// Label matchers, Alertmanager style; all must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub matchers: Vec<LabelMatcher>,
}

/// A matcher on one alert label.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelMatcher {
    /// The label name.
    #[schemars(length(min = 1, max = 128))]
    pub label: String,
    /// How to compare. A missing label matches as the empty string, as in Alertmanager.
    pub operator: MatchOperator,
    /// Value or (anchored) regular expression.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub value: String,
}

/// Comparison of a label matcher.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOperator {
    /// Equal.
    #[serde(rename = "=")]
    Equal,
    /// Not equal.
    #[serde(rename = "!=")]
    NotEqual,
    /// Matches the anchored regular expression.
    #[serde(rename = "=~")]
    Regex,
    /// Does not match the anchored regular expression.
    #[serde(rename = "!~")]
    NotRegex,
}

/// How a remediation is verified.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// Wait after the Job succeeds before checking the alert again.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_seconds: u32,
}

impl Default for VerifySpec {
    fn default() -> Self {
        Self {
            stabilization_seconds: DEFAULT_STABILIZATION_SECONDS,
        }
    }
}

fn default_stabilization() -> u32 {
    DEFAULT_STABILIZATION_SECONDS
}

/// What the operator found when it read the catalog.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlaybookCatalogStatus {
    /// Entries usable as candidates.
    #[serde(default)]
    pub valid_entries: u32,
    /// `Ready`: True when every entry is usable; False names the problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One entry per problem found: the entry left out of the candidates, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub invalid_entries: Vec<EntryProblem>,
    /// The generation these results are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An entry left out of the candidates, and why.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EntryProblem {
    /// The entry's name.
    #[schemars(length(max = 63))]
    pub entry: String,
    /// PascalCase reason: InvalidSchema, InvalidMatcher, InvalidTemplate, NameCollision.
    #[schemars(length(max = 64))]
    pub reason: String,
    /// What is wrong, precisely enough to fix it.
    #[schemars(length(max = 1024))]
    pub message: String,
}
