//! The incident state machine as one pure function: `next(incident, observed, now)`.
//!
//! Reconcile observes the world (the Job of the current attempt, annotations, the catalog entry,
//! verification, capacity), calls [`next`], applies the returned effects idempotently, then
//! writes the returned status. Nothing here does I/O or reads a clock, so every edge of the
//! table in DESIGN.md is a plain `#[test]`.

use std::time::Duration;

use crate::job::contract::{AfterFailure, RunnerReport, after_failure};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salve_api::conditions::reasons as r;
use salve_api::incident::MAX_HISTORY;
use salve_api::{
    Approval, Attempt, AttemptOutcome, CatalogEntry, Decision, HistoryEntry, IncidentStatus, Phase,
    Risk,
};

/// Operator-wide settings the gates use.
#[derive(Clone, Debug)]
pub struct Gates {
    /// Medium risk: default cancel window (an entry may override).
    pub cancel_window: Duration,
    /// High risk: default time to wait for an approval before escalating.
    pub approval_timeout: Duration,
    /// Run every remediation in check mode.
    pub dry_run: bool,
    /// How long to wait for a verification answer before escalating as unverifiable.
    pub verify_timeout: Duration,
    /// Escalate instead of remediating when the same alert fired this many times...
    pub flap_threshold: u32,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            cancel_window: Duration::from_secs(300),
            approval_timeout: Duration::from_secs(3600),
            dry_run: false,
            verify_timeout: Duration::from_secs(600),
            flap_threshold: 3,
        }
    }
}

/// State of the Job of the current attempt, as observed.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    /// No Job with the attempt's name exists.
    Missing,
    /// Created, not finished.
    Running,
    /// Completed successfully at the given time.
    Succeeded { finished: Timestamp },
    /// Failed (including deadline exceeded) with the Job's reason.
    Failed {
        finished: Timestamp,
        reason: String,
        timed_out: bool,
    },
}

/// What a verification source said about the alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The alert no longer fires.
    Cleared,
    /// The alert still fires.
    StillFiring,
    /// No source could answer (none configured, or all failed).
    Unknown,
}

/// Why a Job may not start now (the blast-radius limits). Visible in status while it waits.
#[derive(Clone, Debug, PartialEq)]
pub enum Hold {
    /// The global cap on concurrent remediation Jobs is reached.
    ConcurrencyCap { running: u32, cap: u32 },
    /// Another incident's remediation holds the lock on this target.
    TargetLocked { target: String, holder: String },
    /// The entry ran on this target recently.
    Cooldown { until: Timestamp },
}

impl Hold {
    fn message(&self) -> String {
        match self {
            Hold::ConcurrencyCap { running, cap } => {
                format!("waiting: {running} remediation Jobs running, cap is {cap}")
            }
            Hold::TargetLocked { target, holder } => {
                format!("waiting: target {target} is being remediated by incident {holder}")
            }
            Hold::Cooldown { until } => {
                format!("waiting: entry is cooling down until {}", seconds(*until))
            }
        }
    }
}

/// Everything reconcile observed for one incident.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The incident's name (Job names derive from it).
    pub incident: &'a str,
    /// A decision made during this reconcile (only asked for when status has none).
    pub new_decision: Option<Decision>,
    /// The catalog entry named by the stored decision, if it still exists.
    pub entry: Option<&'a CatalogEntry>,
    /// `salve.dev/approve` is set, with the authenticated approver.
    pub approved_by: Option<String>,
    /// `salve.dev/cancel` is set, with the authenticated user.
    pub cancelled_by: Option<String>,
    /// `salve.dev/reason`.
    pub human_reason: Option<String>,
    /// Alertmanager reported the alert resolved at this time.
    pub alert_resolved_at: Option<Timestamp>,
    /// The Job of the latest attempt (ignored before Executing).
    pub job: JobState,
    /// Verification result (only observed in Verifying once stabilization passed).
    pub verification: Option<Verification>,
    /// A blast-radius limit holding the next Job back.
    pub hold: Option<Hold>,
    /// How many incidents of the same alert fingerprint exist in the flap window (this one
    /// included).
    pub recent_occurrences: u32,
    /// Dry run requested on this incident (spec or annotation).
    pub dry_run: bool,
    /// The runner's report for the latest attempt's finished Job (exit code and result), when
    /// its pod could be read.
    pub runner: Option<RunnerReport>,
    /// Why the next attempt's Job cannot be built from the decision, if it cannot.
    pub job_invalid: Option<String>,
    /// The next attempt's Job, when it exists although status does not record that attempt
    /// (only looked for while a cancel is set).
    pub unrecorded_job: Option<UnrecordedJob>,
}

/// A Job the controller created in the same moment as a cancel: the status write recording
/// its attempt was refused because the cancel had made a newer version of the incident.
#[derive(Clone, Debug, PartialEq)]
pub struct UnrecordedJob {
    pub attempt: u32,
    pub job: String,
    pub created: Option<Timestamp>,
    pub dry_run: bool,
}

impl Default for Observed<'_> {
    fn default() -> Self {
        Self {
            incident: "",
            new_decision: None,
            entry: None,
            approved_by: None,
            cancelled_by: None,
            human_reason: None,
            alert_resolved_at: None,
            job: JobState::Missing,
            verification: None,
            hold: None,
            recent_occurrences: 1,
            dry_run: false,
            runner: None,
            job_invalid: None,
            unrecorded_job: None,
        }
    }
}

/// A side effect reconcile must apply. Each is idempotent.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Ask the decision engine (only from Pending, only when status has no decision).
    Decide,
    /// Create the Job for this attempt (deterministic name; 409 means done).
    CreateJob { attempt: u32, dry_run: bool },
    /// Record a Kubernetes Event on the incident.
    Event {
        warning: bool,
        reason: &'static str,
        message: String,
    },
    /// Tell humans (chat/webhook/Alertmanager) according to configuration.
    Notify(Notice),
}

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A remediation is starting without a human (low risk, or a cancel window ended).
    AutoRemediation,
    /// A cancel window started: say how to cancel.
    CancelWindow,
    /// A high-risk remediation waits for approval: say how to approve.
    ApprovalRequired,
    /// A human must take over.
    Escalated,
    /// The incident resolved after a remediation.
    Resolved,
}

/// The result of [`next`]: the status to write, the effects to apply first, and when to look
/// again if nothing changes in between.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The complete new status.
    pub status: IncidentStatus,
    /// Effects, in order.
    pub effects: Vec<Effect>,
    /// Reconcile again after this long even without a watch event.
    pub requeue: Option<Duration>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn plus(now: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    now.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// A time for people to read: whole seconds (the stored times carry no more either).
fn seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Builder that keeps status, history and effects consistent.
struct Step {
    from: Phase,
    status: IncidentStatus,
    effects: Vec<Effect>,
    requeue: Option<Duration>,
    now: Timestamp,
}

impl Step {
    fn stay(mut self, message: impl Into<String>, requeue: Option<Duration>) -> Self {
        self.status.message = Some(message.into());
        self.requeue = requeue;
        self
    }

    /// Stays without touching status: the message of the transition into this phase already
    /// says what is awaited, and an unchanged status costs no API write.
    fn wait(mut self, requeue: Option<Duration>) -> Self {
        self.requeue = requeue;
        self
    }

    fn go(mut self, to: Phase, reason: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        self.status.history.push(HistoryEntry {
            at: time(self.now),
            from: self.from,
            to,
            reason: reason.to_owned(),
            message: message.clone(),
        });
        let excess = self.status.history.len().saturating_sub(MAX_HISTORY);
        self.status.history.drain(..excess);
        let warning = matches!(to, Phase::Escalated);
        self.effects.push(Effect::Event {
            warning,
            reason,
            message: message.clone(),
        });
        self.status.phase = to;
        self.status.reason = Some(reason.to_owned());
        self.status.message = Some(message);
        self
    }

    fn effect(mut self, e: Effect) -> Self {
        self.effects.push(e);
        self
    }

    fn done(self) -> Transition {
        Transition {
            status: self.status,
            effects: self.effects,
            requeue: self.requeue,
        }
    }
}

fn attempts_allowed(entry: Option<&CatalogEntry>) -> u32 {
    entry.map_or(1, |e| e.max_attempts.max(1))
}

/// Starts attempt `n` unless a blast-radius limit holds it back.
fn start_attempt(
    mut s: Step,
    o: &Observed<'_>,
    n: u32,
    dry_run: bool,
    reason: &'static str,
    why: String,
) -> Step {
    if let Some(hold) = &o.hold {
        let msg = hold.message();
        let wait = match hold {
            Hold::Cooldown { until: t } => until(s.now, *t).max(Duration::from_secs(1)),
            Hold::ConcurrencyCap { .. } | Hold::TargetLocked { .. } => Duration::from_secs(10),
        };
        return s.stay(msg, Some(wait));
    }
    if let Some(why) = &o.job_invalid {
        return escalate(
            s,
            r::JOB_INVALID,
            format!("attempt {n} cannot start: {why}"),
        );
    }
    s.status.attempts.push(Attempt {
        number: n,
        job: salve_api::names::job_name(o.incident, n),
        started_at: Some(time(s.now)),
        finished_at: None,
        outcome: None,
        dry_run,
        message: None,
        exit_code: None,
        result: None,
        failed_task: None,
    });
    s = s.go(Phase::Executing, reason, why);
    if !dry_run {
        s = s.effect(Effect::Notify(Notice::AutoRemediation));
    }
    s.effect(Effect::CreateJob {
        attempt: n,
        dry_run,
    })
}

fn escalate(s: Step, reason: &'static str, why: impl Into<String>) -> Step {
    s.go(Phase::Escalated, reason, why)
        .effect(Effect::Notify(Notice::Escalated))
}

/// The next state of an incident. Pure: same inputs, same output.
pub fn next(
    status: Option<&IncidentStatus>,
    o: &Observed<'_>,
    gates: &Gates,
    now: Timestamp,
) -> Transition {
    let from = status.map_or(Phase::Pending, |s| s.phase);
    let mut t = step(status, o, gates, now);
    if let Some(job) = &o.unrecorded_job
        && t.status.phase == Phase::Cancelled
        && from != Phase::Cancelled
    {
        record_unrecorded_job(&mut t, job);
    }
    t
}

/// A cancel that met a Job created in the same moment: the operator may not delete Jobs (least
/// privilege), so instead of "cancelled before it ran" the trail records the attempt, and the
/// message and the (then Warning) Event name the Job for a human to check.
fn record_unrecorded_job(t: &mut Transition, job: &UnrecordedJob) {
    let note = format!(
        "Job {} (attempt {}) had been created in the same moment as the cancel and was not stopped: check what it did",
        job.job, job.attempt
    );
    t.status.attempts.push(Attempt {
        number: job.attempt,
        job: job.job.clone(),
        started_at: job.created.map(time),
        finished_at: None,
        outcome: None,
        dry_run: job.dry_run,
        message: Some(note.clone()),
        exit_code: None,
        result: None,
        failed_task: None,
    });
    let amend = |m: &mut String| {
        m.push_str("; ");
        m.push_str(&note);
    };
    if let Some(m) = t.status.message.as_mut() {
        amend(m);
    }
    if let Some(h) = t.status.history.last_mut() {
        amend(&mut h.message);
    }
    for e in &mut t.effects {
        if let Effect::Event {
            warning, message, ..
        } = e
        {
            *warning = true;
            amend(message);
        }
    }
}

fn step(
    status: Option<&IncidentStatus>,
    o: &Observed<'_>,
    gates: &Gates,
    now: Timestamp,
) -> Transition {
    let status = status.cloned().unwrap_or_default();
    let s = Step {
        from: status.phase,
        status,
        effects: Vec::new(),
        requeue: None,
        now,
    };
    let dry_run = o.dry_run || gates.dry_run;
    let entry = o.entry;

    match s.from {
        Phase::Pending => {
            if let Some(by) = &o.cancelled_by {
                return s
                    .go(
                        Phase::Cancelled,
                        r::CANCELLED,
                        format!("cancelled by {by} before a decision"),
                    )
                    .done();
            }
            if o.alert_resolved_at.is_some() {
                return s
                    .go(
                        Phase::Resolved,
                        r::SELF_RESOLVED,
                        "alert resolved before a decision was made",
                    )
                    .done();
            }
            // A decision already stored is never asked for again (invariant 4).
            let decided = o.new_decision.clone().or_else(|| s.status.decision.clone());
            match &decided {
                None => s.effect(Effect::Decide).done(),
                Some(d) => {
                    let mut s = s;
                    s.status.decision = Some(d.clone());
                    let (reason, msg) = match (&d.playbook, d.source) {
                        (Some(p), salve_api::DecisionSource::Rules) => {
                            (r::RULES_MATCHED, format!("rules chose {p}"))
                        }
                        (Some(p), salve_api::DecisionSource::Llm) => {
                            (r::LLM_SELECTED, format!("LLM chose {p}"))
                        }
                        (None, _) => {
                            // Nothing will act on it, so the decision and the escalation are
                            // recorded together: one write, one Event, one page.
                            let why = if d.validation.is_empty() {
                                "no remediation chosen".to_owned()
                            } else {
                                d.validation.clone()
                            };
                            return escalate(s, escalate_reason(d), why).done();
                        }
                    };
                    s.go(Phase::Decided, reason, msg).done()
                }
            }
        }

        Phase::Decided => {
            let Some(decision) = s.status.decision.clone() else {
                // Status lost its decision (edited by hand): decide again, from the start.
                let mut s = s;
                s.status.phase = Phase::Pending;
                return s.effect(Effect::Decide).done();
            };
            if let Some(by) = &o.cancelled_by {
                return s
                    .go(Phase::Cancelled, r::CANCELLED, format!("cancelled by {by}"))
                    .done();
            }
            let Some(playbook) = decision.playbook.as_deref() else {
                let why = if decision.validation.is_empty() {
                    "no remediation chosen".to_owned()
                } else {
                    decision.validation.clone()
                };
                return escalate(s, escalate_reason(&decision), why).done();
            };
            let Some(entry) = entry else {
                return escalate(
                    s,
                    r::INVALID_DECISION,
                    format!("catalog entry {playbook} no longer exists"),
                )
                .done();
            };
            if o.recent_occurrences >= gates.flap_threshold && gates.flap_threshold > 0 {
                return escalate(
                    s,
                    r::FLAPPING,
                    format!(
                        "alert fired {} times within the flap window: a human should look",
                        o.recent_occurrences
                    ),
                )
                .done();
            }
            // Risk always comes from the catalog entry, never from the decision's copy.
            match entry.risk {
                Risk::Low => start_attempt(
                    s,
                    o,
                    1,
                    dry_run,
                    r::LOW_RISK,
                    format!("low risk: running {playbook}"),
                )
                .done(),
                Risk::Medium => {
                    let window = entry
                        .cancel_window_seconds
                        .map_or(gates.cancel_window, |x| Duration::from_secs(x.into()));
                    let after = plus(now, window);
                    let mut s = s;
                    s.status.approval = Some(Approval {
                        execute_after: Some(time(after)),
                        ..Default::default()
                    });
                    s.go(
                        Phase::AwaitingApproval,
                        r::CANCEL_WINDOW,
                        format!(
                            "medium risk: {playbook} runs at {} unless cancelled",
                            seconds(after)
                        ),
                    )
                    .effect(Effect::Notify(Notice::CancelWindow))
                    .done()
                    .with_requeue(window)
                }
                Risk::High => {
                    let timeout = entry
                        .approval_timeout_seconds
                        .map_or(gates.approval_timeout, |x| Duration::from_secs(x.into()));
                    let deadline = plus(now, timeout);
                    let mut s = s;
                    s.status.approval = Some(Approval {
                        deadline: Some(time(deadline)),
                        ..Default::default()
                    });
                    s.go(
                        Phase::AwaitingApproval,
                        r::APPROVAL_REQUIRED,
                        format!(
                            "high risk: {playbook} waits for an approval until {}",
                            seconds(deadline)
                        ),
                    )
                    .effect(Effect::Notify(Notice::ApprovalRequired))
                    .done()
                    .with_requeue(timeout)
                }
            }
        }

        Phase::AwaitingApproval => {
            let playbook = s
                .status
                .decision
                .as_ref()
                .and_then(|d| d.playbook.clone())
                .unwrap_or_default();
            if let Some(by) = &o.cancelled_by {
                let mut s = s;
                let approval = s.status.approval.get_or_insert_with(Approval::default);
                approval.cancelled_by = Some(by.clone());
                approval.reason = o.human_reason.clone();
                return s
                    .go(
                        Phase::Cancelled,
                        r::CANCELLED,
                        format!("cancelled by {by}; {playbook} never ran"),
                    )
                    .done();
            }
            if o.alert_resolved_at.is_some() {
                return s
                    .go(
                        Phase::Resolved,
                        r::SELF_RESOLVED,
                        format!("alert resolved on its own; {playbook} never ran"),
                    )
                    .done();
            }
            let Some(entry) = entry else {
                return escalate(
                    s,
                    r::INVALID_DECISION,
                    format!("catalog entry {playbook} no longer exists"),
                )
                .done();
            };
            let approval = s.status.approval.clone().unwrap_or_default();
            let approved = |mut s: Step, by: &str| {
                let a = s.status.approval.get_or_insert_with(Approval::default);
                a.approved_by = Some(by.to_owned());
                a.approved_at = Some(time(now));
                a.reason = o.human_reason.clone();
                start_attempt(
                    s,
                    o,
                    1,
                    dry_run,
                    r::APPROVED,
                    format!("approved by {by}: running {playbook}"),
                )
            };
            match entry.risk {
                Risk::High => {
                    if let Some(by) = &o.approved_by {
                        return approved(s, by).done();
                    }
                    match approval.deadline {
                        Some(Time(d)) if now >= d => escalate(
                            s,
                            r::APPROVAL_TIMEOUT,
                            format!("nobody approved {playbook} by {d}"),
                        )
                        .done(),
                        Some(Time(d)) => s.wait(Some(until(now, d))).done(),
                        None => {
                            // Risk changed from medium to high in the catalog meanwhile: start the clock now.
                            let deadline = plus(now, gates.approval_timeout);
                            let mut s = s;
                            s.status.approval = Some(Approval {
                                deadline: Some(time(deadline)),
                                ..approval
                            });
                            s.stay(
                                format!(
                                    "high risk: waiting for approval until {}",
                                    seconds(deadline)
                                ),
                                Some(gates.approval_timeout),
                            )
                            .done()
                        }
                    }
                }
                Risk::Medium | Risk::Low => {
                    if let Some(by) = &o.approved_by {
                        return approved(s, by).done();
                    }
                    match approval.execute_after {
                        Some(Time(t)) if now < t => s.wait(Some(until(now, t))).done(),
                        _ => start_attempt(
                            s,
                            o,
                            1,
                            dry_run,
                            r::CANCEL_WINDOW,
                            format!("cancel window passed: running {playbook}"),
                        )
                        .done(),
                    }
                }
            }
        }

        Phase::Executing => {
            let n = s.status.attempts.last().map_or(0, |a| a.number);
            if n == 0 {
                // Executing without an attempt (status edited): start attempt 1.
                return start_attempt(
                    s,
                    o,
                    1,
                    dry_run,
                    r::LOW_RISK,
                    "starting attempt 1".to_owned(),
                )
                .done();
            }
            match &o.job {
                JobState::Missing if o.cancelled_by.is_some() => {
                    let by = o.cancelled_by.clone().unwrap_or_default();
                    s.go(
                        Phase::Cancelled,
                        r::CANCELLED,
                        format!("cancelled by {by} before attempt {n}'s Job existed"),
                    )
                    .done()
                }
                JobState::Missing => {
                    // The controller creates an attempt's Job before it writes the status that
                    // records the attempt, so a missing Job here was deleted (by a person, or
                    // by its TTL during a long outage). It may have run partly: re-creating it
                    // could run the remediation twice, so a human looks instead.
                    let mut s = s;
                    let job = s
                        .status
                        .attempts
                        .last()
                        .map(|a| a.job.clone())
                        .unwrap_or_default();
                    let why = format!(
                        "the Job {job} of attempt {n} disappeared before salve saw it finish; \
                         it may have run partly, so it is not created again"
                    );
                    finish(
                        &mut s.status,
                        now,
                        AttemptOutcome::Failed,
                        Some(why.clone()),
                        None,
                    );
                    escalate(s, r::JOB_MISSING, why).done()
                }
                JobState::Running => match &o.cancelled_by {
                    Some(by) => s
                        .stay(
                            format!(
                                "attempt {n} running; cancel by {by} noted: no further attempt"
                            ),
                            None,
                        )
                        .done(),
                    None => s.wait(None).done(),
                },
                JobState::Succeeded { finished } => {
                    let mut s = s;
                    let dry = finish(
                        &mut s.status,
                        *finished,
                        AttemptOutcome::Succeeded,
                        None,
                        o.runner.as_ref(),
                    );
                    if dry {
                        return s
                            .go(
                                Phase::Resolved,
                                r::DRY_RUN_COMPLETE,
                                "dry run finished: nothing was changed, nobody paged",
                            )
                            .done();
                    }
                    let wait = entry.map_or(0, |e| e.verify.stabilization_seconds);
                    s.go(
                        Phase::Verifying,
                        r::JOB_SUCCEEDED,
                        format!(
                            "attempt {n} succeeded; verifying after {wait}s that the alert cleared (Prometheus, else Alertmanager, else the resolved notification)"
                        ),
                    )
                    .done()
                    .with_requeue(Duration::from_secs(wait.into()))
                }
                JobState::Failed {
                    finished,
                    reason,
                    timed_out,
                } => {
                    let mut s = s;
                    let outcome = if *timed_out {
                        AttemptOutcome::TimedOut
                    } else {
                        AttemptOutcome::Failed
                    };
                    let dry = finish(
                        &mut s.status,
                        *finished,
                        outcome,
                        Some(reason.clone()),
                        o.runner.as_ref(),
                    );
                    // The runner's exit code says whether running again can help; a run cut
                    // off by its deadline left the target half-done, so a human looks first.
                    let after = match (&o.runner, *timed_out) {
                        (Some(run), _) => after_failure(run.exit_code),
                        (None, true) => AfterFailure::Escalate(r::REMEDIATION_TERMINATED),
                        (None, false) => AfterFailure::Retry,
                    };
                    let why = match &o.runner {
                        Some(run) => format!(
                            "attempt {n} failed: {reason}; runner exit {}{}{}",
                            run.exit_code,
                            run.result
                                .as_deref()
                                .map(|x| format!(" ({x})"))
                                .unwrap_or_default(),
                            run.failed_task
                                .as_deref()
                                .map(|t| format!(" at task \"{t}\""))
                                .unwrap_or_default(),
                        ),
                        None => format!("attempt {n} failed: {reason}"),
                    };
                    retry_or_escalate(
                        s,
                        o,
                        n,
                        attempts_allowed(entry),
                        dry,
                        after,
                        r::JOB_FAILED,
                        why,
                    )
                    .done()
                }
            }
        }

        Phase::Verifying => {
            let n = s.status.attempts.last().map_or(1, |a| a.number);
            let finished = s
                .status
                .attempts
                .last()
                .and_then(|a| a.finished_at.clone())
                .map_or(now, |t| t.0);
            let wait =
                Duration::from_secs(entry.map_or(0, |e| e.verify.stabilization_seconds).into());
            let verify_at = plus(finished, wait);
            if now < verify_at {
                return s.wait(Some(until(now, verify_at))).done();
            }
            let reported_resolved = o.alert_resolved_at.is_some();
            match (reported_resolved, o.verification) {
                (true, _) | (false, Some(Verification::Cleared)) => s
                    .go(
                        Phase::Resolved,
                        r::VERIFIED,
                        format!("alert cleared after attempt {n}"),
                    )
                    .effect(Effect::Notify(Notice::Resolved))
                    .done(),
                (false, Some(Verification::StillFiring)) => {
                    let mut s = s;
                    if let Some(a) = s.status.attempts.last_mut() {
                        a.outcome = Some(AttemptOutcome::StillFiring);
                    }
                    let why = format!("alert still firing after attempt {n}");
                    retry_or_escalate(
                        s,
                        o,
                        n,
                        attempts_allowed(entry),
                        false,
                        AfterFailure::Retry,
                        r::STILL_FIRING,
                        why,
                    )
                    .done()
                }
                (false, Some(Verification::Unknown) | None) => {
                    let give_up = plus(verify_at, gates.verify_timeout);
                    if now >= give_up {
                        escalate(
                            s,
                            r::STILL_FIRING,
                            "could not verify that the alert cleared: no source answered",
                        )
                        .done()
                    } else {
                        // The message of the step into Verifying says what is awaited; a
                        // status write here would only race the resolved record.
                        s.wait(Some(Duration::from_secs(30))).done()
                    }
                }
            }
        }

        Phase::Resolved | Phase::Escalated | Phase::Cancelled => s.done(),
    }
}

/// The reason an escalate decision carries: the engine prefixes its validation outcome with
/// a PascalCase kind (`NoCandidate: …`, `InvalidDecision: …`).
fn escalate_reason(d: &Decision) -> &'static str {
    // The engine writes `Reason: detail` into `validation` for every escalation it makes.
    let head = d.validation.split(':').next().unwrap_or_default().trim();
    [
        r::NO_CANDIDATE,
        r::INVALID_DECISION,
        r::LLM_UNAVAILABLE,
        r::LLM_DISABLED,
        r::TOKEN_BUDGET_EXCEEDED,
        r::PROMPT_TOO_LARGE,
    ]
    .into_iter()
    .find(|known| head.eq_ignore_ascii_case(known))
    .unwrap_or(if head.to_ascii_lowercase().starts_with("invalid") {
        r::INVALID_DECISION
    } else {
        r::LLM_ESCALATED
    })
}

/// Marks the last attempt finished; returns whether it was a dry run.
fn finish(
    status: &mut IncidentStatus,
    at: Timestamp,
    outcome: AttemptOutcome,
    message: Option<String>,
    runner: Option<&RunnerReport>,
) -> bool {
    match status.attempts.last_mut() {
        Some(a) => {
            a.finished_at = Some(time(at));
            a.outcome = Some(outcome);
            let said = runner.and_then(|r| r.message.clone());
            a.message = match (message, said) {
                (Some(m), Some(r)) => Some(bound(&format!("{m} — runner: {r}"), 2048)),
                (m, r) => m.or(r).map(|x| bound(&x, 2048)),
            };
            a.exit_code = runner.map(|r| r.exit_code);
            a.result = runner.and_then(|r| r.result.clone());
            a.failed_task = runner.and_then(|r| r.failed_task.clone());
            a.dry_run
        }
        None => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn retry_or_escalate(
    s: Step,
    o: &Observed<'_>,
    n: u32,
    allowed: u32,
    dry_run: bool,
    after: AfterFailure,
    reason: &'static str,
    why: String,
) -> Step {
    if dry_run {
        return s.go(
            Phase::Resolved,
            r::DRY_RUN_COMPLETE,
            format!("{why} (dry run: nothing changed)"),
        );
    }
    if let Some(by) = &o.cancelled_by {
        let msg = format!("{why}; cancelled by {by}, no further attempt");
        return s.go(Phase::Cancelled, r::CANCELLED, msg);
    }
    if let AfterFailure::Escalate(not_retryable) = after {
        return escalate(
            s,
            not_retryable,
            format!("{why}; not retried: running again cannot help or is unsafe"),
        );
    }
    if n < allowed {
        let mut s = start_attempt(
            s,
            o,
            n + 1,
            false,
            reason,
            format!("{why}; starting attempt {}", n + 1),
        );
        if s.status.phase != Phase::Executing {
            // Held back by a limit: stay, and say so.
            s.status.message = Some(format!(
                "{why}; attempt {} {}",
                n + 1,
                s.status.message.clone().unwrap_or_default()
            ));
        }
        return s;
    }
    escalate(
        s,
        r::ATTEMPTS_EXHAUSTED,
        format!("{why}; no attempts left ({allowed} allowed)"),
    )
}

impl Transition {
    fn with_requeue(mut self, d: Duration) -> Self {
        self.requeue = Some(d);
        self
    }
}

/// At most `max` bytes of `s`, cut on a char boundary.
fn bound(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
