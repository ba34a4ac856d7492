//! The shim's Prometheus metrics (prometheus-client), served at `/metrics`.
//!
//! Counters answer the questions an operator asks of a webhook: how much arrives, how much
//! becomes an Incident, how much is absorbed as a duplicate, what is refused and why, and what
//! the API server costs (`salve_webhook_api_requests_total` counts every call, so "a duplicate
//! costs no API write" is checkable from outside).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label: `status`, `reason`, `outcome`, `verb`...
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub verb: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// Every metric of the shim, registered in one registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Alerts received, by alert `status` (firing|resolved).
    pub alerts_received: Family<StatusLabel, Counter>,
    /// Incidents created (201 from the API server).
    pub incidents_created: Counter,
    /// Duplicate firing alerts absorbed, by `via`: `cache` (no API call) or `conflict` (409).
    pub duplicates_absorbed: Family<OutcomeLabel, Counter>,
    /// Resolved alerts whose Incident got the resolved-at annotation.
    pub resolved_marked: Counter,
    /// Resolved alerts already marked (cache or same value on the object): no write.
    pub resolved_duplicates: Counter,
    /// Resolved alerts with no Incident (404): counted and ignored.
    pub resolved_unknown: Counter,
    /// Groups delivered with `truncatedAlerts > 0`, by `outcome`: `fetched` (from Alertmanager's
    /// API v2), `not_configured` (no Alertmanager URL: warned), `failed`.
    pub truncated_groups: Family<OutcomeLabel, Counter>,
    /// Alerts recovered from Alertmanager's API v2 that the truncated payload left out.
    pub truncated_alerts_recovered: Counter,
    /// Requests refused (4xx), by `reason` (the error category).
    pub rejects: Family<ReasonLabel, Counter>,
    /// Requests failed (5xx), by `reason` (the error category).
    pub failures: Family<ReasonLabel, Counter>,
    /// Alerts whose labels/annotations/strings were shortened to fit an Incident.
    pub alerts_truncated: Counter,
    /// Calls to the Kubernetes API, by `verb` (create|get|apply) and `result` (ok|conflict|
    /// not_found|error).
    pub api_requests: Family<ApiLabels, Counter>,
    /// `POST /alert` latency from request to answer, in seconds.
    pub request_duration: Family<CodeLabel, Histogram>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~8 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            alerts_received: Family::default(),
            incidents_created: Counter::default(),
            duplicates_absorbed: Family::default(),
            resolved_marked: Counter::default(),
            resolved_duplicates: Counter::default(),
            resolved_unknown: Counter::default(),
            truncated_groups: Family::default(),
            truncated_alerts_recovered: Counter::default(),
            rejects: Family::default(),
            failures: Family::default(),
            alerts_truncated: Counter::default(),
            api_requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            let r = r.sub_registry_with_prefix("salve_webhook");
            r.register(
                "alerts_received",
                "Alerts received, by alert status",
                m.alerts_received.clone(),
            );
            r.register(
                "incidents_created",
                "Incidents created",
                m.incidents_created.clone(),
            );
            r.register(
                "duplicates_absorbed",
                "Duplicate firing alerts absorbed, by outcome (cache: no API call; conflict: 409)",
                m.duplicates_absorbed.clone(),
            );
            r.register(
                "resolved_marked",
                "Resolved alerts whose Incident was marked resolved",
                m.resolved_marked.clone(),
            );
            r.register(
                "resolved_duplicates",
                "Resolved alerts already marked (no write)",
                m.resolved_duplicates.clone(),
            );
            r.register(
                "resolved_unknown",
                "Resolved alerts with no Incident (ignored)",
                m.resolved_unknown.clone(),
            );
            r.register(
                "truncated_groups",
                "Groups delivered with truncatedAlerts > 0, by outcome",
                m.truncated_groups.clone(),
            );
            r.register(
                "truncated_alerts_recovered",
                "Alerts left out of a truncated payload and recovered from Alertmanager's API v2",
                m.truncated_alerts_recovered.clone(),
            );
            r.register(
                "rejects",
                "Requests refused (4xx), by reason",
                m.rejects.clone(),
            );
            r.register(
                "failures",
                "Requests failed (5xx), by reason",
                m.failures.clone(),
            );
            r.register(
                "alerts_truncated",
                "Alerts shortened to fit an Incident",
                m.alerts_truncated.clone(),
            );
            r.register(
                "api_requests",
                "Kubernetes API calls, by verb and result",
                m.api_requests.clone(),
            );
            r.register(
                "request_duration_seconds",
                "POST /alert latency, by HTTP status code",
                m.request_duration.clone(),
            );
        }
        m
    }

    /// Counts one API call.
    pub fn api(&self, verb: &str, result: &str) {
        self.api_requests
            .get_or_create(&ApiLabels {
                verb: verb.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// API calls made so far with `verb` (any result).
    pub fn api_calls(&self, verb: &str) -> u64 {
        ["ok", "conflict", "not_found", "error"]
            .iter()
            .map(|r| {
                self.api_requests
                    .get_or_create(&ApiLabels {
                        verb: verb.to_owned(),
                        result: (*r).to_owned(),
                    })
                    .get()
            })
            .sum()
    }

    /// Counts one refused request.
    pub fn reject(&self, reason: &str) {
        self.rejects
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Refused requests so far for `reason`.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejects
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .get()
    }

    /// Counts one failed request.
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts `n` with an `outcome` label on `family`.
    pub fn outcome(family: &Family<OutcomeLabel, Counter>, outcome: &str) -> u64 {
        family
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .get()
    }

    /// Increments `family{outcome}`.
    pub fn inc_outcome(family: &Family<OutcomeLabel, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Alerts received so far with `status`.
    pub fn received(&self, status: &str) -> u64 {
        self.alerts_received
            .get_or_create(&StatusLabel {
                status: status.to_owned(),
            })
            .get()
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }
}
