//! The HTTP surface: `POST /alert`, `/healthz`, `/readyz`, `/metrics`.
//!
//! `POST /alert` runs, in order: bearer-token check → content type → body size → parse →
//! alert count → validation of every alert → persistence. Nothing is written before the whole
//! payload is known to be valid, and 2xx is answered only after every Incident of the payload
//! is persisted; any failure after that point is a 5xx, so Alertmanager retries (safe: every
//! write is idempotent).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use tracing::{debug, error, info, warn};

use crate::alertmanager::AlertmanagerClient;
use crate::auth::Token;
use crate::build::{self, GroupContext, TRUNCATION_NOTE};
use crate::config::Config;
use crate::error::{ProcessError, Reject};
use crate::metrics::Metrics;
use crate::payload::{self, CheckedAlert, Payload, Status};
use crate::store::{Persisted, Resolved, Store};

/// Seconds Alertmanager is told to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Everything a request needs.
pub struct AppState {
    pub config: Config,
    pub token: Token,
    pub store: Store,
    pub alertmanager: Option<AlertmanagerClient>,
    pub metrics: Arc<Metrics>,
    ready: Mutex<Option<(Instant, bool)>>,
}

impl AppState {
    /// Bundles the parts of a running shim.
    pub fn new(
        config: Config,
        token: Token,
        store: Store,
        alertmanager: Option<AlertmanagerClient>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState {
            config,
            token,
            store,
            alertmanager,
            metrics,
            ready: Mutex::new(None),
        }
    }
}

/// The shim's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/alert", post(post_alert))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// What a successful `POST /alert` did (the 200 body).
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Incidents this request created.
    pub created: usize,
    /// Firing alerts whose Incident already existed.
    pub duplicates: usize,
    /// Resolved alerts whose Incident is now marked resolved.
    pub resolved: usize,
    /// Resolved alerts with no Incident (ignored).
    pub resolved_unknown: usize,
    /// Alerts left out of a truncated payload, fetched from Alertmanager and persisted.
    pub recovered_from_alertmanager: usize,
    /// Alerts left out of a truncated payload that could not be recovered.
    pub truncated_unrecovered: u64,
}

enum Failure {
    Reject(Reject),
    Process(ProcessError),
}

fn error_body(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn post_alert(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let start = Instant::now();
    let response = match receive(&st, req).await {
        Ok(summary) => (StatusCode::OK, axum::Json(summary)).into_response(),
        Err(Failure::Reject(r)) => {
            st.metrics.reject(r.category());
            warn!(error_category = r.category(), error = %r, "refused a webhook request");
            let mut resp = error_body(r.status(), &r.to_string());
            if r == Reject::Unauthorized {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
        Err(Failure::Process(e)) => {
            st.metrics.failure(e.category());
            error!(error_category = e.category(), error = %e, "webhook request failed; Alertmanager will retry");
            let status = e.status();
            let mut resp = error_body(status, &e.to_string());
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            resp
        }
    };
    st.metrics
        .request_duration
        .get_or_create(&crate::metrics::CodeLabel {
            code: response.status().as_u16().to_string(),
        })
        .observe(start.elapsed().as_secs_f64());
    response
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Reject> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Err(Reject::ContentType("none".into()));
    };
    let s = String::from_utf8_lossy(v.as_bytes());
    let essence = s.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        let mut shown = s.into_owned();
        shown.truncate(shown.floor_char_boundary(100));
        Err(Reject::ContentType(shown))
    }
}

async fn read_body(body: Body, declared: Option<usize>, limit: usize) -> Result<Vec<u8>, Reject> {
    if declared.is_some_and(|n| n > limit) {
        return Err(Reject::BodyTooLarge { limit });
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| Reject::BodyRead(e.to_string()))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(Reject::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn receive(st: &AppState, req: Request) -> Result<Summary, Failure> {
    let (parts, body) = req.into_parts();
    if !st.token.accepts(
        parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        return Err(Failure::Reject(Reject::Unauthorized));
    }
    check_content_type(&parts.headers).map_err(Failure::Reject)?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = read_body(body, declared, st.config.max_body_bytes)
        .await
        .map_err(Failure::Reject)?;
    let payload = payload::parse(&bytes).map_err(Failure::Reject)?;
    if payload.alerts.len() > st.config.max_alerts {
        return Err(Failure::Reject(Reject::TooManyAlerts {
            count: payload.alerts.len(),
            limit: st.config.max_alerts,
        }));
    }
    let checked = payload::check_all(&payload).map_err(Failure::Reject)?;
    for a in &checked {
        st.metrics
            .alerts_received
            .get_or_create(&crate::metrics::StatusLabel {
                status: a.alert.status.as_str().to_owned(),
            })
            .inc();
    }
    let deadline = st.config.request_timeout();
    match tokio::time::timeout(deadline, process(st, &payload, checked)).await {
        Ok(r) => r.map_err(Failure::Process),
        Err(_) => Err(Failure::Process(ProcessError::Timeout(deadline))),
    }
}

/// One thing to persist.
enum Work {
    Fire(Box<salve_api::Incident>),
    Resolve { name: String, ends_at: String },
}

enum Done {
    Fired(Persisted),
    Resolved(Resolved),
}

async fn run_work(st: &AppState, work: Work) -> Result<Done, ProcessError> {
    match work {
        Work::Fire(inc) => {
            let out = st.store.ensure(&inc).await?;
            match out {
                Persisted::Created => {
                    st.metrics.incidents_created.inc();
                    if inc
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(TRUNCATION_NOTE))
                    {
                        st.metrics.alerts_truncated.inc();
                    }
                    info!(incident = inc.metadata.name.as_deref().unwrap_or_default(), alertname = %inc.spec.alert.name, "incident created");
                }
                Persisted::Conflict => {
                    Metrics::inc_outcome(&st.metrics.duplicates_absorbed, "conflict");
                }
                Persisted::Cached => Metrics::inc_outcome(&st.metrics.duplicates_absorbed, "cache"),
            }
            Ok(Done::Fired(out))
        }
        Work::Resolve { name, ends_at } => {
            let out = st.store.mark_resolved(&name, &ends_at).await?;
            match out {
                Resolved::Marked => {
                    st.metrics.resolved_marked.inc();
                    info!(incident = %name, ends_at = %ends_at, "incident marked resolved");
                }
                Resolved::AlreadyMarked => {
                    st.metrics.resolved_duplicates.inc();
                }
                Resolved::Unknown => {
                    st.metrics.resolved_unknown.inc();
                    info!(incident = %name, "resolved alert has no incident; ignored");
                }
            }
            Ok(Done::Resolved(out))
        }
    }
}

fn work_for(alert: &CheckedAlert, group: &GroupContext, namespace: &str) -> Work {
    match alert.alert.status {
        Status::Firing => Work::Fire(Box::new(build::incident(alert, group, namespace))),
        Status::Resolved => Work::Resolve {
            name: build::incident_name(alert),
            ends_at: alert.alert.ends_at.clone(),
        },
    }
}

/// Persists every item, all attempted even when one fails (so a retry has less to do); the
/// first failure is returned.
async fn persist_all(
    st: &AppState,
    items: Vec<Work>,
    summary: &mut Summary,
) -> Result<(), ProcessError> {
    let results: Vec<Result<Done, ProcessError>> = futures::stream::iter(items)
        .map(|w| run_work(st, w))
        .buffer_unordered(st.config.api_concurrency)
        .collect()
        .await;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(Done::Fired(Persisted::Created)) => summary.created += 1,
            Ok(Done::Fired(Persisted::Conflict | Persisted::Cached)) => summary.duplicates += 1,
            Ok(Done::Resolved(Resolved::Marked | Resolved::AlreadyMarked)) => summary.resolved += 1,
            Ok(Done::Resolved(Resolved::Unknown)) => summary.resolved_unknown += 1,
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn process(
    st: &AppState,
    payload: &Payload,
    checked: Vec<CheckedAlert>,
) -> Result<Summary, ProcessError> {
    let group = GroupContext {
        receiver: payload.receiver.clone(),
        group_key: payload.group_key.clone(),
        external_url: payload.external_url.clone(),
    };
    let ns = st.config.namespace.as_str();
    let mut summary = Summary::default();
    let delivered: HashSet<String> = checked
        .iter()
        .map(|a| a.alert.fingerprint.clone())
        .collect();
    let items = checked.iter().map(|a| work_for(a, &group, ns)).collect();
    persist_all(st, items, &mut summary).await?;

    if payload.truncated_alerts > 0 {
        recover_truncated(st, payload, &group, &delivered, &mut summary).await?;
    }
    if summary.created + summary.resolved + summary.recovered_from_alertmanager > 0 {
        info!(group_key = %payload.group_key, receiver = %payload.receiver, created = summary.created, duplicates = summary.duplicates, resolved = summary.resolved, "webhook persisted");
    } else {
        debug!(group_key = %payload.group_key, duplicates = summary.duplicates, "webhook held nothing new");
    }
    Ok(summary)
}

async fn recover_truncated(
    st: &AppState,
    payload: &Payload,
    group: &GroupContext,
    delivered: &HashSet<String>,
    summary: &mut Summary,
) -> Result<(), ProcessError> {
    let Some(am) = &st.alertmanager else {
        Metrics::inc_outcome(&st.metrics.truncated_groups, "not_configured");
        summary.truncated_unrecovered = payload.truncated_alerts;
        warn!(
            group_key = %payload.group_key,
            receiver = %payload.receiver,
            truncated_alerts = payload.truncated_alerts,
            "Alertmanager truncated this group (max_alerts) and no --alertmanager-url is configured: {} alert(s) of the group are not turned into Incidents",
            payload.truncated_alerts
        );
        return Ok(());
    };
    let fetched = match am
        .group_alerts(&payload.receiver, &payload.group_labels)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            Metrics::inc_outcome(&st.metrics.truncated_groups, "failed");
            return Err(ProcessError::Alertmanager(e));
        }
    };
    let mut extra = Vec::new();
    for a in fetched {
        if delivered.contains(&a.fingerprint) {
            continue;
        }
        let at = format!("alertmanager alert {}", a.fingerprint);
        match payload::check_at(a.into_webhook_alert(), &at) {
            Ok(c) => extra.push(c),
            Err(e) => warn!(error = %e, "skipping an alert Alertmanager's API returned"),
        }
    }
    let n = extra.len();
    let items = extra
        .iter()
        .map(|a| work_for(a, group, &st.config.namespace))
        .collect();
    let mut sub = Summary::default();
    persist_all(st, items, &mut sub).await?;
    Metrics::inc_outcome(&st.metrics.truncated_groups, "fetched");
    st.metrics.truncated_alerts_recovered.inc_by(n as u64);
    summary.created += sub.created;
    summary.duplicates += sub.duplicates;
    summary.recovered_from_alertmanager += n;
    summary.truncated_unrecovered = payload.truncated_alerts.saturating_sub(n as u64);
    if summary.truncated_unrecovered > 0 && payload.status == Status::Resolved {
        info!(group_key = %payload.group_key, missing = summary.truncated_unrecovered, "resolved alerts left out of a truncated payload are not in Alertmanager's API; the operator's verification covers them");
    }
    info!(group_key = %payload.group_key, truncated_alerts = payload.truncated_alerts, recovered = n, "truncated group recovered from Alertmanager");
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let ttl = Duration::from_secs(st.config.ready_cache_seconds);
    let cached = *st.ready.lock().unwrap_or_else(|p| p.into_inner());
    let ok = match cached {
        Some((at, ok)) if at.elapsed() < ttl => ok,
        _ => {
            let ok = match tokio::time::timeout(Duration::from_secs(2), st.store.probe()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    warn!(error = %e, "readiness: Kubernetes API not usable");
                    false
                }
                Err(_) => {
                    warn!("readiness: Kubernetes API did not answer within 2s");
                    false
                }
            };
            *st.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ok));
            ok
        }
    };
    if ok {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Kubernetes API unreachable or Incidents not listable",
        )
            .into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}
