//! The PlaybookCatalog status controller: runs the decision engine's catalog hygiene over all
//! catalogs and writes each catalog's result to its status, so a GitOps user sees a broken
//! entry in `kubectl get pbc` rather than in an incident.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use salve_api::conditions::{CATALOG_READY, reasons};
use salve_api::{PlaybookCatalog, PlaybookCatalogStatus};
use tracing::warn;

/// Shared state of the catalog controller.
pub struct CatalogCtx {
    pub client: Client,
    pub catalogs: Store<PlaybookCatalog>,
}

/// Failure writing a catalog's status.
#[derive(Debug, thiserror::Error)]
#[error("writing PlaybookCatalog status: {0}")]
pub struct CatalogError(#[from] kube::Error);

/// The status one catalog should have, given every catalog (collisions span catalogs).
pub fn status_for(
    pbc: &PlaybookCatalog,
    all: &[PlaybookCatalog],
    now: Timestamp,
) -> PlaybookCatalogStatus {
    let report = salve_decide::check_catalogs(all);
    let check = report
        .catalogs
        .into_iter()
        .find(|c| c.name == pbc.name_any() && c.namespace == pbc.namespace());
    let (valid, problems) = check.map_or((0, Vec::new()), |c| (c.valid.len() as u32, c.problems));
    let ready = problems.is_empty();
    let message = if ready {
        format!("all {valid} entries are valid")
    } else {
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("{} ({}): {}", p.entry, p.reason, p.message))
            .collect();
        let mut m = format!(
            "{} problem(s), affected entries are not used: {}",
            problems.len(),
            list.join("; ")
        );
        m.truncate(1024);
        m
    };
    let previous = pbc
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CATALOG_READY));
    let status = if ready { "True" } else { "False" };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    PlaybookCatalogStatus {
        valid_entries: valid,
        conditions: vec![Condition {
            type_: CATALOG_READY.into(),
            status: status.into(),
            reason: if ready {
                reasons::ALL_ENTRIES_VALID
            } else {
                reasons::INVALID_ENTRIES
            }
            .into(),
            message,
            last_transition_time,
            observed_generation: pbc.metadata.generation,
        }],
        invalid_entries: problems,
        observed_generation: pbc.metadata.generation,
    }
}

/// Reconciles one catalog's status (and, through the watch on all catalogs, its neighbours').
pub async fn reconcile(
    pbc: Arc<PlaybookCatalog>,
    ctx: Arc<CatalogCtx>,
) -> Result<Action, CatalogError> {
    // Entry names must be unique among the catalogs of one namespace (an incident only sees
    // its own namespace's catalogs).
    let all: Vec<PlaybookCatalog> = ctx
        .catalogs
        .state()
        .iter()
        .filter(|c| c.namespace() == pbc.namespace())
        .map(|c| (**c).clone())
        .collect();
    let want = status_for(&pbc, &all, Timestamp::now());
    if pbc.status.as_ref() != Some(&want) {
        let ns = pbc.namespace().unwrap_or_default();
        let api: Api<PlaybookCatalog> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": format!("{}/{}", salve_api::GROUP, salve_api::VERSION),
            "kind": "PlaybookCatalog",
            "status": want,
        });
        api.patch_status(
            &pbc.name_any(),
            &PatchParams::apply(salve_api::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    // Collisions depend on other catalogs: look again now and then.
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Back off on errors.
pub fn error_policy(
    _pbc: Arc<PlaybookCatalog>,
    err: &CatalogError,
    _ctx: Arc<CatalogCtx>,
) -> Action {
    warn!(error = %err, "catalog status failed");
    Action::requeue(Duration::from_secs(10))
}
