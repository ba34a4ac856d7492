//! salve's operator: the Incident controller and the PlaybookCatalog status controller.
#![forbid(unsafe_code)]

pub mod cache;
pub mod catalog;
pub mod config;
pub mod controller;
pub mod lease;
pub mod metrics;
pub mod notify;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use salve_api::{AlertSnapshot, Decision, Incident, PlaybookCatalog};
use tracing::{error, info};

pub use config::OperatorArgs;
pub use controller::{Ctx, Decider};

/// The decision engine as the controller's [`Decider`].
pub struct EngineDecider(pub salve_decide::DecisionEngine);

impl Decider for EngineDecider {
    fn decide<'a>(
        &'a self,
        alert: &'a AlertSnapshot,
        catalogs: &'a [PlaybookCatalog],
        now: Timestamp,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let report = self.0.report_for(catalogs);
            self.0.decide_with(alert, &report, now).await.decision
        })
    }
}

/// Start-up failures, each with a hint.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("connecting to Kubernetes: {0}")]
    Client(#[from] kube::Error),
    #[error("CRD {0} is not installed: apply crds/ (or install the Helm chart) first")]
    MissingCrd(&'static str),
    #[error("decision engine configuration: {0}")]
    Decide(#[from] salve_decide::ConfigError),
    #[error("notification settings: {0}")]
    Notify(String),
    #[error("serving metrics: {0}")]
    Serve(#[from] std::io::Error),
    #[error("leader election: {0}")]
    Election(String),
    #[error(
        "lost leadership ({0}): stopped acting; exiting so that Kubernetes restarts this replica as a standby"
    )]
    LostLeadership(lease::Lost),
}

/// Aborts a spawned task when dropped, so that an aborted `run_with` leaves nothing running.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn require_crds(client: &Client) -> Result<(), StartError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["incidents.salve.dev", "playbookcatalogs.salve.dev"] {
        if api.get_opt(name).await?.is_none() {
            return Err(StartError::MissingCrd(name));
        }
    }
    Ok(())
}

/// Runs the operator until SIGTERM/SIGINT, with the given decider (tests inject the engine
/// with a scripted LLM; production uses the configured engine).
///
/// With leader election (the default) the replica serves /healthz, /readyz and /metrics at
/// once but runs the controllers only while it holds the Lease. On SIGTERM the leader stops
/// its controllers and releases the Lease, so a standby takes over at once. A leader that
/// cannot renew in time stops its controllers and returns [`StartError::LostLeadership`]
/// (the `salve` binary then exits non-zero and Kubernetes restarts it as a standby).
pub async fn run_with(
    args: OperatorArgs,
    client: Client,
    decider: Arc<dyn Decider>,
    mut registry: Registry,
) -> Result<(), StartError> {
    require_crds(&client).await?;
    let election = args.election().map_err(StartError::Election)?;
    let timings = lease::Timings::default();
    timings.validate().map_err(StartError::Election)?;
    let read = |p: &Option<std::path::PathBuf>| -> Result<Option<url::Url>, StartError> {
        p.as_deref()
            .map(config::read_secret_url)
            .transpose()
            .map_err(StartError::Notify)
    };
    let notifier = notify::Notifier::new(
        read(&args.slack_webhook_file)?,
        read(&args.notify_webhook_file)?,
        args.alertmanager_url
            .clone()
            .filter(|_| args.escalate_to_alertmanager),
    );
    let (incidents, catalogs_api, jobs_api): (Api<Incident>, Api<PlaybookCatalog>, Api<Job>) =
        match &args.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };

    // The catalog controller's cache doubles as the menu the incident controller reads.
    let catalog_controller = Controller::new(catalogs_api, watcher::Config::default());
    let catalogs = catalog_controller.store();
    // salve's Jobs: one watch feeds the Job cache (concurrency cap, target lock, finished Jobs)
    // and triggers the owning incident.
    let (jobs, job_writer) = reflector::store();
    let job_stream = watcher(
        jobs_api,
        watcher::Config::default().labels(&controller::job_selector()),
    )
    .default_backoff()
    .modify(cache::trim_job)
    .reflect(job_writer)
    .touched_objects();
    // Incidents, trimmed for the cache (managedFields; the bulk of incidents in a final phase).
    let (incident_store, incident_writer) = reflector::store();
    let incident_stream = watcher(incidents, watcher::Config::default())
        .default_backoff()
        .modify(cache::trim_incident)
        .reflect(incident_writer)
        .touched_objects();

    let metrics = metrics::Metrics::default();
    metrics.register(&mut registry);

    let leader = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.sub_registry_with_prefix("salve_operator").register(
        "leader",
        "1 while this replica runs the controllers (holds the election Lease, or leader election is off), else 0",
        leader.clone(),
    );
    let controller = Controller::for_stream(incident_stream, incident_store)
        .owns_stream(job_stream)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(args.reconcile_concurrency),
        );
    // The phase gauge counts from the controller's incident cache.
    metrics.watch_incidents(&controller.store());
    let reporter = Reporter {
        controller: "salve".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter.clone()),
        reporter,
        catalogs: catalogs.clone(),
        incidents: controller.store(),
        jobs,
        decider,
        verifier: verify::Verifier::new(args.prometheus_url.clone(), args.alertmanager_url.clone()),
        notifier,
        gates: args.gates(),
        job_settings: args.job_settings(),
        max_concurrent_jobs: args.max_concurrent_jobs,
        flap_window: Duration::from_secs(args.flap_window_seconds),
        metrics,
        state: controller::State::default(),
    });

    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    let addr = listener.local_addr()?;
    info!(%addr, "serving /metrics, /healthz, /readyz");
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                            .into_response(),
                        Err(_) => (
                            [(axum::http::header::CONTENT_TYPE, "text/plain")],
                            String::from("encoding failed"),
                        )
                            .into_response(),
                    }
                }
            }),
        );
    let _server = AbortOnDrop(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    }));

    let catalog_ctx = Arc::new(catalog::CatalogCtx {
        client: client.clone(),
        catalogs: catalogs.clone(),
    });
    let catalog_controller = catalog_controller
        .graceful_shutdown_on(shutdown_signal())
        .run(catalog::reconcile, catalog::error_policy, catalog_ctx)
        .for_each(|_| async {});
    let incident_controller = controller
        .graceful_shutdown_on(shutdown_signal())
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        });
    let controllers = async move {
        futures::future::join(incident_controller, catalog_controller).await;
    };

    let Some(election) = election else {
        info!("leader election is off: this replica acts alone");
        leader.set(1);
        info!("salve operator started");
        controllers.await;
        leader.set(0);
        info!("salve operator stopped");
        return Ok(());
    };
    let mut elector = lease::Elector::new(
        client.clone(),
        &election.namespace,
        &election.lease,
        &election.identity,
        timings,
    );
    info!(
        identity = %election.identity,
        lease = %format!("{}/{}", election.namespace, election.lease),
        handover_bound_s = timings.handover_bound().as_secs(),
        "standing for election; the controllers start once this replica holds the lease"
    );
    tokio::select! {
        _ = elector.acquire() => {}
        _ = shutdown_signal() => {
            info!("salve operator stopped before it led");
            return Ok(());
        }
    }
    leader.set(1);
    info!(identity = %election.identity, "acquired the lease: leading; salve operator started");
    let outcome = tokio::select! {
        // Checked first on every wake-up: a lost lease wins over any pending work.
        biased;
        lost = elector.hold() => Err(lost),
        _ = controllers => Ok(()),
    };
    leader.set(0);
    match outcome {
        Ok(()) => {
            elector.release().await;
            info!("salve operator stopped");
            Ok(())
        }
        Err(lost) => {
            error!(identity = %election.identity, reason = %lost, "lost the lease: stopped the controllers; exiting");
            Err(StartError::LostLeadership(lost))
        }
    }
}

/// Runs the operator with the engine built from `args`.
pub async fn run(args: OperatorArgs) -> Result<(), StartError> {
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let engine = salve_decide::DecisionEngine::new(args.decide_config(), &mut registry)?;
    run_with(args, client, Arc::new(EngineDecider(engine)), registry).await
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
