//! The Incident controller: observe → `salve_core::next` → apply effects → write status.
//!
//! Reconcile never branches on why it ran. Every write is idempotent: Jobs and their params
//! Secrets have deterministic names (a 409 means "already done"), status is written by
//! server-side apply with field manager `salve` and only when it changed, and Events and
//! notifications are sent only after the status that records the transition was stored.
//!
//! Two rules keep it to one write per transition: a reconcile never acts on a cached incident
//! older than its own last status write (it waits for the watch to catch up), and a phase
//! that is left at once (Decided) is left in the same reconcile, from the object the status
//! write returned. One reconcile publishes one Event, naming each step it took.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use salve_api::{
    AlertSnapshot, CatalogEntry, Decision, Incident, IncidentStatus, Phase, PlaybookCatalog, keys,
};
use salve_core::job::contract::RunnerReport;
use salve_core::job::{JobRequest, JobSettings};
use salve_core::{Effect, Gates, Hold, JobState, Observed, UnrecordedJob, next};
use tracing::{info, instrument, warn};

use crate::metrics::Metrics;
use crate::notify::{Notifier, render};
use crate::verify::Verifier;

/// Chooses a remediation. Implemented by the decision engine; a decision is asked for at most
/// once per incident (the controller stores it before acting).
pub trait Decider: Send + Sync + 'static {
    /// Decide for `alert` among `catalogs`. Never fails: errors become an escalate decision.
    fn decide<'a>(
        &'a self,
        alert: &'a AlertSnapshot,
        catalogs: &'a [PlaybookCatalog],
        now: Timestamp,
    ) -> BoxFuture<'a, Decision>;
}

/// Everything reconcile needs, shared by all reconciles.
pub struct Ctx {
    pub client: Client,
    /// For the Warning Events of failed reconciles (aggregated into series).
    pub recorder: Recorder,
    /// Who publishes Events.
    pub reporter: Reporter,
    pub catalogs: Store<PlaybookCatalog>,
    pub incidents: Store<Incident>,
    pub jobs: Store<Job>,
    pub decider: Arc<dyn Decider>,
    pub verifier: Verifier,
    pub notifier: Notifier,
    pub gates: Gates,
    pub job_settings: JobSettings,
    pub max_concurrent_jobs: u32,
    pub flap_window: Duration,
    pub metrics: Metrics,
    /// Jobs being created and per-incident failure counts, shared by concurrent reconciles.
    pub state: State,
}

/// A Job this operator decided to create whose creation the Job cache may not show yet.
#[derive(Debug, Clone)]
struct Reserved {
    incident: String,
    target: Option<String>,
    at: std::time::Instant,
}

/// Mutable state shared by concurrent reconciles.
#[derive(Debug, Default)]
pub struct State {
    /// Reservations by Job name. Reconciles run concurrently and the Job and Incident caches
    /// lag behind the API server, so the blast-radius checks and the reservation of a Job
    /// happen together under this lock: a burst of incidents cannot all see "2 of 3 running"
    /// and all start, nor two incidents lock the same target.
    reserved: std::sync::Mutex<std::collections::HashMap<String, Reserved>>,
    /// Consecutive reconcile failures by incident uid (for the backoff).
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// By incident uid, the resourceVersions our own status writes replaced (and when the
    /// first was replaced), until the cache shows a version that is not one of them.
    superseded:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Vec<String>)>>,
}

/// How long a reconcile waits for the cache to show our own last write before acting on what
/// it has anyway (the resourceVersion precondition still refuses a stale status). A watch
/// delivers in milliseconds; this only bounds the wait if it never does.
const SUPERSEDED_TTL: Duration = Duration::from_secs(30);

impl State {
    /// Records that a status write replaced version `rv` of incident `uid`.
    fn supersede(&self, uid: &str, rv: String) {
        let mut map = self.superseded.lock().unwrap_or_else(|p| p.into_inner());
        // Entries of incidents deleted before their cache caught up are never looked at again.
        map.retain(|_, (since, _)| since.elapsed() < SUPERSEDED_TTL);
        let (_, list) = map
            .entry(uid.to_owned())
            .or_insert_with(|| (std::time::Instant::now(), Vec::new()));
        if !list.contains(&rv) {
            list.push(rv);
        }
    }

    /// Whether the cached version `rv` of incident `uid` is one our own writes replaced. A
    /// cache only moves forward, so once it shows any other version it has caught up with
    /// them all, and they are forgotten.
    pub fn is_superseded(&self, uid: &str, rv: Option<&str>) -> bool {
        let mut map = self.superseded.lock().unwrap_or_else(|p| p.into_inner());
        let stale = match (map.get(uid), rv) {
            (Some((since, list)), Some(rv)) => {
                since.elapsed() < SUPERSEDED_TTL && list.iter().any(|x| x == rv)
            }
            _ => false,
        };
        if !stale {
            map.remove(uid);
        }
        stale
    }
}

/// How long a reservation stands in for a Job the caches have not caught up with yet.
const RESERVATION_TTL: Duration = Duration::from_secs(60);

/// Reconcile failures, by step. The category is the metric label and the Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the Job of attempt {attempt}: {source}")]
    ReadJob { attempt: u32, source: kube::Error },
    #[error("reading the incident before its gated Job: {0}")]
    ReadIncident(kube::Error),
    #[error("creating the remediation Job: {0}")]
    CreateJob(kube::Error),
    #[error("rendering the remediation Job: {0}")]
    RenderJob(#[from] salve_core::job::BuildError),
    #[error("writing status: {0}")]
    WriteStatus(kube::Error),
    #[error("the incident has no namespace or uid")]
    Incomplete,
    #[error("the {0} cache stopped")]
    CacheClosed(&'static str),
}

impl Error {
    /// Errors no retry can fix until the incident itself changes.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Incomplete | Error::RenderJob(_))
    }

    /// PascalCase category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::ReadJob { .. } => "ReadJobFailed",
            Error::ReadIncident(_) => "ReadIncidentFailed",
            Error::CreateJob(_) => "CreateJobFailed",
            Error::RenderJob(_) => "RenderJobFailed",
            Error::WriteStatus(_) => "WriteStatusFailed",
            Error::Incomplete => "IncompleteObject",
            Error::CacheClosed(_) => "CacheClosed",
        }
    }
}

fn annotation(inc: &Incident, key: &str) -> Option<String> {
    inc.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn truthy(inc: &Incident, key: &str) -> bool {
    annotation(inc, key)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
}

/// Who set an approval/cancel flag. The admission policy guarantees the `-by` annotation is
/// the authenticated user; without it the flag is ignored (a forged or policy-less approval).
fn actor(inc: &Incident, flag: &str, by: &str) -> Option<String> {
    if truthy(inc, flag) {
        annotation(inc, by)
    } else {
        None
    }
}

/// The catalog entry a decision names.
pub fn find_entry(catalogs: &[Arc<PlaybookCatalog>], decision: &Decision) -> Option<CatalogEntry> {
    let playbook = decision.playbook.as_deref()?;
    catalogs
        .iter()
        .filter(|c| {
            decision
                .catalog
                .as_deref()
                .is_none_or(|name| c.name_any() == name)
        })
        .flat_map(|c| c.spec.entries.iter())
        .find(|e| e.name == playbook)
        .cloned()
}

/// The value of an entry's target param in a decision (a host list is joined).
fn target_of(entry: &CatalogEntry, decision: &Decision) -> Option<String> {
    let param = entry.target_param.as_deref()?;
    let v = decision.params.as_ref()?.get(param)?;
    Some(match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    })
}

fn job_state(job: Option<&Job>) -> JobState {
    let Some(job) = job else {
        return JobState::Missing;
    };
    let Some(status) = &job.status else {
        return JobState::Running;
    };
    let conds = status.conditions.clone().unwrap_or_default();
    let now = Timestamp::now();
    for c in &conds {
        if c.status != "True" {
            continue;
        }
        let at = c.last_transition_time.as_ref().map_or(now, |t| t.0);
        match c.type_.as_str() {
            "Complete" => {
                let finished = status.completion_time.as_ref().map_or(at, |t| t.0);
                return JobState::Succeeded { finished };
            }
            "Failed" => {
                let reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
                let detail = c
                    .message
                    .clone()
                    .map(|m| format!("{reason}: {m}"))
                    .unwrap_or_else(|| reason.clone());
                return JobState::Failed {
                    finished: at,
                    reason: detail,
                    timed_out: reason == "DeadlineExceeded",
                };
            }
            _ => {}
        }
    }
    JobState::Running
}

impl Ctx {
    /// Blast-radius limits that would hold back a new Job for `inc`.
    fn hold(
        &self,
        inc: &Incident,
        entry: &CatalogEntry,
        decision: &Decision,
        now: Timestamp,
        reserved: &std::collections::HashMap<String, Reserved>,
    ) -> Option<Hold> {
        let me = inc.name_any();
        let cached = self.jobs.state();
        let in_cache = |name: &str| cached.iter().any(|j| j.name_any() == name);
        let running_cached = cached
            .iter()
            .filter(|j| {
                let owner = j.labels().get(keys::INCIDENT_LABEL).map(String::as_str);
                owner != Some(me.as_str()) && matches!(job_state(Some(j)), JobState::Running)
            })
            .count();
        let running_reserved = reserved
            .iter()
            .filter(|(job, r)| r.incident != me && !in_cache(job))
            .count();
        let running = (running_cached + running_reserved) as u32;
        if running >= self.max_concurrent_jobs {
            return Some(Hold::ConcurrencyCap {
                running,
                cap: self.max_concurrent_jobs,
            });
        }
        let target = target_of(entry, decision)?;
        // A Job reserved by another incident for this target, not yet finished in the cache.
        let finished = |job: &str| {
            cached
                .iter()
                .find(|j| j.name_any() == job)
                .is_some_and(|j| !matches!(job_state(Some(j)), JobState::Running))
        };
        if let Some((_, r)) = reserved.iter().find(|(job, r)| {
            r.incident != me && r.target.as_deref() == Some(target.as_str()) && !finished(job)
        }) {
            return Some(Hold::TargetLocked {
                target,
                holder: r.incident.clone(),
            });
        }
        let catalogs = self.catalogs.state();
        for other in self.incidents.state() {
            if other.name_any() == me {
                continue;
            }
            let Some(st) = &other.status else { continue };
            let Some(d) = &st.decision else { continue };
            let same_target = find_entry(&catalogs, d)
                .and_then(|e| target_of(&e, d))
                .is_some_and(|t| t == target);
            if !same_target {
                continue;
            }
            if matches!(st.phase, Phase::Executing | Phase::Verifying) {
                return Some(Hold::TargetLocked {
                    target,
                    holder: other.name_any(),
                });
            }
            if entry.cooldown_seconds > 0 && d.playbook.as_deref() == Some(entry.name.as_str()) {
                let last = st
                    .attempts
                    .iter()
                    .filter_map(|a| a.finished_at.as_ref())
                    .map(|t| t.0)
                    .max();
                if let Some(last) = last {
                    let until = last
                        .checked_add(SignedDuration::from_secs(entry.cooldown_seconds.into()))
                        .ok()?;
                    if until > now {
                        return Some(Hold::Cooldown { until });
                    }
                }
            }
        }
        None
    }

    /// Incidents of the same alert fingerprint created within the flap window.
    fn recent_occurrences(&self, inc: &Incident, now: Timestamp) -> u32 {
        let window = SignedDuration::try_from(self.flap_window).unwrap_or(SignedDuration::MAX);
        let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
        let n = self
            .incidents
            .state()
            .iter()
            .filter(|o| {
                o.spec.fingerprint == inc.spec.fingerprint
                    && o.metadata.namespace == inc.metadata.namespace
            })
            .filter(|o| {
                o.metadata
                    .creation_timestamp
                    .as_ref()
                    .is_none_or(|t| t.0 >= since)
            })
            .count() as u32;
        n.max(1)
    }
}

/// Reconciles one incident; a failure is also recorded as a Warning Event whose reason is the
/// error's category (Events of the same reason are aggregated by the recorder).
pub async fn reconcile(inc: Arc<Incident>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let uid = inc.uid().unwrap_or_default();
    let result = reconcile_once(inc.clone(), ctx.clone()).await;
    match &result {
        Ok(_) => {
            ctx.state
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
        }
        Err(err) => {
            let ev = Event {
                type_: EventType::Warning,
                reason: err.category().to_owned(),
                note: Some(truncate(&err.to_string(), 1000)),
                action: "Reconcile".into(),
                secondary: None,
            };
            ctx.metrics.api_write("events", "create");
            if let Err(e) = ctx.recorder.publish(&ev, &inc.object_ref(&())).await {
                warn!(error = %e, "publishing event failed");
            }
        }
    }
    result
}

/// Reconcile passes in one call at most: Pending → Decided → the gate, or a gated start that
/// found a newer incident on the API server and looks again from it.
const MAX_PASSES: usize = 3;

/// When a reconcile that found a stale cached incident looks again (the watch event of the
/// newer version normally wakes it sooner).
const STALE_RECHECK: Duration = Duration::from_secs(2);

/// What one pass over an incident did.
struct Pass {
    action: Action,
    /// The effects of the recorded transition, with the incident as recorded (for notices).
    effects: Vec<Effect>,
    after: Arc<Incident>,
    /// A fresher incident to look at again at once: the one the status write returned when
    /// the new phase leaves at once (Decided), or the one read before a gated Job.
    carry_on: Option<Arc<Incident>>,
}

#[instrument(skip_all, fields(incident = %inc.name_any(), phase))]
async fn reconcile_once(inc: Arc<Incident>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let uid = inc.uid().ok_or(Error::Incomplete)?;
    // A reconcile woken by our own Job (or by a timer) can see the incident as it was before
    // our last status write: acting on it would create that Job again (409) and compute a
    // status the API server refuses (409). Wait for the newer version instead.
    if ctx
        .state
        .is_superseded(&uid, inc.resource_version().as_deref())
    {
        ctx.metrics.stale_skipped();
        tracing::debug!(
            resource_version = inc.resource_version().as_deref().unwrap_or(""),
            "cached incident is older than our last status write; waiting for it"
        );
        return Ok(Action::requeue(STALE_RECHECK));
    }
    let mut current = inc;
    // The first pass starts from the cache; later ones from an object the API server just
    // returned.
    let mut fresh = false;
    let mut done: Vec<(Vec<Effect>, Arc<Incident>)> = Vec::new();
    let mut result = Ok(Action::await_change());
    for _ in 0..MAX_PASSES {
        match pass(current.clone(), &ctx, &uid, fresh).await {
            Ok(p) => {
                done.push((p.effects, p.after));
                result = Ok(p.action);
                match p.carry_on {
                    Some(next) => {
                        current = next;
                        fresh = true;
                    }
                    None => break,
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // Events and notices after every transition they describe is stored. Transitions made in
    // one reconcile share one Event (Pending → Decided → Executing reads "rules chose X; low
    // risk: running X"), while status history keeps each step.
    apply_effects(&ctx, &done).await;
    result
}

/// One observe → next → Job → status round. `fresh`: `inc` came from the API server just now
/// (a status write's answer or a GET), not from the cache.
async fn pass(inc: Arc<Incident>, ctx: &Ctx, uid: &str, fresh: bool) -> Result<Pass, Error> {
    let now = Timestamp::now();
    let status = inc.status.clone();
    let phase = status.as_ref().map_or(Phase::Pending, |s| s.phase);
    tracing::Span::current().record("phase", phase.as_str());
    let idle = |action| Pass {
        action,
        effects: Vec::new(),
        after: inc.clone(),
        carry_on: None,
    };
    if phase.is_terminal() {
        return Ok(idle(Action::await_change()));
    }
    let name = inc.name_any();
    let ns = inc.namespace().ok_or(Error::Incomplete)?;
    // Never decide from a half-filled cache: right after start the catalog watch may not have
    // listed yet, and an empty menu would escalate every incident. An empty menu waits.
    if ctx.catalogs.state().is_empty() {
        return Ok(idle(Action::requeue(Duration::from_secs(2))));
    }
    // An incident chooses from the catalogs of its own namespace: teams own their menus, and
    // entry names need only be unique there.
    let catalogs: Vec<Arc<PlaybookCatalog>> = ctx
        .catalogs
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let decision = status.as_ref().and_then(|s| s.decision.clone());
    let entry = decision.as_ref().and_then(|d| find_entry(&catalogs, d));

    // ---- observe
    let mut observed = Observed {
        incident: &name,
        entry: entry.as_ref(),
        approved_by: actor(&inc, keys::APPROVE, keys::APPROVED_BY),
        cancelled_by: actor(&inc, keys::CANCEL, keys::CANCELLED_BY),
        human_reason: annotation(&inc, keys::REASON),
        alert_resolved_at: annotation(&inc, keys::ALERT_RESOLVED_AT)
            .and_then(|v| v.parse::<Timestamp>().ok()),
        dry_run: inc.spec.dry_run || truthy(&inc, keys::DRY_RUN),
        // Only the step from Decided to a first attempt consults the flap guard; counting
        // scans the cache, so other phases skip it.
        recent_occurrences: if matches!(phase, Phase::Pending | Phase::Decided) {
            ctx.recent_occurrences(&inc, now)
        } else {
            1
        },
        ..Default::default()
    };
    if let (Some(d), Some(e)) = (&decision, &entry) {
        observed.job_invalid = render_problem(ctx, &inc, &ns, e, d);
    }
    let attempt = status
        .as_ref()
        .and_then(|s| s.attempts.last())
        .map(|a| a.number);
    if let (Phase::Executing, Some(n)) = (phase, attempt) {
        let job_name = salve_api::names::job_name(&name, n);
        let job = read_job(ctx, &ns, &job_name)
            .await
            .map_err(|source| Error::ReadJob { attempt: n, source })?;
        observed.job = job_state(job.as_deref());
        if matches!(
            observed.job,
            JobState::Succeeded { .. } | JobState::Failed { .. }
        ) {
            observed.runner = runner_report(ctx, &ns, &job_name).await;
        }
    }
    // Before a decision no Job can exist; after, a cancel may have met one being created.
    if observed.cancelled_by.is_some() && phase != Phase::Pending {
        observed.unrecorded_job = unrecorded_job(ctx, &ns, &name, status.as_ref()).await?;
    }
    if phase == Phase::Verifying && observed.alert_resolved_at.is_none() {
        let stabilized = status
            .as_ref()
            .and_then(|s| s.attempts.last())
            .and_then(|a| a.finished_at.clone())
            .is_none_or(|t| {
                let wait = entry.as_ref().map_or(0, |e| e.verify.stabilization_seconds);
                t.0.checked_add(SignedDuration::from_secs(wait.into()))
                    .is_ok_and(|at| at <= now)
            });
        if stabilized {
            observed.verification = Some(ctx.verifier.check(&inc).await);
        }
    }

    // ---- decide (once) and compute the transition
    let mut t = next(status.as_ref(), &observed, &ctx.gates, now);
    if t.effects.contains(&Effect::Decide) {
        let all: Vec<PlaybookCatalog> = catalogs.iter().map(|c| (**c).clone()).collect();
        let d = ctx.decider.decide(&inc.spec.alert, &all, now).await;
        ctx.metrics.decision(&d);
        observed.new_decision = Some(d);
        t = next(status.as_ref(), &observed, &ctx.gates, now);
    }

    // ---- the Job, if one is due: blast-radius checks and reservation under one lock, then
    // creation (idempotent by name) before the status that records it
    let wants_job = t.effects.iter().find_map(|e| match e {
        Effect::CreateJob { attempt, dry_run } => Some((*attempt, *dry_run)),
        _ => None,
    });
    if let (Some((attempt, dry_run)), Some(d), Some(e)) =
        (wants_job, t.status.decision.clone(), entry.as_ref())
    {
        // A Job starts from the incident as the API server has it now, not as the cache had
        // it, so that a cancel given in the last moment (as a gate opens, or as an attempt
        // fails) is seen before the Job exists. The first attempt of a low-risk incident starts
        // from the Decided write's answer and needs no extra read.
        if !fresh {
            let current = Api::<Incident>::namespaced(ctx.client.clone(), &ns)
                .get(&name)
                .await
                .map_err(Error::ReadIncident)?;
            if current.resource_version() != inc.resource_version() {
                // The cache is behind: its version must not be acted on either.
                if let Some(rv) = inc.resource_version() {
                    ctx.state.supersede(uid, rv);
                }
                return Ok(Pass {
                    carry_on: Some(Arc::new(current)),
                    ..idle(Action::requeue(Duration::from_millis(200)))
                });
            }
        }
        // The cap and the target lock count Jobs from the cache: not before it has listed.
        if ctx.jobs.wait_until_ready().now_or_never().is_none() {
            return Ok(idle(Action::requeue(Duration::from_secs(1))));
        }
        let job_name = salve_api::names::job_name(&name, attempt);
        let hold = {
            let mut reserved = ctx.state.reserved.lock().unwrap_or_else(|p| p.into_inner());
            reserved.retain(|_, r| r.at.elapsed() < RESERVATION_TTL);
            let hold = ctx.hold(&inc, e, &d, now, &reserved);
            if hold.is_none() {
                reserved.insert(
                    job_name.clone(),
                    Reserved {
                        incident: name.clone(),
                        target: target_of(e, &d),
                        at: std::time::Instant::now(),
                    },
                );
            }
            hold
        };
        if let Some(hold) = hold {
            observed.hold = Some(hold);
            t = next(status.as_ref(), &observed, &ctx.gates, now);
        } else if let Err(err) = create_job(ctx, &inc, &ns, e, &d, attempt, dry_run).await {
            ctx.state
                .reserved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&job_name);
            return Err(err);
        }
    }

    // ---- status
    let mut new_status = t.status.clone();
    new_status.observed_generation = inc.metadata.generation;
    new_status.alert_resolved_at = observed
        .alert_resolved_at
        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
    new_status.conditions = salve_core::conditions::compute(status.as_ref(), &new_status, now);
    let action = match t.requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(200))),
        None => Action::requeue(Duration::from_secs(300)),
    };
    // Compared as the API server will store them: times are kept to the second there, so a
    // value read from an annotation with milliseconds would otherwise look new on every pass
    // and cost a write that changes nothing.
    if status.as_ref().map(wire) == Some(wire(&new_status)) {
        return Ok(Pass {
            action,
            effects: t.effects,
            after: inc.clone(),
            carry_on: None,
        });
    }
    ctx.metrics.api_write("incidents/status", "patch");
    let computed_from = inc.resource_version();
    let written = match write_status(
        &ctx.client,
        &ns,
        &name,
        computed_from.as_deref(),
        &new_status,
    )
    .await
    {
        Ok(written) => written,
        // The incident changed after this reconcile read it (a human's annotation, the
        // webhook's resolved record): nothing was recorded, so no Event or notification
        // either; look again with the fresh object.
        Err(Error::WriteStatus(kube::Error::Api(e))) if e.code == 409 => {
            tracing::debug!("status was computed from a stale incident; reconciling again");
            ctx.metrics.stale_status();
            return Ok(idle(Action::requeue(Duration::from_millis(300))));
        }
        Err(e) => return Err(e),
    };
    tracing::debug!(
        from = computed_from.as_deref().unwrap_or(""),
        to = written.resource_version().as_deref().unwrap_or(""),
        phase = %new_status.phase,
        "status written"
    );
    // Only a write that made a new version replaces the one it was computed from (an apply
    // that changes nothing keeps the resourceVersion, which is then still the current one).
    if let Some(rv) = computed_from.filter(|rv| written.resource_version().as_ref() != Some(rv)) {
        ctx.state.supersede(uid, rv);
    }
    ctx.metrics.status_written(
        status.as_ref(),
        &new_status,
        inc.spec.alert.starts_at.0,
        now,
    );
    if new_status.phase != phase {
        ctx.metrics.transition(phase, new_status.phase);
        info!(from = %phase, to = %new_status.phase, reason = new_status.reason.as_deref().unwrap_or(""), "transition");
    }
    let moves_on = new_status.phase == Phase::Decided && phase != Phase::Decided;
    let mut after = (*inc).clone();
    after.status = Some(new_status);
    let written = Arc::new(written);
    Ok(Pass {
        action,
        effects: t.effects,
        after: Arc::new(after),
        carry_on: moves_on.then_some(written),
    })
}

/// The next attempt's Job if it exists although status does not record it: a cancel that
/// arrived between the read a Job was started from and the Job's creation (the status write
/// recording the attempt was then refused).
async fn unrecorded_job(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    status: Option<&IncidentStatus>,
) -> Result<Option<UnrecordedJob>, Error> {
    let attempt = status
        .and_then(|s| s.attempts.last())
        .map_or(1, |a| a.number + 1);
    let job_name = salve_api::names::job_name(name, attempt);
    let job = read_job(ctx, ns, &job_name)
        .await
        .map_err(|source| Error::ReadJob { attempt, source })?;
    Ok(job.map(|job| {
        warn!(job = %job_name, "a cancel arrived while this attempt's Job was being created; the Job exists");
        UnrecordedJob {
            attempt,
            job: job_name,
            created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
            dry_run: job
                .annotations()
                .get(keys::DRY_RUN)
                .is_some_and(|v| v == "true"),
        }
    }))
}

/// A status as it is sent to (and stored by) the API server.
fn wire(status: &IncidentStatus) -> serde_json::Value {
    serde_json::to_value(status).unwrap_or(serde_json::Value::Null)
}

/// A Job by name. A finished Job in the cache is final (Complete and Failed never revert);
/// anything else is read from the API server, so that a lagging cache (a relist swaps the
/// store only when it ends) is never taken for a deleted or a still-running Job.
async fn read_job(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<Arc<Job>>, kube::Error> {
    if let Some(job) = ctx.jobs.get(&ObjectRef::new(name).within(ns))
        && !matches!(job_state(Some(&job)), JobState::Running | JobState::Missing)
    {
        return Ok(Some(job));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    Ok(jobs.get_opt(name).await?.map(Arc::new))
}

/// Publishes the Events and sends the notices of the passes of one reconcile, in order.
async fn apply_effects(ctx: &Ctx, passes: &[(Vec<Effect>, Arc<Incident>)]) {
    let Some((_, last)) = passes.last() else {
        return;
    };
    // Transition Events of one reconcile, merged: the last reason names where it ended.
    let mut warning = false;
    let mut reason = None;
    let mut notes: Vec<&str> = Vec::new();
    for (effects, _) in passes {
        for effect in effects {
            if let Effect::Event {
                warning: w,
                reason: r,
                message,
            } = effect
            {
                warning |= *w;
                reason = Some(*r);
                notes.push(message);
            }
        }
    }
    if let Some(reason) = reason {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(&notes.join("; "), 1000)),
            action: "Transition".into(),
            secondary: None,
        };
        ctx.metrics.api_write("events", "create");
        // A transition happens once, so its Event never repeats: a recorder of its own keeps
        // the shared recorder's series cache (which holds every Event for minutes) to the
        // repeating Warning Events of failed reconciles.
        let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
        if let Err(e) = recorder.publish(&ev, &last.object_ref(&())).await {
            warn!(error = %e, "publishing event failed");
        }
    }
    for (effects, after) in passes {
        for effect in effects {
            if let Effect::Notify(n) = effect {
                let msg = render(*n, after);
                for channel in ctx.notifier.send(&msg, after).await {
                    ctx.metrics.notification_failed(channel);
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Why the Job for `decision` cannot be built (checked before any attempt starts, so a
/// decision that can never become a Job escalates instead of failing every reconcile).
fn render_problem(
    ctx: &Ctx,
    inc: &Incident,
    ns: &str,
    entry: &CatalogEntry,
    decision: &Decision,
) -> Option<String> {
    let uid = inc.meta().uid.clone().unwrap_or_default();
    let name = inc.name_any();
    let empty = serde_json::json!({});
    let req = JobRequest {
        incident: &name,
        namespace: ns,
        incident_uid: &uid,
        attempt: 1,
        dry_run: false,
        entry,
        params: decision.params.as_ref().unwrap_or(&empty),
    };
    salve_core::job::params_secret(&req)
        .and_then(|_| salve_core::job::job(&req, &ctx.job_settings))
        .err()
        .map(|e| e.to_string())
}

/// The runner's exit code and result, from the terminated container of the Job's pod. `None`
/// when the pod is gone or unreadable: the Job's own condition still decides the outcome.
async fn runner_report(ctx: &Ctx, ns: &str, job: &str) -> Option<RunnerReport> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let list = match pods.list(&lp).await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, job, "reading the runner's result from its pod failed; the Job's condition decides alone");
            return None;
        }
    };
    // backoffLimit is 0, so there is one pod; take the latest terminated runner container.
    list.items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.name == salve_core::job::contract::CONTAINER)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .max_by_key(|t| t.finished_at.as_ref().map(|f| f.0))
        .map(|t| RunnerReport::parse(t.exit_code, t.message.as_deref()))
}

async fn create_job(
    ctx: &Ctx,
    inc: &Incident,
    ns: &str,
    entry: &CatalogEntry,
    decision: &Decision,
    attempt: u32,
    dry_run: bool,
) -> Result<(), Error> {
    let uid = inc.meta().uid.clone().ok_or(Error::Incomplete)?;
    let name = inc.name_any();
    let empty = serde_json::json!({});
    let req = JobRequest {
        incident: &name,
        namespace: ns,
        incident_uid: &uid,
        attempt,
        dry_run,
        entry,
        params: decision.params.as_ref().unwrap_or(&empty),
    };
    let secret = salve_core::job::params_secret(&req)?;
    let job = salve_core::job::job(&req, &ctx.job_settings)?;
    let pp = PostParams {
        field_manager: Some(salve_api::FIELD_MANAGER.into()),
        ..Default::default()
    };
    ctx.metrics.api_write("secrets", "create");
    match Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .create(&pp, &secret)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(Error::CreateJob(e)),
    }
    ctx.metrics.api_write("jobs", "create");
    match Api::<Job>::namespaced(ctx.client.clone(), ns)
        .create(&pp, &job)
        .await
    {
        Ok(_) => {
            ctx.metrics.job_created();
            info!(
                attempt,
                dry_run,
                job = job.metadata.name.as_deref().unwrap_or(""),
                "created remediation Job"
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::CreateJob(e)),
    }
}

/// Writes status by server-side apply, conditional on `resource_version` (the version the
/// status was computed from): a status derived from a stale view is refused with 409 instead
/// of overwriting newer facts.
async fn write_status(
    client: &Client,
    ns: &str,
    name: &str,
    resource_version: Option<&str>,
    status: &IncidentStatus,
) -> Result<Incident, Error> {
    let api: Api<Incident> = Api::namespaced(client.clone(), ns);
    let mut patch = serde_json::json!({
        "apiVersion": format!("{}/{}", salve_api::GROUP, salve_api::VERSION),
        "kind": "Incident",
        "status": status,
    });
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": rv});
    }
    api.patch_status(
        name,
        &PatchParams::apply(salve_api::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::WriteStatus)
}

/// Permanent errors wait for a change of the incident; transient ones back off exponentially
/// per incident (1 s, 2 s, 4 s … capped at 5 min) with ±25 % jitter so a failing API server
/// is not hit in lockstep. The category is counted.
pub fn error_policy(inc: Arc<Incident>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.reconcile_error(err.category());
    warn!(error = %err, category = err.category(), incident = %inc.name_any(), "reconcile failed");
    if err.is_permanent() {
        return Action::await_change();
    }
    let n = {
        let mut failures = ctx.state.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(inc.uid().unwrap_or_default()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    Action::requeue(backoff(n, rand::random::<f64>()))
}

/// The delay after the `n`-th consecutive failure (n ≥ 1), for a jitter draw in [0, 1).
pub fn backoff(n: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1u64 << n.saturating_sub(1).min(9)).min(MAX_BACKOFF);
    base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Labels to keep only salve's Jobs in the Job reflector.
pub fn job_selector() -> String {
    format!("{}={}", keys::MANAGED_BY_LABEL, keys::MANAGED_BY_VALUE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes_with_bounded_jitter() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(5, 0.5), Duration::from_secs(16));
        assert_eq!(backoff(9, 0.5), Duration::from_secs(256));
        assert_eq!(backoff(10, 0.5), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, 0.5), MAX_BACKOFF);
        assert_eq!(backoff(0, 0.5), Duration::from_secs(1));
        // ±25 %: 0.75× … 1.25×, whatever the draw.
        assert_eq!(backoff(3, 0.0), Duration::from_secs(3));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(3, f64::NAN.max(2.0)), Duration::from_secs(5));
    }

    #[test]
    fn a_cached_incident_older_than_our_writes_is_stale_until_the_cache_catches_up() {
        let s = State::default();
        // Nothing written yet: whatever the cache holds is current.
        assert!(!s.is_superseded("u1", Some("10")));
        // Pending (rv 10) → Decided written as rv 11, then Decided (11) → Executing as rv 12.
        s.supersede("u1", "10".into());
        s.supersede("u1", "11".into());
        assert!(
            s.is_superseded("u1", Some("10")),
            "the version before Decided"
        );
        assert!(s.is_superseded("u1", Some("11")), "the Decided version");
        assert!(
            !s.is_superseded("u2", Some("10")),
            "other incidents are unaffected"
        );
        // The cache shows our last write (or anything newer, e.g. a human's annotation):
        // current, and the replaced versions are forgotten.
        assert!(!s.is_superseded("u1", Some("12")));
        assert!(!s.is_superseded("u1", Some("11")));
        assert!(s.superseded.lock().unwrap().is_empty());
        // An object without a resourceVersion is never taken for stale.
        s.supersede("u3", "5".into());
        assert!(!s.is_superseded("u3", None));
    }

    #[test]
    fn a_status_differing_below_a_second_is_the_same_on_the_wire() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let at = |s: &str| Some(Time(s.parse::<Timestamp>().unwrap()));
        let stored = IncidentStatus {
            phase: Phase::Verifying,
            alert_resolved_at: at("2026-11-28T00:16:28Z"),
            ..Default::default()
        };
        // The webhook's annotation carries Alertmanager's milliseconds; the API server keeps
        // seconds. Writing this again would change nothing.
        let from_annotation = IncidentStatus {
            alert_resolved_at: at("2026-11-28T00:16:28.568Z"),
            ..stored.clone()
        };
        assert_ne!(stored, from_annotation);
        assert_eq!(wire(&stored), wire(&from_annotation));
        let later = IncidentStatus {
            alert_resolved_at: at("2026-11-28T00:16:29Z"),
            ..stored.clone()
        };
        assert_ne!(wire(&stored), wire(&later));
    }

    #[test]
    fn only_errors_no_retry_can_fix_wait_for_a_change() {
        assert!(Error::Incomplete.is_permanent());
        assert!(!Error::CacheClosed("jobs").is_permanent());
    }
}
