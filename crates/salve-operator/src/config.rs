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
    /// Extra label on remediation pods, `key=value` (repeatable).
    #[arg(long = "job-pod-label", env = "SALVE_JOB_POD_LABELS", value_delimiter = ',', value_parser = parse_kv)]
    pub job_pod_labels: Vec<(String, String)>,
    /// Most remediation Jobs running at once, cluster-wide; excess incidents wait.
    #[arg(long, env = "SALVE_MAX_CONCURRENT_JOBS", default_value_t = 5)]
    pub max_concurrent_jobs: u32,
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
            pod_labels: self
                .job_pod_labels
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
            default_service_account: None,
        }
    }
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
