//! What the operator's caches keep of each object.
//!
//! The reflector stores hold every Incident and every salve Job for as long as they exist, so
//! their size is the operator's memory. These functions run on each watch event before the
//! object reaches a store, and drop what no reader of the cache uses:
//!
//! - every object: `managedFields` (the server-side-apply bookkeeping of two field managers,
//!   often larger than the object) and kubectl's `last-applied-configuration` copy;
//! - a Job: its spec (the pod template). The controller reads a Job's labels, owner and status
//!   only; it renders the spec itself and never compares it;
//! - an Incident in a final phase: it is never reconciled again (reconcile returns at once for
//!   a terminal phase), so only what *other* incidents consult remains — the fingerprint and
//!   creation time (flap guard), the phase (the phase gauge, the target lock), and the
//!   decision's entry, params and attempt times (target lock and cooldown). Alert text,
//!   history, conditions, reasoning and raw answers go; they stay on the API server, which is
//!   where `kubectl` reads them.
//!
//! A reconcile of an incident that is not final always sees the object as the API server
//! sent it (apart from `managedFields`), and status is only ever written from such an object.

use k8s_openapi::api::batch::v1::Job;
use kube::Resource;
use salve_api::Incident;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn trim_meta(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// Trims an Incident for the controller's cache (see the module docs).
pub fn trim_incident(inc: &mut Incident) {
    trim_meta(inc.meta_mut());
    let Some(status) = inc.status.as_mut() else {
        return;
    };
    if !status.phase.is_terminal() {
        return;
    }
    inc.spec.alert.annotations.clear();
    inc.spec.alert.labels.clear();
    inc.spec.alert.generator_url = None;
    inc.spec.group_key.clear();
    inc.spec.external_url.clear();
    status.message = None;
    status.conditions.clear();
    status.history.clear();
    status.approval = None;
    for a in &mut status.attempts {
        a.message = None;
        a.result = None;
        a.failed_task = None;
    }
    if let Some(d) = status.decision.as_mut() {
        d.reasoning.clear();
        d.raw_answer = None;
        d.validation.clear();
        d.prompt_hash = None;
        d.endpoint = None;
        d.model = None;
    }
}

/// Trims a Job for the controller's cache (see the module docs).
pub fn trim_job(job: &mut Job) {
    trim_meta(job.meta_mut());
    job.spec = None;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use salve_api::Phase;

    fn incident(phase: Phase) -> Incident {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
            "metadata": {
                "name": "disk-full-1", "namespace": "ops", "uid": "u1", "resourceVersion": "7",
                "creationTimestamp": "2026-11-28T00:00:00Z",
                "annotations": {LAST_APPLIED: "{\"big\":true}", "salve.dev/reason": "looking"},
                "managedFields": [{"manager": "salve", "operation": "Apply",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
            },
            "spec": {"fingerprint": "f1", "receiver": "r", "groupKey": "{}:{alertname=\"A\"}",
                     "externalURL": "http://am", "dryRun": false,
                     "alert": {"name": "A", "labels": {"instance": "web-1"},
                               "annotations": {"summary": "disk full"},
                               "startsAt": "2026-11-28T00:00:00Z",
                               "generatorURL": "http://prom/graph?g0.expr=up"}},
            "status": {
                "phase": phase.as_str(), "reason": "Verified", "message": "cleared",
                "decision": {"playbook": "clear_disk_space", "catalog": "ops",
                             "params": {"target_host": "web-1"}, "reasoning": "rules",
                             "source": "rules", "validation": "valid", "latencyMs": 1,
                             "decidedAt": "2026-11-28T00:00:01Z"},
                "attempts": [{"number": 1, "job": "disk-full-1-a1", "dryRun": false,
                              "startedAt": "2026-11-28T00:00:02Z",
                              "finishedAt": "2026-11-28T00:01:00Z",
                              "outcome": "Succeeded", "message": "ok", "result": "changed=1"}],
                "history": [{"at": "2026-11-28T00:00:01Z", "from": "Pending", "to": "Decided",
                             "reason": "RulesMatched", "message": "rules chose clear_disk_space"}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn every_incident_loses_managed_fields_and_the_last_applied_copy_only() {
        let before = incident(Phase::Executing);
        let mut inc = before.clone();
        trim_incident(&mut inc);
        assert!(inc.metadata.managed_fields.is_none());
        let annotations = inc.metadata.annotations.clone().unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["salve.dev/reason"], "looking");
        // An incident that is still being worked on keeps everything reconcile reads.
        assert_eq!(inc.spec, before.spec);
        assert_eq!(inc.status, before.status);
    }

    #[test]
    fn a_final_incident_keeps_what_other_incidents_consult() {
        let mut inc = incident(Phase::Resolved);
        trim_incident(&mut inc);
        assert_eq!(inc.spec.fingerprint, "f1");
        assert!(inc.metadata.creation_timestamp.is_some());
        assert_eq!(inc.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(inc.metadata.resource_version.as_deref(), Some("7"));
        let st = inc.status.as_ref().unwrap();
        assert_eq!(st.phase, Phase::Resolved);
        let d = st.decision.as_ref().unwrap();
        assert_eq!(d.playbook.as_deref(), Some("clear_disk_space"));
        assert_eq!(d.catalog.as_deref(), Some("ops"));
        assert_eq!(d.params, Some(serde_json::json!({"target_host": "web-1"})));
        assert!(st.attempts[0].finished_at.is_some());
        // … and nothing else of size.
        assert!(inc.spec.alert.annotations.is_empty() && inc.spec.alert.labels.is_empty());
        assert!(inc.spec.alert.generator_url.is_none());
        assert!(st.history.is_empty() && st.conditions.is_empty() && st.message.is_none());
        assert!(d.reasoning.is_empty() && st.attempts[0].result.is_none());
    }

    #[test]
    fn a_job_keeps_its_labels_owner_and_status() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "disk-full-1-a1", "namespace": "ops",
                         "labels": {"salve.dev/incident": "disk-full-1"},
                         "ownerReferences": [{"apiVersion": "salve.dev/v1alpha1", "kind": "Incident",
                                              "name": "disk-full-1", "uid": "u1", "controller": true}],
                         "managedFields": [{"manager": "kube-controller-manager"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "runner", "image": "r"}]}}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap();
        trim_job(&mut job);
        assert!(job.spec.is_none() && job.metadata.managed_fields.is_none());
        assert_eq!(
            job.metadata.labels.unwrap()["salve.dev/incident"],
            "disk-full-1"
        );
        assert_eq!(
            job.metadata.owner_references.unwrap()[0].name,
            "disk-full-1"
        );
        assert_eq!(job.status.unwrap().conditions.unwrap()[0].type_, "Complete");
    }
}
