//! Telling humans: a Slack-compatible incoming webhook, a generic JSON webhook, and a
//! `SalveEscalated` alert posted back to Alertmanager so existing routes page the on-call.
//! Delivery failures are logged and counted; they never block the state machine.

use std::time::Duration;

use salve_api::Incident;
use salve_core::Notice;
use serde_json::json;
use tracing::warn;

/// Where notifications go.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    http: Option<reqwest::Client>,
    slack: Option<url::Url>,
    webhook: Option<url::Url>,
    alertmanager: Option<url::Url>,
}

/// One notification, rendered once for every channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// What happened.
    pub notice: Notice,
    /// One line for chat.
    pub text: String,
    /// The exact command to act on it, when there is one.
    pub command: Option<String>,
}

/// Renders the message for an incident transition.
pub fn render(notice: Notice, inc: &Incident) -> Message {
    let name = inc.metadata.name.as_deref().unwrap_or("?");
    let ns = inc.metadata.namespace.as_deref().unwrap_or("default");
    let st = inc.status.clone().unwrap_or_default();
    let playbook = st
        .decision
        .as_ref()
        .and_then(|d| d.playbook.clone())
        .unwrap_or_else(|| "-".into());
    let alert = &inc.spec.alert.name;
    let why = st.message.unwrap_or_default();
    let (text, command) = match notice {
        Notice::AutoRemediation => (
            format!("salve is running {playbook} for {alert} ({ns}/{name}): {why}"),
            None,
        ),
        Notice::CancelWindow => (
            format!("salve will run {playbook} for {alert} ({ns}/{name}): {why}"),
            Some(format!(
                "kubectl -n {ns} annotate incident {name} salve.dev/cancel=true salve.dev/cancelled-by=$(kubectl auth whoami -o jsonpath='{{.status.userInfo.username}}') salve.dev/reason='...'"
            )),
        ),
        Notice::ApprovalRequired => (
            format!(
                "salve needs an approval to run {playbook} (high risk) for {alert} ({ns}/{name}): {why}"
            ),
            Some(format!(
                "kubectl -n {ns} annotate incident {name} salve.dev/approve=true salve.dev/approved-by=$(kubectl auth whoami -o jsonpath='{{.status.userInfo.username}}')"
            )),
        ),
        Notice::Escalated => (
            format!("salve escalated {alert} ({ns}/{name}) to a human: {why}"),
            None,
        ),
        Notice::Resolved => (
            format!("salve resolved {alert} ({ns}/{name}) with {playbook}: {why}"),
            None,
        ),
    };
    Message {
        notice,
        text,
        command,
    }
}

impl Notifier {
    /// A notifier sending to the given channels (all optional).
    pub fn new(
        slack: Option<url::Url>,
        webhook: Option<url::Url>,
        alertmanager: Option<url::Url>,
    ) -> Self {
        let any = slack.is_some() || webhook.is_some() || alertmanager.is_some();
        let http = any.then(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_else(|_| reqwest::Client::new())
        });
        Self {
            http,
            slack,
            webhook,
            alertmanager,
        }
    }

    /// Sends to every configured channel; returns the channels that failed.
    pub async fn send(&self, msg: &Message, inc: &Incident) -> Vec<&'static str> {
        let Some(http) = &self.http else {
            return Vec::new();
        };
        let mut failed = Vec::new();
        let full = match &msg.command {
            Some(c) => format!("{}\n`{c}`", msg.text),
            None => msg.text.clone(),
        };
        if let Some(url) = &self.slack
            && post(http, url, &json!({"text": full})).await.is_err()
        {
            failed.push("slack");
        }
        if let Some(url) = &self.webhook {
            let body = json!({
                "event": format!("{:?}", msg.notice),
                "incident": inc.metadata.name,
                "namespace": inc.metadata.namespace,
                "alertname": inc.spec.alert.name,
                "fingerprint": inc.spec.fingerprint,
                "phase": inc.status.as_ref().map(|s| s.phase.as_str()),
                "text": msg.text,
                "command": msg.command,
            });
            if post(http, url, &body).await.is_err() {
                failed.push("webhook");
            }
        }
        if let (Some(am), Notice::Escalated) = (&self.alertmanager, msg.notice) {
            let mut labels = inc.spec.alert.labels.clone();
            labels.insert("alertname".into(), "SalveEscalated".into());
            labels.insert(
                "salve_incident".into(),
                inc.metadata.name.clone().unwrap_or_default(),
            );
            labels.insert("original_alertname".into(), inc.spec.alert.name.clone());
            let body = json!([{
                "labels": labels,
                "annotations": {"summary": msg.text, "description": "salve could not remediate this alert; a human must take over."},
            }]);
            match am.join("api/v2/alerts") {
                Ok(url) if post(http, &url, &body).await.is_ok() => {}
                _ => failed.push("alertmanager"),
            }
        }
        failed
    }
}

async fn post(http: &reqwest::Client, url: &url::Url, body: &serde_json::Value) -> Result<(), ()> {
    match http
        .post(url.clone())
        .json(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        Ok(_) => Ok(()),
        Err(e) => {
            // The URL may embed a token: log only the host.
            warn!(host = url.host_str().unwrap_or("?"), error = %e.without_url(), "notification failed");
            Err(())
        }
    }
}
