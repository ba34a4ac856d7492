//! Persisting incidents: the only module that talks to the Kubernetes API.
//!
//! - A firing alert: create the Incident (`POST`, field manager `salve-webhook`); 409
//!   AlreadyExists means another delivery won and is success. The name is then remembered, so
//!   the next delivery of the same occurrence costs no API call.
//! - A resolved alert: read the Incident's metadata; if it exists and does not already carry
//!   the same `salve.dev/alert-resolved-at`, set that annotation by server-side apply (field
//!   manager `salve-webhook`, which owns it). A missing Incident (404) is counted and ignored.
//!
//! Reading before applying keeps a resolved alert for an unknown Incident a clean 404: an apply
//! to a missing object would try to create it and fail validation instead.

use std::sync::Arc;

use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use salve_api::{Incident, WEBHOOK_FIELD_MANAGER, keys};
use serde_json::json;

use crate::cache::RecentCache;
use crate::error::ProcessError;
use crate::metrics::Metrics;

/// What happened to a firing alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// This delivery created the Incident.
    Created,
    /// The Incident already existed (409): another delivery created it.
    Conflict,
    /// Remembered as persisted: no API call made.
    Cached,
}

/// What happened to a resolved alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// The annotation was written.
    Marked,
    /// Already marked with this value (cached, or read back): nothing written.
    AlreadyMarked,
    /// No Incident for this alert (404): counted and ignored.
    Unknown,
}

/// The Incident API of one namespace, with the cache and the metrics.
#[derive(Clone)]
pub struct Store {
    api: Api<Incident>,
    recent: Arc<RecentCache>,
    metrics: Arc<Metrics>,
}

fn api_result(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.code == 409 => "conflict",
        kube::Error::Api(s) if s.code == 404 => "not_found",
        _ => "error",
    }
}

impl Store {
    /// A store writing Incidents into `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        recent: Arc<RecentCache>,
        metrics: Arc<Metrics>,
    ) -> Store {
        Store {
            api: Api::namespaced(client, namespace),
            recent,
            metrics,
        }
    }

    /// Makes sure `incident` exists (created once, never modified).
    pub async fn ensure(&self, incident: &Incident) -> Result<Persisted, ProcessError> {
        let name = incident.metadata.name.as_deref().unwrap_or_default();
        if self.recent.contains(name) {
            return Ok(Persisted::Cached);
        }
        let pp = PostParams {
            field_manager: Some(WEBHOOK_FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let outcome = match self.api.create(&pp, incident).await {
            Ok(_) => {
                self.metrics.api("create", "ok");
                Persisted::Created
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.metrics.api("create", "conflict");
                Persisted::Conflict
            }
            Err(e) => {
                self.metrics.api("create", api_result(&e));
                return Err(ProcessError::from_kube(name, e));
            }
        };
        self.recent.insert(name);
        Ok(outcome)
    }

    /// Marks the Incident `name` resolved at `ends_at` (RFC 3339, as Alertmanager sent it).
    pub async fn mark_resolved(&self, name: &str, ends_at: &str) -> Result<Resolved, ProcessError> {
        let key = format!("resolved/{name}/{ends_at}");
        if self.recent.contains(&key) {
            return Ok(Resolved::AlreadyMarked);
        }
        let meta = match self.api.get_metadata_opt(name).await {
            Ok(m) => {
                self.metrics
                    .api("get", if m.is_some() { "ok" } else { "not_found" });
                m
            }
            Err(e) => {
                self.metrics.api("get", api_result(&e));
                return Err(ProcessError::from_kube(name, e));
            }
        };
        let Some(meta) = meta else {
            return Ok(Resolved::Unknown);
        };
        let current = meta
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::ALERT_RESOLVED_AT));
        if current.map(String::as_str) == Some(ends_at) {
            self.recent.insert(&key);
            return Ok(Resolved::AlreadyMarked);
        }
        let patch = json!({
            "apiVersion": "salve.dev/v1alpha1",
            "kind": "Incident",
            "metadata": {
                "name": name,
                "annotations": { keys::ALERT_RESOLVED_AT: ends_at }
            }
        });
        // Force: the shim alone owns this annotation; a human who edited it by hand is
        // overridden by what Alertmanager says.
        let pp = PatchParams::apply(WEBHOOK_FIELD_MANAGER).force();
        match self.api.patch(name, &pp, &Patch::Apply(&patch)).await {
            Ok(_) => self.metrics.api("apply", "ok"),
            Err(e) => {
                self.metrics.api("apply", api_result(&e));
                return Err(ProcessError::from_kube(name, e));
            }
        }
        self.recent.insert(&key);
        Ok(Resolved::Marked)
    }

    /// A cheap check that Incidents can be listed in the namespace (API server reachable, CRD
    /// installed, RBAC in place).
    pub async fn probe(&self) -> Result<(), kube::Error> {
        self.api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map(|_| ())
    }
}
