//! Telling humans: a Slack-compatible incoming webhook, a generic JSON webhook, and a
//! `SalveEscalated` alert posted back to Alertmanager so existing routes page the on-call.
//! Delivery failures are logged and counted; they never block the state machine: channels are
//! tried at once, each bounded by a timeout, and a failure only returns the channel's name.
//! A dry-run incident pages nobody.

use std::time::Duration;

use salve_api::{Incident, keys};
use salve_core::Notice;
use serde_json::json;
use tracing::warn;

/// How long one delivery may take, connecting included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `SalveEscalated` stays active. salve posts it once; without an explicit `endsAt`
/// Alertmanager would resolve it after its `resolve_timeout` (5 minutes by default) and tell
/// the on-call it was resolved while nobody had taken over. Silence it once handled.
pub const ESCALATION_HOLD: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Where notifications go. The Slack and webhook URLs embed tokens: `Debug` shows only hosts.
#[derive(Clone, Default)]
pub struct Notifier {
    http: Option<reqwest::Client>,
    slack: Option<url::Url>,
    webhook: Option<url::Url>,
    alertmanager: Option<url::Url>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host =
            |u: &Option<url::Url>| u.as_ref().map(|u| u.host_str().unwrap_or("?").to_owned());
        f.debug_struct("Notifier")
            .field("slack", &host(&self.slack))
            .field("webhook", &host(&self.webhook))
            .field("alertmanager", &host(&self.alertmanager))
            .finish_non_exhaustive()
    }
}

/// True when `inc` is a dry run (`spec.dryRun` or the `salve.dev/dry-run` annotation): its
/// result is recorded on the incident and in Events, and nobody is paged about it.
pub fn is_dry_run(inc: &Incident) -> bool {
    inc.spec.dry_run
        || inc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::DRY_RUN))
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
}

/// Escapes the three characters Slack's `mrkdwn` treats as control sequences, so alert text
/// (untrusted data) cannot ping `<!channel>` or forge links.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
                "kubectl -n {ns} annotate --overwrite incident {name} salve.dev/cancel=true salve.dev/cancelled-by=$(kubectl auth whoami -o jsonpath='{{.status.userInfo.username}}') salve.dev/reason='...'"
            )),
        ),
        Notice::ApprovalRequired => (
            format!(
                "salve needs an approval to run {playbook} (high risk) for {alert} ({ns}/{name}): {why}"
            ),
            Some(format!(
                "kubectl -n {ns} annotate --overwrite incident {name} salve.dev/approve=true salve.dev/approved-by=$(kubectl auth whoami -o jsonpath='{{.status.userInfo.username}}')"
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
                .timeout(DELIVERY_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
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

    /// Sends to every configured channel at once; returns the channels that failed. A dry-run
    /// incident is sent nowhere.
    pub async fn send(&self, msg: &Message, inc: &Incident) -> Vec<&'static str> {
        let Some(http) = &self.http else {
            return Vec::new();
        };
        if is_dry_run(inc) {
            return Vec::new();
        }
        let slack = async {
            let url = self.slack.as_ref()?;
            let full = match &msg.command {
                Some(c) => format!("{}\n`{c}`", msg.text),
                None => msg.text.clone(),
            };
            let body = json!({"text": slack_escape(&full)});
            post(http, url, &body).await.err().map(|()| "slack")
        };
        let webhook = async {
            let url = self.webhook.as_ref()?;
            let st = inc.status.as_ref();
            let body = json!({
                "event": format!("{:?}", msg.notice),
                "incident": inc.metadata.name,
                "namespace": inc.metadata.namespace,
                "alertname": inc.spec.alert.name,
                "fingerprint": inc.spec.fingerprint,
                "phase": st.map(|s| s.phase.as_str()),
                "reason": st.and_then(|s| s.reason.as_deref()),
                "message": st.and_then(|s| s.message.as_deref()),
                "playbook": st.and_then(|s| s.decision.as_ref()).and_then(|d| d.playbook.as_deref()),
                "attempts": st.map_or(0, |s| s.attempts.len()),
                "text": msg.text,
                "command": msg.command,
            });
            post(http, url, &body).await.err().map(|()| "webhook")
        };
        let alertmanager = async {
            let am = self.alertmanager.as_ref()?;
            if msg.notice != Notice::Escalated {
                return None;
            }
            let mut labels = inc.spec.alert.labels.clone();
            labels.insert("alertname".into(), "SalveEscalated".into());
            labels.insert(
                "salve_incident".into(),
                inc.metadata.name.clone().unwrap_or_default(),
            );
            labels.insert("original_alertname".into(), inc.spec.alert.name.clone());
            let now = jiff::Timestamp::now();
            let ends = now.checked_add(ESCALATION_HOLD).unwrap_or(now);
            let body = json!([{
                "labels": labels,
                "annotations": {"summary": msg.text, "description": "salve could not remediate this alert; a human must take over."},
                "startsAt": now.to_string(),
                "endsAt": ends.to_string(),
            }]);
            match crate::verify::endpoint(am, "api/v2/alerts") {
                Ok(url) => post(http, &url, &body).await.err().map(|()| "alertmanager"),
                Err(e) => {
                    warn!(error = %e, "Alertmanager URL unusable");
                    Some("alertmanager")
                }
            }
        };
        let (a, b, c) = futures::join!(slack, webhook, alertmanager);
        [a, b, c].into_iter().flatten().collect()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// reqwest is built without a bundled crypto provider; in the operator, building the kube
    /// client installs ring as the process default before any notifier exists. Do the same.
    fn tls() {
        let cfg = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let _ = kube::Client::try_from(cfg);
    }

    fn incident(dry_spec: bool, annotation: Option<&str>) -> Incident {
        let mut inc: Incident = serde_json::from_value(json!({
            "apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
            "metadata": {"name": "disk-0914bba24938a788-1", "namespace": "ops"},
            "spec": {"fingerprint": "0914bba24938a788", "dryRun": dry_spec,
                     "alert": {"name": "Disk", "startsAt": "2026-11-28T00:11:26Z"}}
        }))
        .unwrap();
        if let Some(v) = annotation {
            inc.metadata.annotations = Some([(keys::DRY_RUN.to_owned(), v.to_owned())].into());
        }
        inc
    }

    #[test]
    fn dry_runs_are_recognised_from_spec_and_annotation() {
        assert!(!is_dry_run(&incident(false, None)));
        assert!(is_dry_run(&incident(true, None)));
        assert!(is_dry_run(&incident(false, Some("true"))));
        assert!(is_dry_run(&incident(false, Some(" Yes "))));
        assert!(!is_dry_run(&incident(false, Some("false"))));
    }

    #[tokio::test]
    async fn a_dry_run_is_sent_nowhere() {
        tls();
        // Unroutable channels: any attempt to send would fail and be reported.
        let dead = url::Url::parse("http://127.0.0.1:1/hook").unwrap();
        let n = Notifier::new(Some(dead.clone()), Some(dead.clone()), Some(dead));
        let inc = incident(true, None);
        let msg = render(Notice::Escalated, &inc);
        assert!(n.send(&msg, &inc).await.is_empty());
    }

    #[test]
    fn slack_control_characters_are_escaped() {
        assert_eq!(
            slack_escape("<!channel> a & b <http://x|y>"),
            "&lt;!channel&gt; a &amp; b &lt;http://x|y&gt;"
        );
    }

    #[tokio::test]
    async fn debug_shows_hosts_not_tokens() {
        tls();
        let n = Notifier::new(
            Some(url::Url::parse("https://hooks.slack.com/services/T0/B0/sEcReT").unwrap()),
            Some(url::Url::parse("https://hook.example/token/sEcReT2").unwrap()),
            None,
        );
        let d = format!("{n:?}");
        assert!(d.contains("hooks.slack.com"), "{d}");
        assert!(!d.contains("sEcReT"), "{d}");
    }

    #[test]
    fn the_cancel_command_names_the_canceller_as_the_policy_requires() {
        let inc = incident(false, None);
        let m = render(Notice::CancelWindow, &inc);
        assert_eq!(
            m.command.as_deref(),
            Some(
                "kubectl -n ops annotate --overwrite incident disk-0914bba24938a788-1 salve.dev/cancel=true salve.dev/cancelled-by=$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}') salve.dev/reason='...'"
            )
        );
    }
}
