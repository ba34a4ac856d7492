//! Builds the remediation Job (and the Secret carrying its params) for one attempt.
//!
//! The shape follows `docs/job-contract.md`, the agreement between the operator and the runner
//! image; the paths and names live in [`contract`] so both sides are easy to compare.
//! Everything the LLM influenced is confined to the params Secret (validated JSON, delivered
//! as a file): the image, command, playbook path and service account come from configuration
//! and the reviewed catalog entry only.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use salve_api::{CatalogEntry, keys, names};
use serde_json::json;

/// The operator ⇄ runner image contract (see docs/job-contract.md).
pub mod contract {
    /// Container command (the image's entrypoint script).
    pub const COMMAND: &str = "salve-run";
    /// Where the params Secret is mounted; the file inside is [`EXTRAVARS_KEY`].
    pub const PARAMS_DIR: &str = "/salve/params";
    /// Key of the params Secret (JSON object of extra vars).
    pub const EXTRAVARS_KEY: &str = "extravars";
    /// Where the inventory Secret is mounted (key [`INVENTORY_KEY`]).
    pub const INVENTORY_DIR: &str = "/salve/inventory";
    /// Key of the inventory inside its Secret.
    pub const INVENTORY_KEY: &str = "hosts";
    /// Where the SSH key Secret is mounted (key [`SSH_KEY_KEY`]).
    pub const SSH_DIR: &str = "/salve/ssh";
    /// Key of the private key inside its Secret.
    pub const SSH_KEY_KEY: &str = "ssh-privatekey";
    /// Key of the pinned host keys inside the same Secret (optional; with it SSH checks host
    /// keys strictly, without it salve-run falls back to trust-on-first-use).
    pub const KNOWN_HOSTS_KEY: &str = "known_hosts";
    /// Writable scratch (ansible-runner's private data dir and artifacts).
    pub const WORK_DIR: &str = "/salve/work";
    /// Env: playbook path relative to the image's project dir.
    pub const ENV_PLAYBOOK: &str = "SALVE_PLAYBOOK";
    /// Env: "true" runs `--check --diff`.
    pub const ENV_CHECK: &str = "SALVE_CHECK_MODE";
    /// Env: the incident name (for logs).
    pub const ENV_INCIDENT: &str = "SALVE_INCIDENT";
    /// Env: the attempt number (for logs).
    pub const ENV_ATTEMPT: &str = "SALVE_ATTEMPT";
    /// UID the runner runs as.
    pub const RUN_AS_USER: i64 = 10001;
    /// Name of the runner container (its termination message carries the result).
    pub const CONTAINER: &str = "runner";

    /// What salve does after a failed run, by the runner's exit code (the table in
    /// docs/job-contract.md).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum AfterFailure {
        /// Another attempt may help (2 failed, 5 not_fixed, 6 unreachable, 70 internal_error,
        /// and any code the contract does not name, e.g. 137 OOM-killed).
        Retry,
        /// Escalate at once with this reason: running again cannot help or is unsafe.
        Escalate(&'static str),
    }

    /// The contract's retry rule for `exit_code`.
    pub fn after_failure(exit_code: i32) -> AfterFailure {
        use salve_api::conditions::reasons as r;
        match exit_code {
            3 => AfterFailure::Escalate(r::PARAMS_REJECTED),
            4 => AfterFailure::Escalate(r::PRE_CHECK_REFUSED),
            64 => AfterFailure::Escalate(r::JOB_CONTRACT_ERROR),
            143 => AfterFailure::Escalate(r::REMEDIATION_TERMINATED),
            _ => AfterFailure::Retry,
        }
    }

    /// The runner's report of one run: the container's exit code and the result JSON it
    /// wrote as its termination message (absent when the pod is gone or the runner crashed
    /// before writing it).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct RunnerReport {
        pub exit_code: i32,
        /// `status` of the result (`failed`, `refused`, …).
        pub result: Option<String>,
        /// `failedTask` of the result.
        pub failed_task: Option<String>,
        /// `message` of the result, or the raw termination message when it is not JSON.
        pub message: Option<String>,
    }

    impl RunnerReport {
        /// Reads the runner's termination message (the result JSON of the contract; any other
        /// text is kept as the message). Strings are bounded to what status can hold.
        pub fn parse(exit_code: i32, termination_message: Option<&str>) -> Self {
            let mut report = RunnerReport {
                exit_code,
                ..Default::default()
            };
            let Some(text) = termination_message.map(str::trim).filter(|t| !t.is_empty()) else {
                return report;
            };
            let field = |v: &serde_json::Value, k: &str, max: usize| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(|x| bounded(x, max))
                    .filter(|x| !x.is_empty())
            };
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) if v.is_object() => {
                    report.result = field(&v, "status", 32);
                    report.failed_task = field(&v, "failedTask", 512);
                    report.message = field(&v, "message", 1024);
                }
                _ => report.message = Some(bounded(text, 1024)),
            }
            report
        }
    }

    /// At most `max` bytes of `s` on a char boundary, control characters replaced.
    fn bounded(s: &str, max: usize) -> String {
        let clean: String = s
            .chars()
            .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
            .collect();
        if clean.len() <= max {
            return clean;
        }
        let mut end = max;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean[..end].to_owned()
    }
}

/// Operator configuration the Job builder needs.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// The runner image (ansible-core + ansible-runner + playbooks).
    pub image: String,
    /// Secret holding the Ansible inventory (key `hosts`).
    pub inventory_secret: String,
    /// Secret holding the SSH private key (key `ssh-privatekey`), if hosts are reached by SSH.
    pub ssh_secret: Option<String>,
    /// Secret whose keys become the runner's environment (credentials such as `PGPASSWORD`).
    pub env_secret: Option<String>,
    /// Extra labels on the Job's pod (tests use this to steer kwok).
    pub pod_labels: BTreeMap<String, String>,
    /// Service account when the entry names none.
    pub default_service_account: Option<String>,
}

/// What one attempt runs.
#[derive(Clone, Debug)]
pub struct JobRequest<'a> {
    /// The incident's name and namespace, uid (owner reference).
    pub incident: &'a str,
    pub namespace: &'a str,
    pub incident_uid: &'a str,
    /// 1-based attempt.
    pub attempt: u32,
    /// Run with `--check --diff`.
    pub dry_run: bool,
    /// The reviewed catalog entry.
    pub entry: &'a CatalogEntry,
    /// Params, already validated against the entry's schema.
    pub params: &'a serde_json::Value,
}

/// Failure to render a Job.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The params are not a JSON object.
    #[error("params must be a JSON object, got {0}")]
    ParamsNotObject(&'static str),
    /// Serialization failure (a bug).
    #[error("rendering the Job: {0}")]
    Render(#[from] serde_json::Error),
}

fn owner(req: &JobRequest<'_>) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", salve_api::GROUP, salve_api::VERSION),
        kind: "Incident".into(),
        name: req.incident.to_owned(),
        uid: req.incident_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn labels(req: &JobRequest<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            keys::MANAGED_BY_LABEL.to_owned(),
            keys::MANAGED_BY_VALUE.to_owned(),
        ),
        (keys::INCIDENT_LABEL.to_owned(), req.incident.to_owned()),
        (keys::ATTEMPT_LABEL.to_owned(), req.attempt.to_string()),
    ])
}

/// The Secret carrying the params of one attempt, named like its Job.
pub fn params_secret(req: &JobRequest<'_>) -> Result<Secret, BuildError> {
    if !req.params.is_object() {
        return Err(BuildError::ParamsNotObject(json_kind(req.params)));
    }
    let name = names::job_name(req.incident, req.attempt);
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": req.namespace,
            "labels": labels(req),
            "ownerReferences": [owner(req)],
        },
        "type": "Opaque",
        "stringData": { contract::EXTRAVARS_KEY: serde_json::to_string(req.params)? },
    }))?)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The batch/v1 Job of one attempt: deterministic name, owned by the incident, no retries
/// (salve counts attempts itself), deadline from the entry, hardened pod.
pub fn job(req: &JobRequest<'_>, settings: &JobSettings) -> Result<Job, BuildError> {
    let name = names::job_name(req.incident, req.attempt);
    let mut pod_labels = labels(req);
    pod_labels.extend(settings.pod_labels.clone());
    let sa = req
        .entry
        .service_account_name
        .clone()
        .or_else(|| settings.default_service_account.clone());
    let mut volumes = vec![
        json!({"name": "params", "secret": {"secretName": name, "defaultMode": 0o400,
            "items": [{"key": contract::EXTRAVARS_KEY, "path": contract::EXTRAVARS_KEY}]}}),
        json!({"name": "inventory", "secret": {"secretName": settings.inventory_secret, "defaultMode": 0o400,
            "items": [{"key": contract::INVENTORY_KEY, "path": contract::INVENTORY_KEY}]}}),
        json!({"name": "work", "emptyDir": {"sizeLimit": "256Mi"}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    let mut mounts = vec![
        json!({"name": "params", "mountPath": contract::PARAMS_DIR, "readOnly": true}),
        json!({"name": "inventory", "mountPath": contract::INVENTORY_DIR, "readOnly": true}),
        json!({"name": "work", "mountPath": contract::WORK_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    if let Some(ssh) = &settings.ssh_secret {
        // One directory from two projections of the same Secret: the key must exist (a pod
        // without it would fail at the first host), known_hosts may (optional source).
        volumes.push(json!({"name": "ssh", "projected": {"defaultMode": 0o400, "sources": [
            {"secret": {"name": ssh,
                "items": [{"key": contract::SSH_KEY_KEY, "path": contract::SSH_KEY_KEY}]}},
            {"secret": {"name": ssh, "optional": true,
                "items": [{"key": contract::KNOWN_HOSTS_KEY, "path": contract::KNOWN_HOSTS_KEY}]}},
        ]}}));
        mounts.push(json!({"name": "ssh", "mountPath": contract::SSH_DIR, "readOnly": true}));
    }
    // Credentials by reference only: the values never appear in the Job, and a missing Secret
    // keeps the pod from starting (CreateContainerConfigError) rather than running without.
    let env_from: Vec<serde_json::Value> = settings
        .env_secret
        .iter()
        .map(|name| json!({"secretRef": {"name": name}}))
        .collect();
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": req.namespace,
            "labels": labels(req),
            "annotations": {"salve.dev/playbook": req.entry.name, keys::DRY_RUN: req.dry_run.to_string()},
            "ownerReferences": [owner(req)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": req.entry.timeout_seconds,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": sa,
                    "automountServiceAccountToken": sa.is_some(),
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": contract::RUN_AS_USER,
                        "runAsGroup": contract::RUN_AS_USER,
                        "fsGroup": contract::RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": contract::CONTAINER,
                        "image": settings.image,
                        "command": [contract::COMMAND],
                        "env": [
                            {"name": contract::ENV_PLAYBOOK, "value": req.entry.playbook},
                            {"name": contract::ENV_CHECK, "value": req.dry_run.to_string()},
                            {"name": contract::ENV_INCIDENT, "value": req.incident},
                            {"name": contract::ENV_ATTEMPT, "value": req.attempt.to_string()},
                        ],
                        "envFrom": env_from,
                        "volumeMounts": mounts,
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                    "volumes": volumes,
                },
            },
        },
    });
    Ok(serde_json::from_value(job)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry() -> CatalogEntry {
        serde_json::from_value(json!({
            "name": "clear_disk_space", "description": "d", "risk": "low", "playbook": "clear-disk.yml",
            "parameters": {"type": "object"}, "match": {}, "timeoutSeconds": 300
        }))
        .unwrap()
    }

    fn request<'a>(
        e: &'a CatalogEntry,
        params: &'a serde_json::Value,
        attempt: u32,
        dry_run: bool,
    ) -> JobRequest<'a> {
        JobRequest {
            incident: "inc-a",
            namespace: "ops",
            incident_uid: "u1",
            attempt,
            dry_run,
            entry: e,
            params,
        }
    }

    fn settings() -> JobSettings {
        JobSettings {
            image: "ghcr.io/salve-dev/runner:0.1.0".into(),
            inventory_secret: "salve-inventory".into(),
            ssh_secret: Some("salve-ssh".into()),
            env_secret: Some("salve-db".into()),
            pod_labels: BTreeMap::new(),
            default_service_account: None,
        }
    }

    #[test]
    fn params_never_reach_argv_or_env() {
        let e = entry();
        let params = json!({"target_hosts": ["web-3"], "min_free_gb": 10, "evil": "$(rm -rf /)"});
        let req = request(&e, &params, 1, false);
        let j = serde_json::to_string(&job(&req, &settings()).unwrap()).unwrap();
        assert!(!j.contains("rm -rf"), "params leaked into the Job: {j}");
        assert!(!j.contains("web-3"));
        let s = params_secret(&req).unwrap();
        assert!(s.string_data.unwrap()[contract::EXTRAVARS_KEY].contains("$(rm -rf /)"));
    }

    #[test]
    fn the_job_is_hardened_owned_and_deterministic() {
        let e = entry();
        let params = json!({});
        let req = request(&e, &params, 2, true);
        let j = job(&req, &settings()).unwrap();
        assert_eq!(
            j.metadata.name.as_deref(),
            Some(names::job_name("inc-a", 2).as_str())
        );
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(300));
        let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Incident", Some(true))
        );
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        let env = c.env.as_ref().unwrap();
        assert!(
            env.iter()
                .any(|v| v.name == contract::ENV_CHECK && v.value.as_deref() == Some("true"))
        );
        let labels = j.metadata.labels.unwrap();
        assert_eq!(labels[keys::MANAGED_BY_LABEL], "salve");
        assert_eq!(labels[keys::INCIDENT_LABEL], "inc-a");
    }

    #[test]
    fn the_ssh_secret_gives_the_key_and_known_hosts_when_present() {
        let e = entry();
        let params = json!({});
        let req = request(&e, &params, 1, false);
        let j = job(&req, &settings()).unwrap();
        let pod = j.spec.unwrap().template.spec.unwrap();
        let ssh = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "ssh")
            .unwrap();
        let sources = ssh.projected.unwrap().sources.unwrap();
        let items: Vec<(String, Option<bool>, String)> = sources
            .into_iter()
            .map(|s| {
                let s = s.secret.unwrap();
                let item = s.items.unwrap().remove(0);
                (s.name, s.optional, item.key)
            })
            .collect();
        assert_eq!(
            items,
            vec![
                ("salve-ssh".into(), None, contract::SSH_KEY_KEY.into()),
                (
                    "salve-ssh".into(),
                    Some(true),
                    contract::KNOWN_HOSTS_KEY.into()
                ),
            ]
        );
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "ssh")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (contract::SSH_DIR, Some(true))
        );
        // Without an SSH Secret configured there is no ssh volume at all.
        let mut no_ssh = settings();
        no_ssh.ssh_secret = None;
        let j = job(&req, &no_ssh).unwrap();
        let vols = j.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        assert!(vols.iter().all(|v| v.name != "ssh"));
    }

    #[test]
    fn credentials_reach_the_runner_by_secret_reference_only() {
        let e = entry();
        let params = json!({});
        let req = request(&e, &params, 1, false);
        let j = job(&req, &settings()).unwrap();
        let c = j.spec.unwrap().template.spec.unwrap().containers.remove(0);
        let from = c.env_from.unwrap();
        assert_eq!(from.len(), 1);
        let secret_ref = from[0].secret_ref.as_ref().unwrap();
        assert_eq!(secret_ref.name, "salve-db");
        assert_eq!(secret_ref.optional, None, "a missing Secret stops the pod");
        assert!(c.env.unwrap().iter().all(|v| v.value_from.is_none()));
        let mut none = settings();
        none.env_secret = None;
        let c = job(&req, &none)
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .remove(0);
        assert!(c.env_from.unwrap_or_default().is_empty());
    }

    #[test]
    fn non_object_params_are_refused() {
        let e = entry();
        let params = json!(["x"]);
        let req = request(&e, &params, 1, false);
        assert!(matches!(
            params_secret(&req),
            Err(BuildError::ParamsNotObject("an array"))
        ));
    }
}
