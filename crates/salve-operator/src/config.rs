//! Operator configuration: flags with environment fallbacks, validated at start.
//! Secrets (webhook URLs that embed tokens) are read from files, never taken from argv.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// `salve operator` flags.
#[derive(Args, Clone, Debug)]
pub struct OperatorArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SALVE_NAMESPACE")]
    pub namespace: Option<String>,
    /// The runner image remediation Jobs run (ansible-core + ansible-runner + playbooks).
    #[arg(
        long,
        env = "SALVE_RUNNER_IMAGE",
        default_value = "ghcr.io/salve-dev/salve-runner:0.1.0"
    )]
    pub runner_image: String,
    /// Secret (in the incident's namespace) holding the Ansible inventory under key `hosts`.
    #[arg(
        long,
        env = "SALVE_INVENTORY_SECRET",
        default_value = "salve-inventory"
    )]
    pub inventory_secret: String,
    /// Secret holding the SSH private key under key `ssh-privatekey`.
    #[arg(long, env = "SALVE_SSH_SECRET")]
    pub ssh_secret: Option<String>,
    /// Secret whose keys become the runner's environment (`envFrom`), for credentials
    /// playbooks read from it, e.g. `PGUSER`/`PGPASSWORD` for db-failover.yml. The runner
    /// passes only `PG*`, `ANSIBLE_*` and `K8S_AUTH_*` names on to Ansible.
    #[arg(long, env = "SALVE_RUNNER_ENV_SECRET")]
    pub runner_env_secret: Option<String>,
    /// Extra label on remediation pods, `key=value` (repeatable).
    #[arg(long = "job-pod-label", env = "SALVE_JOB_POD_LABELS", value_delimiter = ',', value_parser = parse_kv)]
    pub job_pod_labels: Vec<(String, String)>,
    /// Most remediation Jobs running at once, cluster-wide; excess incidents wait.
    #[arg(long, env = "SALVE_MAX_CONCURRENT_JOBS", default_value_t = 5)]
    pub max_concurrent_jobs: u32,
    /// Incidents reconciled at once (0: no limit). In an alert storm the excess waits its
    /// turn: each reconcile in flight holds an API connection (HTTP/1.1) and its buffers, so
    /// the bound keeps the operator's memory and its load on the API server in check.
    #[arg(long, env = "SALVE_RECONCILE_CONCURRENCY", default_value_t = 64)]
    pub reconcile_concurrency: u16,
    /// Medium risk: default cancel window, in seconds.
    #[arg(long, env = "SALVE_CANCEL_WINDOW_SECONDS", default_value_t = 300)]
    pub cancel_window_seconds: u64,
    /// High risk: default approval timeout, in seconds.
    #[arg(long, env = "SALVE_APPROVAL_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub approval_timeout_seconds: u64,
    /// How long to wait for a verification answer before escalating, in seconds.
    #[arg(long, env = "SALVE_VERIFY_TIMEOUT_SECONDS", default_value_t = 600)]
    pub verify_timeout_seconds: u64,
    /// Run every remediation in check mode (`--check --diff`): nothing changes, nobody is paged.
    #[arg(long, env = "SALVE_DRY_RUN")]
    pub dry_run: bool,
    /// Escalate instead of remediating when the same alert fired this many times in the window.
    #[arg(long, env = "SALVE_FLAP_THRESHOLD", default_value_t = 3)]
    pub flap_threshold: u32,
    /// The flap window, in seconds.
    #[arg(long, env = "SALVE_FLAP_WINDOW_SECONDS", default_value_t = 3600)]
    pub flap_window_seconds: u64,
    /// Prometheus base URL for verification (re-evaluates the alert's expression).
    #[arg(long, env = "SALVE_PROMETHEUS_URL")]
    pub prometheus_url: Option<url::Url>,
    /// Alertmanager base URL for verification and for posting `SalveEscalated`.
    #[arg(long, env = "SALVE_ALERTMANAGER_URL")]
    pub alertmanager_url: Option<url::Url>,
    /// Post a `SalveEscalated` alert to Alertmanager when escalating (needs --alertmanager-url).
    #[arg(long, env = "SALVE_ESCALATE_TO_ALERTMANAGER")]
    pub escalate_to_alertmanager: bool,
    /// File holding a Slack-compatible incoming-webhook URL.
    #[arg(long, env = "SALVE_SLACK_WEBHOOK_FILE")]
    pub slack_webhook_file: Option<PathBuf>,
    /// File holding a generic JSON webhook URL.
    #[arg(long, env = "SALVE_NOTIFY_WEBHOOK_FILE")]
    pub notify_webhook_file: Option<PathBuf>,
    /// OpenAI-compatible API base URL, including `/v1` (no LLM: rules only, else escalate).
    #[arg(long, env = "SALVE_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// Model name as the LLM server knows it.
    #[arg(long, env = "SALVE_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// File holding the LLM API key (a mounted Secret).
    #[arg(long, env = "SALVE_LLM_API_KEY_FILE")]
    pub llm_api_key_file: Option<PathBuf>,
    /// Tokens the LLM may use per rolling 24 hours (unset: no limit).
    #[arg(long, env = "SALVE_LLM_DAILY_TOKEN_BUDGET")]
    pub llm_daily_token_budget: Option<u64>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SALVE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader on a Lease so that only one replica acts (`--leader-elect=false` for a
    /// single local run).
    #[arg(
        long,
        env = "SALVE_LEADER_ELECT",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub leader_elect: bool,
    /// Namespace of the election Lease (default: $POD_NAMESPACE, else --namespace).
    #[arg(long, env = "SALVE_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the election Lease.
    #[arg(
        long,
        env = "SALVE_LEADER_ELECTION_LEASE",
        default_value = "salve-operator"
    )]
    pub leader_election_lease: String,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    if k.is_empty() {
        return Err(format!("empty label key in {s:?}"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

impl OperatorArgs {
    /// The gates of the state machine.
    pub fn gates(&self) -> salve_core::Gates {
        salve_core::Gates {
            cancel_window: Duration::from_secs(self.cancel_window_seconds),
            approval_timeout: Duration::from_secs(self.approval_timeout_seconds),
            dry_run: self.dry_run,
            verify_timeout: Duration::from_secs(self.verify_timeout_seconds),
            flap_threshold: self.flap_threshold,
        }
    }

    /// What the Job builder needs.
    pub fn job_settings(&self) -> salve_core::job::JobSettings {
        salve_core::job::JobSettings {
            image: self.runner_image.clone(),
            inventory_secret: self.inventory_secret.clone(),
            ssh_secret: self.ssh_secret.clone(),
            env_secret: self.runner_env_secret.clone(),
            pod_labels: self
                .job_pod_labels
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
            default_service_account: None,
        }
    }
}

/// Where and as whom to stand for election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
}

impl OperatorArgs {
    /// The election settings, `None` with `--leader-elect=false`. Reads `POD_NAMESPACE` and
    /// `POD_NAME` (the downward API) from the environment.
    pub fn election(&self) -> Result<Option<Election>, String> {
        if !self.leader_elect {
            return Ok(None);
        }
        let namespace = election_namespace(
            self.leader_election_namespace.as_deref(),
            std::env::var("POD_NAMESPACE").ok().as_deref(),
            self.namespace.as_deref(),
        )
        .ok_or_else(|| {
            "leader election needs a namespace for its Lease: set --leader-election-namespace \
             (or POD_NAMESPACE, or --namespace), or run a single replica with --leader-elect=false"
                .to_owned()
        })?;
        if self.leader_election_lease.trim().is_empty() {
            return Err("--leader-election-lease must not be empty".into());
        }
        Ok(Some(Election {
            namespace,
            lease: self.leader_election_lease.clone(),
            identity: identity(std::env::var("POD_NAME").ok().as_deref(), &hostname()),
        }))
    }
}

/// The Lease's namespace: the flag, else the pod's namespace, else the watched namespace.
pub fn election_namespace(
    flag: Option<&str>,
    pod_namespace: Option<&str>,
    watched: Option<&str>,
) -> Option<String> {
    [flag, pod_namespace, watched]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

/// This replica's identity in the election: the pod name when running in Kubernetes, else the
/// host name with a random suffix (two local runs on one host must not share an identity).
pub fn identity(pod_name: Option<&str>, host: &str) -> String {
    match pod_name.map(str::trim).filter(|s| !s.is_empty()) {
        Some(pod) => pod.to_owned(),
        None => {
            let suffix: String = {
                use rand::RngExt;
                rand::rng()
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(8)
                    .map(|b| char::from(b).to_ascii_lowercase())
                    .collect()
            };
            format!("{host}-{suffix}")
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "salve".into())
}

/// Reads a secret URL from a file; the value is never logged.
pub fn read_secret_url(path: &std::path::Path) -> Result<url::Url, String> {
    let raw =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    url::Url::parse(raw.trim())
        .map_err(|e| format!("{} does not hold a valid URL: {e}", path.display()))
}

impl OperatorArgs {
    /// The decision engine's configuration.
    pub fn decide_config(&self) -> salve_decide::DecideConfig {
        let llm = self.llm_base_url.as_ref().map(|base| {
            let mut c = salve_decide::LlmConfig::new(base.clone(), self.llm_model.clone());
            c.api_key_file = self.llm_api_key_file.clone();
            c
        });
        salve_decide::DecideConfig {
            llm,
            daily_token_budget: self.llm_daily_token_budget,
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OperatorArgs,
    }

    fn parse(extra: &[&str]) -> OperatorArgs {
        let mut argv = vec!["salve"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn leader_election_is_on_by_default_and_can_be_turned_off() {
        assert!(parse(&[]).leader_elect);
        assert!(parse(&["--leader-elect"]).leader_elect);
        assert!(parse(&["--leader-elect=true"]).leader_elect);
        assert!(!parse(&["--leader-elect=false"]).leader_elect);
        assert!(!parse(&["--leader-elect=false", "--namespace", "x"]).leader_elect);
        assert_eq!(parse(&[]).leader_election_lease, "salve-operator");
        assert_eq!(
            parse(&["--leader-election-lease", "other"]).leader_election_lease,
            "other"
        );
        assert!(
            parse(&["--leader-elect=false"])
                .election()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_lease_namespace_is_the_flag_then_the_pod_namespace_then_the_watched_one() {
        assert_eq!(
            election_namespace(Some("a"), Some("b"), Some("c")).as_deref(),
            Some("a")
        );
        assert_eq!(
            election_namespace(None, Some("b"), Some("c")).as_deref(),
            Some("b")
        );
        assert_eq!(
            election_namespace(Some(" "), Some(""), Some("c")).as_deref(),
            Some("c")
        );
        assert_eq!(election_namespace(None, None, None), None);
    }

    #[test]
    fn without_any_namespace_election_fails_with_a_hint() {
        if std::env::var_os("POD_NAMESPACE").is_some() {
            return; // the environment answers the question
        }
        let err = parse(&[]).election().unwrap_err();
        assert!(err.contains("--leader-election-namespace"), "{err}");
        assert!(err.contains("--leader-elect=false"), "{err}");
        let ok = parse(&["--namespace", "team-a"])
            .election()
            .unwrap()
            .unwrap();
        assert_eq!(ok.namespace, "team-a");
        assert_eq!(ok.lease, "salve-operator");
    }

    #[test]
    fn identity_is_the_pod_name_else_host_plus_a_random_suffix() {
        assert_eq!(
            identity(Some("salve-7d9f-abcde"), "host"),
            "salve-7d9f-abcde"
        );
        let a = identity(None, "host");
        let b = identity(Some(""), "host");
        assert!(
            a.starts_with("host-") && a.len() == "host-".len() + 8,
            "{a}"
        );
        assert!(b.starts_with("host-"), "{b}");
        assert_ne!(a, b, "two local runs must not share an identity");
    }
}
