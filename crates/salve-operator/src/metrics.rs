//! The operator's Prometheus metrics (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use salve_api::{Decision, DecisionSource, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    resource: &'static str,
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

/// Counters the controller updates.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    transitions: Family<TransitionLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    errors: Family<CategoryLabels, Counter>,
    notify_failures: Family<CategoryLabels, Counter>,
    jobs_created: Counter,
    api_writes: Family<WriteLabels, Counter>,
    stale_status: Counter,
}

impl Metrics {
    /// Registers every metric under `salve_operator_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("salve_operator");
        r.register(
            "transitions",
            "Incident phase transitions",
            self.transitions.clone(),
        );
        r.register(
            "decisions",
            "Decisions recorded, by source and outcome",
            self.decisions.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile failures by category",
            self.errors.clone(),
        );
        r.register(
            "notification_failures",
            "Notifications that could not be delivered, by channel",
            self.notify_failures.clone(),
        );
        r.register(
            "jobs_created",
            "Remediation Jobs created",
            self.jobs_created.clone(),
        );
        r.register(
            "api_writes",
            "Write requests the Incident controller sent to the API server (including 409s), by resource and verb",
            self.api_writes.clone(),
        );
        r.register(
            "stale_status_writes",
            "Status writes refused (409) because the incident changed after it was read; reconciled again",
            self.stale_status.clone(),
        );
    }

    pub fn transition(&self, from: Phase, to: Phase) {
        self.transitions
            .get_or_create(&TransitionLabels {
                from: from.as_str().into(),
                to: to.as_str().into(),
            })
            .inc();
    }

    pub fn decision(&self, d: &Decision) {
        let source = match d.source {
            DecisionSource::Rules => "rules",
            DecisionSource::Llm => "llm",
        };
        let outcome = if d.playbook.is_some() {
            "playbook"
        } else {
            "escalate"
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn reconcile_error(&self, category: &str) {
        self.errors
            .get_or_create(&CategoryLabels {
                category: category.into(),
            })
            .inc();
    }

    pub fn notification_failed(&self, channel: &str) {
        self.notify_failures
            .get_or_create(&CategoryLabels {
                category: channel.into(),
            })
            .inc();
    }

    pub fn job_created(&self) {
        self.jobs_created.inc();
    }

    /// One write request to the API server (`resource` e.g. `incidents/status`, `jobs`).
    pub fn api_write(&self, resource: &'static str, verb: &'static str) {
        self.api_writes
            .get_or_create(&WriteLabels { resource, verb })
            .inc();
    }

    pub fn stale_status(&self) {
        self.stale_status.inc();
    }
}
