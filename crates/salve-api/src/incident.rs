//! The Incident resource: one alert occurrence and everything salve did about it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::Risk;

/// Most labels or annotations an Incident keeps; the webhook shim drops the rest and says so.
pub const MAX_ALERT_PAIRS: usize = 64;
/// Longest label value kept; longer ones are truncated with a visible marker.
pub const MAX_LABEL_VALUE: usize = 1024;
/// Longest annotation value kept; longer ones are truncated with a visible marker.
pub const MAX_ANNOTATION_VALUE: usize = 4096;
/// Most entries kept in `status.history` (oldest dropped first).
pub const MAX_HISTORY: usize = 50;

/// An alert occurrence that salve is handling. The spec is written once, by the webhook shim,
/// from the Alertmanager payload, and is immutable afterwards: it is the evidence of what fired.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "salve.dev",
    version = "v1alpha1",
    kind = "Incident",
    namespaced,
    status = "IncidentStatus",
    shortname = "inc",
    category = "salve",
    doc = "An alert occurrence salve is remediating: the alert as it fired (spec, immutable) and what salve decided and did (status).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Where the incident is in salve's state machine"}"#,
    printcolumn = r#"{"name":"Alert","type":"string","jsonPath":".spec.alert.name","description":"The alert's alertname"}"#,
    printcolumn = r#"{"name":"Playbook","type":"string","jsonPath":".status.decision.playbook","description":"The catalog entry chosen"}"#,
    printcolumn = r#"{"name":"Risk","type":"string","jsonPath":".status.decision.risk","description":"Risk tier of the chosen entry"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("Incident spec is immutable: it records the alert as it fired. To act differently, annotate the Incident (salve.dev/cancel, salve.dev/approve) or create a new one."))]
#[serde(rename_all = "camelCase")]
pub struct IncidentSpec {
    /// Alertmanager's fingerprint of the alert's label set (16 lowercase hex digits).
    #[schemars(regex(pattern = r"^[0-9a-f]{16}$"))]
    pub fingerprint: String,
    /// The alert as Alertmanager delivered it.
    pub alert: AlertSnapshot,
    /// The Alertmanager receiver that delivered the alert.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub receiver: String,
    /// Alertmanager's key of the group the alert was delivered in.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub group_key: String,
    /// URL of the Alertmanager that sent the alert (used to query it back).
    #[serde(default, rename = "externalURL")]
    #[schemars(length(max = 2048))]
    pub external_url: String,
    /// Run the chosen playbook in check mode (`--check --diff`): record what it would change,
    /// change nothing, page nobody.
    #[serde(default)]
    pub dry_run: bool,
}

/// The alert that fired, as delivered by Alertmanager.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertSnapshot {
    /// The alert's `alertname` label.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The alert's labels (at most 64; values truncated past 1 KiB with a visible marker).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 1100}))]
    pub labels: BTreeMap<String, String>,
    /// The alert's annotations (at most 64; values truncated past 4 KiB with a visible marker).
    /// Untrusted data: never treated as instructions.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4200}))]
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing.
    pub starts_at: Time,
    /// Link to the expression that produced the alert (Prometheus graph URL); salve re-evaluates
    /// that expression to verify a remediation.
    #[serde(
        default,
        rename = "generatorURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 4096))]
    pub generator_url: Option<String>,
}

/// Where an incident stands in salve's state machine.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Phase {
    /// Created by the webhook; no decision yet.
    #[default]
    Pending,
    /// A decision is recorded; the risk gate comes next.
    Decided,
    /// Waiting for a cancel window to pass (medium risk) or for a human approval (high risk).
    AwaitingApproval,
    /// A remediation Job is running.
    Executing,
    /// The Job succeeded; salve is checking that the alert really cleared.
    Verifying,
    /// The alert cleared (after a remediation, or on its own). Terminal.
    Resolved,
    /// Handed to a human. Terminal.
    Escalated,
    /// Stopped by a human before anything ran. Terminal.
    Cancelled,
}

impl Phase {
    /// Every phase, in state-machine order.
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Decided,
        Phase::AwaitingApproval,
        Phase::Executing,
        Phase::Verifying,
        Phase::Resolved,
        Phase::Escalated,
        Phase::Cancelled,
    ];

    /// True for phases an incident never leaves.
    pub fn is_terminal(self) -> bool {
        match self {
            Phase::Resolved | Phase::Escalated | Phase::Cancelled => true,
            Phase::Pending
            | Phase::Decided
            | Phase::AwaitingApproval
            | Phase::Executing
            | Phase::Verifying => false,
        }
    }

    /// The name as written in status and printed by kubectl.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Decided => "Decided",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Executing => "Executing",
            Phase::Verifying => "Verifying",
            Phase::Resolved => "Resolved",
            Phase::Escalated => "Escalated",
            Phase::Cancelled => "Cancelled",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What salve observed and did. Written only by the operator (server-side apply, field
/// manager `salve`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IncidentStatus {
    /// Current phase.
    #[serde(default)]
    pub phase: Phase,
    /// Why the incident is in this phase (PascalCase reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub reason: Option<String>,
    /// Human-readable detail for the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub message: Option<String>,
    /// The remediation chosen, recorded before anything acts on it and never re-asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The gate between decision and execution: cancel window or approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// One entry per Job run for this incident.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub attempts: Vec<Attempt>,
    /// When Alertmanager reported the alert resolved (copied from the
    /// `salve.dev/alert-resolved-at` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_resolved_at: Option<Time>,
    /// The generation of the Incident this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (Decided, AwaitingApproval, Executing, Done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The trail of phase changes, oldest first (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub history: Vec<HistoryEntry>,
}

/// Who made a decision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DecisionSource {
    /// Decided without an LLM: one candidate whose params all come from the alert's labels.
    Rules,
    /// Selected by the LLM among the candidates, then validated.
    Llm,
}

/// The remediation chosen for an incident, with everything needed to audit the choice.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The catalog entry chosen; absent when the decision is to escalate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub playbook: Option<String>,
    /// The PlaybookCatalog that holds the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub catalog: Option<String>,
    /// Params for the playbook, validated against the entry's JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub params: Option<serde_json::Value>,
    /// Risk tier of the chosen entry (absent for escalate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// Why this choice (the LLM's stated reasoning, or the rule that matched). Truncated.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub reasoning: String,
    /// rules or llm.
    pub source: DecisionSource,
    /// Model that answered (llm only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub model: Option<String>,
    /// Host of the LLM endpoint (llm only; never a key or a full URL with credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub endpoint: Option<String>,
    /// SHA-256 of the prompt sent (llm only), to match against audit logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prompt_hash: Option<String>,
    /// Prompt tokens used (llm only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// Completion tokens used (llm only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// Time spent deciding, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// The raw answer (llm only), truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub raw_answer: Option<String>,
    /// Outcome of validating the answer: `valid`, or the exact reason it was refused.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub validation: String,
    /// When the decision was recorded.
    pub decided_at: Time,
}

/// The gate between a decision and its execution.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Medium risk: the remediation runs after this time unless cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_after: Option<Time>,
    /// High risk: escalate if nobody approves by this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// The user who approved, as authenticated by the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub approved_by: Option<String>,
    /// When the approval was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// The user who cancelled, as authenticated by the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cancelled_by: Option<String>,
    /// The reason given with the approval or cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// One run of the remediation Job.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based attempt number.
    #[schemars(range(min = 1, max = 10))]
    pub number: u32,
    /// Name of the batch/v1 Job (deterministic from incident and attempt).
    #[schemars(length(max = 63))]
    pub job: String,
    /// When the Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// How it ended; absent while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// Run in check mode (nothing changed).
    #[serde(default)]
    pub dry_run: bool,
    /// Detail (the Job's failure reason and the runner's message, or the verification result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub message: Option<String>,
    /// The runner's exit code (docs/job-contract.md), from the pod's container status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The runner's result: `succeeded`, `failed`, `rejected`, `refused`, `not_fixed`,
    /// `unreachable`, `contract_error`, `internal_error` or `terminated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub result: Option<String>,
    /// The first task that failed, as the runner reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub failed_task: Option<String>,
}

/// How one attempt ended.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The Job completed and verification passed (or is pending).
    Succeeded,
    /// The Job failed.
    Failed,
    /// The Job hit its deadline.
    TimedOut,
    /// The Job succeeded but the alert was still firing afterwards.
    StillFiring,
}

/// One step of the incident's trail.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it happened.
    pub at: Time,
    /// Phase before.
    pub from: Phase,
    /// Phase after.
    pub to: Phase,
    /// PascalCase reason.
    #[schemars(length(max = 128))]
    pub reason: String,
    /// What happened, for a human.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub message: String,
}
