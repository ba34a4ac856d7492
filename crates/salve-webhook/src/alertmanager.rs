//! Alertmanager's API v2, read back when a webhook payload was truncated.
//!
//! A receiver's `max_alerts` makes Alertmanager drop alerts from the webhook
//! (`truncatedAlerts > 0`); the full list is only in its API. The shim asks
//! `GET /api/v2/alerts/groups?receiver=R&filter=k="v"...` with one matcher per group label,
//! keeps the group whose labels are exactly the payload's `groupLabels`, and takes its active
//! (not silenced, not inhibited) alerts: what the notification would have carried untruncated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::payload::{Alert, Status};

/// Why a group could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered a body that is not an alert group list: {message}")]
    Decode { url: String, message: String },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

impl FetchError {
    /// PascalCase category.
    pub fn category(&self) -> &'static str {
        match self {
            FetchError::Request { .. } => "AlertmanagerUnreachable",
            FetchError::Status { .. } => "AlertmanagerError",
            FetchError::Decode { .. } => "AlertmanagerBadResponse",
            FetchError::Client(_) => "AlertmanagerClient",
        }
    }
}

/// One group of `GET /api/v2/alerts/groups`.
#[derive(Deserialize, Debug, Clone)]
pub struct AlertGroup {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub receiver: Receiver,
    #[serde(default)]
    pub alerts: Vec<GettableAlert>,
}

/// A receiver reference.
#[derive(Deserialize, Debug, Clone)]
pub struct Receiver {
    pub name: String,
}

/// One alert as the API v2 returns it.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct GettableAlert {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    pub fingerprint: String,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    pub status: AlertStatus,
}

/// Its state.
#[derive(Deserialize, Debug, Clone)]
pub struct AlertStatus {
    /// `active`, `suppressed` or `unprocessed`.
    pub state: String,
}

impl GettableAlert {
    /// As a webhook alert: the API v2 only returns firing alerts.
    pub fn into_webhook_alert(self) -> Alert {
        Alert {
            status: Status::Firing,
            labels: self.labels,
            annotations: self.annotations,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            generator_url: self.generator_url,
            fingerprint: self.fingerprint,
        }
    }
}

/// A matcher value quoted as Alertmanager's matcher parser expects.
pub fn quote_matcher_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The URL that lists the groups of `receiver` matching `group_labels`.
pub fn groups_url(base: &Url, receiver: &str, group_labels: &BTreeMap<String, String>) -> Url {
    let mut url = base.clone();
    {
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{path}/api/v2/alerts/groups"));
    }
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        q.append_pair("receiver", &format!("^(?:{})$", regex_escape(receiver)));
        q.append_pair("active", "true");
        q.append_pair("silenced", "false");
        q.append_pair("inhibited", "false");
        for (k, v) in group_labels {
            q.append_pair("filter", &format!("{k}={}", quote_matcher_value(v)));
        }
    }
    url
}

/// `receiver=` is a regular expression in Alertmanager's API; match the name literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Selects the alerts of the group that has exactly `group_labels` for `receiver`.
pub fn select_group(
    groups: Vec<AlertGroup>,
    receiver: &str,
    group_labels: &BTreeMap<String, String>,
) -> Vec<GettableAlert> {
    groups
        .into_iter()
        .filter(|g| g.receiver.name == receiver && &g.labels == group_labels)
        .flat_map(|g| g.alerts)
        .filter(|a| a.status.state == "active")
        .collect()
}

/// A client of one Alertmanager.
#[derive(Clone, Debug)]
pub struct AlertmanagerClient {
    base: Url,
    http: reqwest::Client,
}

impl AlertmanagerClient {
    /// A client for the Alertmanager at `base`.
    pub fn new(base: Url) -> Result<AlertmanagerClient, FetchError> {
        crate::server::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(AlertmanagerClient { base, http })
    }

    /// The active alerts of the group `group_labels` of `receiver`.
    pub async fn group_alerts(
        &self,
        receiver: &str,
        group_labels: &BTreeMap<String, String>,
    ) -> Result<Vec<GettableAlert>, FetchError> {
        let url = groups_url(&self.base, receiver, group_labels);
        let shown = format!("{}{}", self.base.as_str().trim_end_matches('/'), url.path());
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|source| FetchError::Request {
                url: shown.clone(),
                source,
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: shown,
                status: status.as_u16(),
            });
        }
        let body = resp.bytes().await.map_err(|source| FetchError::Request {
            url: shown.clone(),
            source,
        })?;
        let groups: Vec<AlertGroup> =
            serde_json::from_slice(&body).map_err(|e| FetchError::Decode {
                url: shown,
                message: e.to_string(),
            })?;
        Ok(select_group(groups, receiver, group_labels))
    }
}
