//! The operator's Prometheus metrics (prometheus-client).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use salve_api::{Decision, DecisionSource, Incident, IncidentStatus, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    playbook: String,
    outcome: &'static str,
}

/// Incidents by current phase, counted from the controller's cache at each scrape (so the
/// gauge is right after a restart and for deleted incidents).
#[derive(Clone, Debug, Default)]
struct PhaseCollector {
    store: Arc<OnceLock<Store<Incident>>>,
}

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let mut counts: BTreeMap<&'static str, i64> =
            Phase::ALL.iter().map(|p| (p.as_str(), 0)).collect();
        for inc in store.state() {
            let phase = inc.status.as_ref().map_or(Phase::Pending, |s| s.phase);
            *counts.entry(phase.as_str()).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "incidents",
            "Incidents by current phase",
            None,
            MetricType::Gauge,
        )?;
        for (phase, n) in counts {
            ConstGauge::new(n).encode(family.encode_family(&[("phase", phase)])?)?;
        }
        Ok(())
    }
}

fn duration_buckets() -> Histogram {
    Histogram::new([
        5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 21600.0,
    ])
}

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
#[derive(Clone, Debug)]
pub struct Metrics {
    phases: PhaseCollector,
    time_to_outcome: Family<OutcomeLabels, Histogram>,
    job_outcomes: Family<JobLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    errors: Family<CategoryLabels, Counter>,
    notify_failures: Family<CategoryLabels, Counter>,
    jobs_created: Counter,
    api_writes: Family<WriteLabels, Counter>,
    stale_status: Counter,
    stale_skipped: Counter,
}

impl Metrics {
    /// Registers every metric under `salve_operator_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("salve_operator");
        r.register_collector(Box::new(self.phases.clone()));
        r.register(
            "time_to_outcome_seconds",
            "From the alert firing (startsAt) to the incident's final phase, by outcome (Resolved, Escalated, Cancelled)",
            self.time_to_outcome.clone(),
        );
        r.register(
            "job_outcomes",
            "Finished remediation Jobs by catalog entry and outcome",
            self.job_outcomes.clone(),
        );
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
        r.register(
            "stale_reconciles_skipped",
            "Reconciles that found the cached incident older than the operator's own last status write, and waited for the newer version instead of acting",
            self.stale_skipped.clone(),
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

    pub fn stale_skipped(&self) {
        self.stale_skipped.inc();
    }

    /// Lets the phase gauge count from the controller's incident cache.
    pub fn watch_incidents(&self, store: &Store<Incident>) {
        let _ = self.phases.store.set(store.clone());
    }

    /// Records what a status write changed: a finished attempt (by entry and outcome) and an
    /// incident reaching its final phase (time since the alert fired).
    pub fn status_written(
        &self,
        before: Option<&IncidentStatus>,
        after: &IncidentStatus,
        alert_started: Timestamp,
        now: Timestamp,
    ) {
        let playbook = after
            .decision
            .as_ref()
            .and_then(|d| d.playbook.clone())
            .unwrap_or_default();
        for a in &after.attempts {
            let was_finished = before
                .and_then(|b| b.attempts.iter().find(|x| x.number == a.number))
                .is_some_and(|x| x.finished_at.is_some());
            if a.finished_at.is_none() || was_finished {
                continue;
            }
            let outcome = match (a.dry_run, a.outcome) {
                (true, _) => "DryRun",
                (false, Some(salve_api::AttemptOutcome::Succeeded)) => "Succeeded",
                (false, Some(salve_api::AttemptOutcome::TimedOut)) => "TimedOut",
                (false, Some(salve_api::AttemptOutcome::StillFiring)) => "StillFiring",
                (false, Some(salve_api::AttemptOutcome::Failed) | None) => "Failed",
            };
            self.job_outcomes
                .get_or_create(&JobLabels {
                    playbook: playbook.clone(),
                    outcome,
                })
                .inc();
        }
        let was_terminal = before.is_some_and(|b| b.phase.is_terminal());
        if after.phase.is_terminal() && !was_terminal {
            let secs = now.duration_since(alert_started).as_secs_f64().max(0.0);
            self.time_to_outcome
                .get_or_create(&OutcomeLabels {
                    outcome: after.phase.as_str(),
                })
                .observe(secs);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            phases: PhaseCollector::default(),
            time_to_outcome: Family::new_with_constructor(duration_buckets),
            job_outcomes: Family::default(),
            transitions: Family::default(),
            decisions: Family::default(),
            errors: Family::default(),
            notify_failures: Family::default(),
            jobs_created: Counter::default(),
            api_writes: Family::default(),
            stale_status: Counter::default(),
            stale_skipped: Counter::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::{reflector, watcher};
    use salve_api::{Attempt, AttemptOutcome};

    fn incident(name: &str, phase: Option<Phase>) -> Incident {
        let mut inc: Incident = serde_json::from_value(serde_json::json!({
            "apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
            "metadata": {"name": name, "namespace": "ops"},
            "spec": {"fingerprint": "f", "receiver": "r", "groupKey": "{}", "externalURL": "http://am",
                     "alert": {"name": "A", "labels": {}, "annotations": {}, "startsAt": "2026-11-28T00:00:00Z"}}
        }))
        .unwrap();
        inc.status = phase.map(|phase| IncidentStatus {
            phase,
            ..Default::default()
        });
        inc
    }

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn the_phase_gauge_counts_the_cache_and_outcomes_are_recorded_once() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        // Before the controller hands over its cache, no phase gauge (not a wrong zero).
        assert!(!text(&registry).contains("salve_operator_incidents{"));

        let (store, mut writer) = reflector::store();
        for (name, phase) in [
            ("a", None),
            ("b", Some(Phase::Executing)),
            ("c", Some(Phase::Resolved)),
            ("d", Some(Phase::Resolved)),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(incident(name, phase)));
        }
        m.watch_incidents(&store);
        let t = text(&registry);
        assert!(
            t.contains("salve_operator_incidents{phase=\"Pending\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("salve_operator_incidents{phase=\"Executing\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("salve_operator_incidents{phase=\"Resolved\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("salve_operator_incidents{phase=\"Escalated\"} 0"),
            "{t}"
        );

        let started: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-11-28T00:02:00Z".parse().unwrap();
        let attempt = |outcome: Option<AttemptOutcome>| Attempt {
            number: 1,
            job: "j-a1".into(),
            started_at: Some(Time(started)),
            finished_at: outcome.map(|_| Time(now)),
            outcome,
            dry_run: false,
            message: None,
            exit_code: None,
            result: None,
            failed_task: None,
        };
        let decision = serde_json::from_value::<salve_api::Decision>(serde_json::json!({
            "playbook": "clear_disk_space", "source": "rules", "reasoning": "r",
            "validation": "valid", "decidedAt": "2026-11-28T00:00:01Z", "latencyMs": 1
        }))
        .unwrap();
        let decision = Some(decision);
        let running = IncidentStatus {
            phase: Phase::Executing,
            decision: decision.clone(),
            attempts: vec![attempt(None)],
            ..Default::default()
        };
        let verifying = IncidentStatus {
            phase: Phase::Verifying,
            attempts: vec![attempt(Some(AttemptOutcome::Succeeded))],
            ..running.clone()
        };
        let resolved = IncidentStatus {
            phase: Phase::Resolved,
            ..verifying.clone()
        };
        m.status_written(Some(&running), &verifying, started, now);
        m.status_written(Some(&verifying), &resolved, started, now);
        m.status_written(Some(&resolved), &resolved, started, now);
        let t = text(&registry);
        assert!(
            t.contains(
                "salve_operator_job_outcomes_total{playbook=\"clear_disk_space\",outcome=\"Succeeded\"} 1"
            ),
            "{t}"
        );
        assert!(
            t.contains("salve_operator_time_to_outcome_seconds_count{outcome=\"Resolved\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("salve_operator_time_to_outcome_seconds_sum{outcome=\"Resolved\"} 120.0"),
            "{t}"
        );
    }
}
