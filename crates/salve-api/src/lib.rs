//! salve's API: the custom resource types every component shares.
//!
//! Two kinds live in group `salve.dev`, version `v1alpha1`:
//! - [`Incident`]: one per alert occurrence. Its `spec` is written once by the webhook shim and is
//!   immutable (it is the evidence); its `status` belongs to the operator.
//! - [`PlaybookCatalog`]: the reviewed, GitOps-managed menu of remediations.
//!
//! This crate holds types, constants and pure helpers only: no Kubernetes client, no I/O, so
//! every other crate (and the CRD generator) can depend on it cheaply.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod incident;
pub mod names;

pub use catalog::{
    CatalogEntry, EntryProblem, LabelMatcher, MatchOperator, MatchSpec, PlaybookCatalog,
    PlaybookCatalogSpec, PlaybookCatalogStatus, Risk, VerifySpec,
};
pub use incident::{
    AlertSnapshot, Approval, Attempt, AttemptOutcome, Decision, DecisionSource, HistoryEntry,
    Incident, IncidentSpec, IncidentStatus, Phase,
};

/// API group of every salve resource.
pub const GROUP: &str = "salve.dev";
/// API version of every salve resource.
pub const VERSION: &str = "v1alpha1";
/// Field manager for every write the operator makes (server-side apply).
pub const FIELD_MANAGER: &str = "salve";
/// Field manager for writes the webhook shim makes (Incident creation, resolved marks).
pub const WEBHOOK_FIELD_MANAGER: &str = "salve-webhook";

/// Annotations and labels on Incidents and the objects salve creates.
pub mod keys {
    /// Set by a human (`kubectl annotate inc/NAME salve.dev/approve=true`) to let a
    /// high-risk remediation run.
    pub const APPROVE: &str = "salve.dev/approve";
    /// Who approved, as the API server authenticated them; the admission policy requires it
    /// to equal the requesting user, so it cannot be forged.
    pub const APPROVED_BY: &str = "salve.dev/approved-by";
    /// Set by a human to stop a remediation that has not started yet.
    pub const CANCEL: &str = "salve.dev/cancel";
    /// Who cancelled, enforced like [`APPROVED_BY`].
    pub const CANCELLED_BY: &str = "salve.dev/cancelled-by";
    /// Free text a human gives with an approval or a cancel.
    pub const REASON: &str = "salve.dev/reason";
    /// Set by the webhook shim (field manager `salve-webhook`) when Alertmanager reports the
    /// alert resolved; value is the alert's `endsAt` (RFC 3339). The operator only reads it.
    pub const ALERT_RESOLVED_AT: &str = "salve.dev/alert-resolved-at";
    /// Per-incident dry run requested after creation (in addition to `spec.dryRun`).
    pub const DRY_RUN: &str = "salve.dev/dry-run";
    /// Label on Jobs and Secrets: the Incident they belong to.
    pub const INCIDENT_LABEL: &str = "salve.dev/incident";
    /// Label on Jobs: the attempt number.
    pub const ATTEMPT_LABEL: &str = "salve.dev/attempt";
    /// Label on Incidents: the alert name (for `kubectl get inc -l salve.dev/alertname=...`).
    pub const ALERTNAME_LABEL: &str = "salve.dev/alertname";
    /// Label on Incidents: the alert fingerprint.
    pub const FINGERPRINT_LABEL: &str = "salve.dev/fingerprint";
    /// Standard label naming the manager of an object.
    pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY_LABEL`] on everything salve creates.
    pub const MANAGED_BY_VALUE: &str = "salve";
}

/// Condition types and reasons (metav1.Condition style, PascalCase).
pub mod conditions {
    /// Incident: a decision has been recorded in status.
    pub const DECIDED: &str = "Decided";
    /// Incident: waiting for a human (approval) or for the cancel window.
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    /// Incident: a remediation Job is running.
    pub const EXECUTING: &str = "Executing";
    /// Incident: reached a terminal phase.
    pub const DONE: &str = "Done";
    /// PlaybookCatalog: every entry is valid and usable.
    pub const CATALOG_READY: &str = "Ready";

    /// Reasons, used on conditions, history entries and Events.
    pub mod reasons {
        pub const RULES_MATCHED: &str = "RulesMatched";
        pub const LLM_SELECTED: &str = "LlmSelected";
        pub const NO_CANDIDATE: &str = "NoCandidate";
        pub const INVALID_DECISION: &str = "InvalidDecision";
        pub const LLM_ESCALATED: &str = "LlmEscalated";
        pub const LOW_RISK: &str = "LowRisk";
        pub const CANCEL_WINDOW: &str = "CancelWindow";
        pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
        pub const APPROVED: &str = "Approved";
        pub const APPROVAL_TIMEOUT: &str = "ApprovalTimeout";
        pub const CANCELLED: &str = "CancelledByUser";
        pub const SELF_RESOLVED: &str = "SelfResolved";
        pub const JOB_SUCCEEDED: &str = "JobSucceeded";
        pub const JOB_FAILED: &str = "JobFailed";
        pub const ATTEMPTS_EXHAUSTED: &str = "AttemptsExhausted";
        pub const VERIFIED: &str = "Verified";
        pub const STILL_FIRING: &str = "StillFiring";
        pub const FLAPPING: &str = "Flapping";
        pub const DRY_RUN_COMPLETE: &str = "DryRunComplete";
        pub const LLM_UNAVAILABLE: &str = "LlmUnavailable";
        pub const LLM_DISABLED: &str = "LlmDisabled";
        pub const TOKEN_BUDGET_EXCEEDED: &str = "TokenBudgetExceeded";
        pub const PROMPT_TOO_LARGE: &str = "PromptTooLarge";
        /// Runner exit 3: the playbook refused the params; nothing was touched.
        pub const PARAMS_REJECTED: &str = "ParamsRejected";
        /// Runner exit 4: a pre-check refused to act; a human must look.
        pub const PRE_CHECK_REFUSED: &str = "PreCheckRefused";
        /// Runner exit 64: the Job broke the runner contract (an operator bug).
        pub const JOB_CONTRACT_ERROR: &str = "JobContractError";
        /// Runner exit 143 or the Job's deadline: stopped midway, the target's state is unknown.
        pub const REMEDIATION_TERMINATED: &str = "RemediationTerminated";
        /// The Job of a running attempt disappeared (deleted); it is never re-created.
        pub const JOB_MISSING: &str = "JobMissing";
        /// The remediation Job could not be rendered from the decision (e.g. params too big).
        pub const JOB_INVALID: &str = "JobInvalid";
        pub const ALL_ENTRIES_VALID: &str = "AllEntriesValid";
        pub const INVALID_ENTRIES: &str = "InvalidEntries";
    }
}

/// The CustomResourceDefinitions generated from these types, in the order they are installed.
/// `salve crd` writes them to `crds/`; a test fails when the files drift.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![PlaybookCatalog::crd(), Incident::crd()]
        .into_iter()
        .map(known_formats_only)
        .collect()
}

/// Drops the `format`s the API server does not know (schemars writes `uint32`/`uint64` for
/// unsigned integers; `kubectl apply` then warns "unrecognized format" on every install). The
/// `minimum: 0` schemars writes beside them keeps the unsigned bound.
fn known_formats_only(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    const KNOWN: [&str; 8] = [
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "password",
    ];
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let unknown = map
                    .get("format")
                    .and_then(|f| f.as_str())
                    .is_some_and(|f| !KNOWN.contains(&f));
                // Only a schema's `format` keyword, not a property that happens to be named so.
                if unknown && map.contains_key("type") {
                    map.remove("format");
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// YAML of one CRD exactly as written to `crds/<name>.yaml`.
pub fn crd_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated by `salve crd` from crates/salve-api. Do not edit: run `make generate`.\n{body}"
    ))
}
