//! Every edge of the state machine in DESIGN.md, as plain tests of the pure `next` function.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salve_api::{
    Approval, Attempt, AttemptOutcome, CatalogEntry, Decision, DecisionSource, IncidentStatus,
    Phase, Risk,
};
use salve_core::job::contract::RunnerReport;
use salve_core::{
    Effect, Gates, Hold, JobState, Notice, Observed, Transition, UnrecordedJob, Verification, next,
};
use serde_json::json;

const INC: &str = "nodefilesystemspacefillingup-0914bba24938a788-3b1c8a2e";

fn t0() -> Timestamp {
    "2026-11-28T01:00:00Z".parse().unwrap()
}
fn at(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn entry(risk: Risk) -> CatalogEntry {
    serde_json::from_value(json!({
        "name": "clear_disk_space",
        "description": "free disk",
        "risk": risk,
        "playbook": "clear-disk.yml",
        "parameters": {"type": "object"},
        "match": {"alertnames": ["NodeFilesystemSpaceFillingUp"]},
        "maxAttempts": 2,
        "verify": {"stabilizationSeconds": 60}
    }))
    .unwrap()
}

fn decision(playbook: Option<&str>) -> Decision {
    Decision {
        playbook: playbook.map(str::to_owned),
        catalog: Some("article".into()),
        params: Some(json!({"target_hosts": ["web-3"], "min_free_gb": 10})),
        risk: Some(Risk::Low),
        reasoning: "one candidate, params from labels".into(),
        source: DecisionSource::Rules,
        model: None,
        endpoint: None,
        prompt_hash: None,
        prompt_tokens: None,
        completion_tokens: None,
        latency_ms: 1,
        raw_answer: None,
        validation: if playbook.is_some() {
            "valid".into()
        } else {
            "NoCandidate: no valid catalog entry matches alert \"X\"".into()
        },
        decided_at: Time(t0()),
    }
}

fn status(phase: Phase) -> IncidentStatus {
    IncidentStatus {
        phase,
        decision: Some(decision(Some("clear_disk_space"))),
        ..Default::default()
    }
}

fn with_attempts(mut s: IncidentStatus, n: u32, finished: Option<Timestamp>) -> IncidentStatus {
    for i in 1..=n {
        s.attempts.push(Attempt {
            number: i,
            job: salve_api::names::job_name(INC, i),
            started_at: Some(Time(t0())),
            finished_at: if i == n {
                finished.map(Time)
            } else {
                Some(Time(t0()))
            },
            outcome: if i < n {
                Some(AttemptOutcome::Failed)
            } else {
                None
            },
            dry_run: false,
            message: None,
            exit_code: None,
            result: None,
            failed_task: None,
        });
    }
    s
}

fn obs(e: &CatalogEntry) -> Observed<'_> {
    Observed {
        incident: INC,
        entry: Some(e),
        ..Default::default()
    }
}

fn run(s: Option<&IncidentStatus>, o: &Observed<'_>, now: Timestamp) -> Transition {
    next(s, o, &Gates::default(), now)
}

fn creates_job(t: &Transition) -> Option<(u32, bool)> {
    t.effects.iter().find_map(|e| match e {
        Effect::CreateJob { attempt, dry_run } => Some((*attempt, *dry_run)),
        _ => None,
    })
}

fn notifies(t: &Transition, n: Notice) -> bool {
    t.effects.contains(&Effect::Notify(n))
}

// ---------------------------------------------------------------------------- Pending

#[test]
fn a_new_incident_asks_for_a_decision_and_nothing_else() {
    let e = entry(Risk::Low);
    let t = run(None, &obs(&e), t0());
    assert_eq!(t.status.phase, Phase::Pending);
    assert_eq!(t.effects, vec![Effect::Decide]);
}

#[test]
fn a_decision_is_stored_before_anything_acts_on_it() {
    let e = entry(Risk::Low);
    let o = Observed {
        new_decision: Some(decision(Some("clear_disk_space"))),
        ..obs(&e)
    };
    let t = run(None, &o, t0());
    assert_eq!(t.status.phase, Phase::Decided);
    assert_eq!(
        t.status.decision.as_ref().unwrap().playbook.as_deref(),
        Some("clear_disk_space")
    );
    assert_eq!(
        creates_job(&t),
        None,
        "no Job in the same step as the decision"
    );
    assert_eq!(t.status.history.len(), 1);
    assert_eq!(t.status.history[0].reason, "RulesMatched");
}

#[test]
fn a_stored_decision_is_never_asked_for_again() {
    let e = entry(Risk::Low);
    for phase in Phase::ALL {
        if phase == Phase::Pending {
            continue;
        }
        let s = status(phase);
        let t = run(Some(&s), &obs(&e), t0());
        assert!(
            !t.effects.contains(&Effect::Decide),
            "{phase} asked again: {:?}",
            t.effects
        );
    }
}

#[test]
fn an_alert_resolved_before_a_decision_resolves_without_asking() {
    let e = entry(Risk::Low);
    let o = Observed {
        alert_resolved_at: Some(t0()),
        ..obs(&e)
    };
    let t = run(None, &o, t0());
    assert_eq!(t.status.phase, Phase::Resolved);
    assert_eq!(t.status.reason.as_deref(), Some("SelfResolved"));
    assert!(!t.effects.contains(&Effect::Decide));
}

#[test]
fn a_cancel_before_a_decision_cancels() {
    let e = entry(Risk::Low);
    let o = Observed {
        cancelled_by: Some("alice".into()),
        ..obs(&e)
    };
    assert_eq!(run(None, &o, t0()).status.phase, Phase::Cancelled);
}

// ---------------------------------------------------------------------------- Decided

#[test]
fn low_risk_executes_at_once() {
    let e = entry(Risk::Low);
    let t = run(Some(&status(Phase::Decided)), &obs(&e), t0());
    assert_eq!(t.status.phase, Phase::Executing);
    assert_eq!(creates_job(&t), Some((1, false)));
    assert_eq!(t.status.attempts.len(), 1);
    assert_eq!(t.status.attempts[0].job, salve_api::names::job_name(INC, 1));
    assert!(notifies(&t, Notice::AutoRemediation));
}

#[test]
fn medium_risk_waits_for_the_cancel_window() {
    let e = entry(Risk::Medium);
    let t = run(Some(&status(Phase::Decided)), &obs(&e), t0());
    assert_eq!(t.status.phase, Phase::AwaitingApproval);
    assert_eq!(creates_job(&t), None);
    assert_eq!(
        t.status.approval.as_ref().unwrap().execute_after,
        Some(Time(at(300)))
    );
    assert_eq!(t.requeue, Some(Duration::from_secs(300)));
    assert!(notifies(&t, Notice::CancelWindow));
}

#[test]
fn messages_name_times_to_the_second_for_people() {
    let e = entry(Risk::Medium);
    let now = t0()
        .checked_add(SignedDuration::from_nanos(74_792_219))
        .unwrap();
    let t = run(Some(&status(Phase::Decided)), &obs(&e), now);
    let msg = t.status.message.clone().unwrap();
    let expected = format!("runs at {} unless cancelled", at(300));
    assert!(msg.ends_with(&expected), "{msg}");
    assert!(!msg.contains(".074"), "{msg}");
}

#[test]
fn an_entry_can_override_the_cancel_window() {
    let mut e = entry(Risk::Medium);
    e.cancel_window_seconds = Some(30);
    let t = run(Some(&status(Phase::Decided)), &obs(&e), t0());
    assert_eq!(t.status.approval.unwrap().execute_after, Some(Time(at(30))));
}

#[test]
fn high_risk_waits_for_an_approval_with_a_deadline() {
    let e = entry(Risk::High);
    let t = run(Some(&status(Phase::Decided)), &obs(&e), t0());
    assert_eq!(t.status.phase, Phase::AwaitingApproval);
    assert_eq!(t.status.reason.as_deref(), Some("ApprovalRequired"));
    assert_eq!(
        t.status.approval.as_ref().unwrap().deadline,
        Some(Time(at(3600)))
    );
    assert_eq!(creates_job(&t), None);
    assert!(notifies(&t, Notice::ApprovalRequired));
}

#[test]
fn risk_comes_from_the_catalog_entry_not_from_the_decision() {
    // The decision claims low risk, the reviewed entry says high: high wins.
    let e = entry(Risk::High);
    let mut s = status(Phase::Decided);
    s.decision.as_mut().unwrap().risk = Some(Risk::Low);
    let t = run(Some(&s), &obs(&e), t0());
    assert_eq!(t.status.phase, Phase::AwaitingApproval);
    assert_eq!(creates_job(&t), None);
}

#[test]
fn an_escalate_decision_escalates_with_its_reason() {
    let e = entry(Risk::Low);
    let mut s = status(Phase::Decided);
    s.decision = Some(decision(None));
    let t = run(Some(&s), &obs(&e), t0());
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("NoCandidate"));
    assert!(
        t.status
            .message
            .as_ref()
            .unwrap()
            .contains("no valid catalog entry")
    );
    assert!(notifies(&t, Notice::Escalated));
    assert!(
        t.effects
            .iter()
            .any(|e| matches!(e, Effect::Event { warning: true, .. }))
    );
}

#[test]
fn a_decision_whose_entry_left_the_catalog_escalates() {
    let o = Observed {
        incident: INC,
        entry: None,
        ..Default::default()
    };
    let t = run(Some(&status(Phase::Decided)), &o, t0());
    assert_eq!(t.status.phase, Phase::Escalated);
    assert!(t.status.message.unwrap().contains("no longer exists"));
}

#[test]
fn a_flapping_alert_escalates_instead_of_looping() {
    let e = entry(Risk::Low);
    let o = Observed {
        recent_occurrences: 3,
        ..obs(&e)
    };
    let t = run(Some(&status(Phase::Decided)), &o, t0());
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("Flapping"));
    assert_eq!(creates_job(&t), None);
}

#[test]
fn limits_hold_a_job_back_visibly_in_status() {
    let e = entry(Risk::Low);
    for hold in [
        Hold::ConcurrencyCap { running: 5, cap: 5 },
        Hold::TargetLocked {
            target: "web-3".into(),
            holder: "other".into(),
        },
        Hold::Cooldown { until: at(120) },
    ] {
        let o = Observed {
            hold: Some(hold.clone()),
            ..obs(&e)
        };
        let t = run(Some(&status(Phase::Decided)), &o, t0());
        assert_eq!(t.status.phase, Phase::Decided, "{hold:?}");
        assert_eq!(creates_job(&t), None);
        assert!(
            t.status.message.as_ref().unwrap().starts_with("waiting:"),
            "{:?}",
            t.status.message
        );
        assert!(t.requeue.is_some());
    }
}

#[test]
fn global_dry_run_runs_in_check_mode_and_pages_nobody() {
    let e = entry(Risk::Low);
    let gates = Gates {
        dry_run: true,
        ..Gates::default()
    };
    let t = next(Some(&status(Phase::Decided)), &obs(&e), &gates, t0());
    assert_eq!(creates_job(&t), Some((1, true)));
    assert!(!notifies(&t, Notice::AutoRemediation));
}

// ---------------------------------------------------------------------------- AwaitingApproval

fn awaiting(risk: Risk) -> IncidentStatus {
    let mut s = status(Phase::AwaitingApproval);
    s.approval = Some(match risk {
        Risk::High => Approval {
            deadline: Some(Time(at(3600))),
            ..Default::default()
        },
        Risk::Medium | Risk::Low => Approval {
            execute_after: Some(Time(at(300))),
            ..Default::default()
        },
    });
    s
}

#[test]
fn medium_risk_never_runs_before_its_window_ends() {
    let e = entry(Risk::Medium);
    let t = run(Some(&awaiting(Risk::Medium)), &obs(&e), at(299));
    assert_eq!(t.status.phase, Phase::AwaitingApproval);
    assert_eq!(creates_job(&t), None);
    assert_eq!(t.requeue, Some(Duration::from_secs(1)));
}

#[test]
fn medium_risk_runs_when_the_window_passes_without_cancel() {
    let e = entry(Risk::Medium);
    let t = run(Some(&awaiting(Risk::Medium)), &obs(&e), at(300));
    assert_eq!(t.status.phase, Phase::Executing);
    assert_eq!(creates_job(&t), Some((1, false)));
}

#[test]
fn a_cancelled_incident_never_runs() {
    for risk in [Risk::Medium, Risk::High] {
        let e = entry(risk);
        let o = Observed {
            cancelled_by: Some("alice".into()),
            approved_by: Some("alice".into()),
            human_reason: Some("maintenance".into()),
            ..obs(&e)
        };
        let t = run(Some(&awaiting(risk)), &o, at(10_000));
        assert_eq!(t.status.phase, Phase::Cancelled);
        assert_eq!(creates_job(&t), None);
        let a = t.status.approval.unwrap();
        assert_eq!(a.cancelled_by.as_deref(), Some("alice"));
        assert_eq!(a.reason.as_deref(), Some("maintenance"));
    }
}

#[test]
fn high_risk_never_runs_without_an_approval_even_after_any_wait() {
    let e = entry(Risk::High);
    for now in [at(0), at(299), at(300), at(3599)] {
        let t = run(Some(&awaiting(Risk::High)), &obs(&e), now);
        assert_eq!(creates_job(&t), None, "at {now}");
        assert_eq!(t.status.phase, Phase::AwaitingApproval);
    }
}

#[test]
fn high_risk_runs_once_approved_and_records_the_approver() {
    let e = entry(Risk::High);
    let o = Observed {
        approved_by: Some("alice".into()),
        ..obs(&e)
    };
    let t = run(Some(&awaiting(Risk::High)), &o, at(60));
    assert_eq!(t.status.phase, Phase::Executing);
    assert_eq!(creates_job(&t), Some((1, false)));
    let a = t.status.approval.unwrap();
    assert_eq!(a.approved_by.as_deref(), Some("alice"));
    assert_eq!(a.approved_at, Some(Time(at(60))));
}

#[test]
fn an_approval_timeout_escalates() {
    let e = entry(Risk::High);
    let t = run(Some(&awaiting(Risk::High)), &obs(&e), at(3600));
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("ApprovalTimeout"));
}

#[test]
fn an_alert_that_resolves_while_waiting_resolves_and_nothing_runs() {
    for risk in [Risk::Medium, Risk::High] {
        let e = entry(risk);
        let o = Observed {
            alert_resolved_at: Some(at(5)),
            ..obs(&e)
        };
        let t = run(Some(&awaiting(risk)), &o, at(400));
        assert_eq!(t.status.phase, Phase::Resolved);
        assert_eq!(t.status.reason.as_deref(), Some("SelfResolved"));
        assert_eq!(creates_job(&t), None);
    }
}

// ---------------------------------------------------------------------------- Executing

#[test]
fn a_job_that_disappears_is_never_created_again_a_human_looks() {
    // Executing is only recorded after the attempt's Job was created, so a missing Job was
    // deleted; it may have run partly.
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 1, None);
    let t = run(
        Some(&s),
        &Observed {
            job: JobState::Missing,
            ..obs(&e)
        },
        t0(),
    );
    assert_eq!(creates_job(&t), None);
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("JobMissing"));
    assert_eq!(t.status.attempts.len(), 1);
    assert_eq!(t.status.attempts[0].outcome, Some(AttemptOutcome::Failed));
    assert!(notifies(&t, Notice::Escalated));
}

#[test]
fn a_running_job_just_waits() {
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 1, None);
    let t = run(
        Some(&s),
        &Observed {
            job: JobState::Running,
            ..obs(&e)
        },
        t0(),
    );
    assert_eq!(t.status.phase, Phase::Executing);
    assert_eq!(creates_job(&t), None);
}

#[test]
fn a_succeeded_job_goes_to_verifying_after_stabilization() {
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 1, None);
    let t = run(
        Some(&s),
        &Observed {
            job: JobState::Succeeded { finished: at(10) },
            ..obs(&e)
        },
        at(11),
    );
    assert_eq!(t.status.phase, Phase::Verifying);
    assert_eq!(
        t.status.attempts[0].outcome,
        Some(AttemptOutcome::Succeeded)
    );
    assert_eq!(t.status.attempts[0].finished_at, Some(Time(at(10))));
    assert_eq!(t.requeue, Some(Duration::from_secs(60)));
}

#[test]
fn a_failed_job_with_attempts_left_starts_the_next_attempt() {
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 1, None);
    let o = Observed {
        job: JobState::Failed {
            finished: at(5),
            reason: "BackoffLimitExceeded".into(),
            timed_out: false,
        },
        ..obs(&e)
    };
    let t = run(Some(&s), &o, at(6));
    assert_eq!(t.status.phase, Phase::Executing);
    assert_eq!(creates_job(&t), Some((2, false)));
    assert_eq!(t.status.attempts.len(), 2);
    assert_eq!(t.status.attempts[0].outcome, Some(AttemptOutcome::Failed));
}

#[test]
fn a_failed_job_with_no_attempts_left_escalates() {
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 2, None);
    let o = Observed {
        job: JobState::Failed {
            finished: at(5),
            reason: "BackoffLimitExceeded".into(),
            timed_out: false,
        },
        ..obs(&e)
    };
    let t = run(Some(&s), &o, at(6));
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("AttemptsExhausted"));
    assert_eq!(t.status.attempts[1].outcome, Some(AttemptOutcome::Failed));
    assert_eq!(creates_job(&t), None);
}

fn failed_job() -> JobState {
    JobState::Failed {
        finished: at(5),
        reason: "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
        timed_out: false,
    }
}

#[test]
fn a_job_cut_off_by_its_deadline_escalates_even_with_attempts_left() {
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 1, None);
    let o = Observed {
        job: JobState::Failed {
            finished: at(5),
            reason: "DeadlineExceeded".into(),
            timed_out: true,
        },
        ..obs(&e)
    };
    let t = run(Some(&s), &o, at(6));
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("RemediationTerminated"));
    assert_eq!(t.status.attempts[0].outcome, Some(AttemptOutcome::TimedOut));
    assert_eq!(creates_job(&t), None);
    assert!(notifies(&t, Notice::Escalated));
}

#[test]
fn runner_exit_codes_decide_between_retry_and_escalation() {
    // docs/job-contract.md: 3, 4, 64, 143 never retry; 2, 5, 6, 70 and unknown codes do.
    let e = entry(Risk::Low);
    for (code, want) in [
        (2, None),
        (5, None),
        (6, None),
        (70, None),
        (137, None),
        (3, Some("ParamsRejected")),
        (4, Some("PreCheckRefused")),
        (64, Some("JobContractError")),
        (143, Some("RemediationTerminated")),
    ] {
        let s = with_attempts(status(Phase::Executing), 1, None);
        let o = Observed {
            job: failed_job(),
            runner: Some(RunnerReport {
                exit_code: code,
                result: Some("whatever".into()),
                failed_task: Some("Pre-check - unit is installed".into()),
                message: Some("unit foo.service is not installed on web-3".into()),
            }),
            ..obs(&e)
        };
        let t = run(Some(&s), &o, at(6));
        let a = &t.status.attempts[0];
        assert_eq!(a.exit_code, Some(code));
        assert_eq!(
            a.failed_task.as_deref(),
            Some("Pre-check - unit is installed")
        );
        assert!(
            a.message
                .as_deref()
                .unwrap()
                .contains("not installed on web-3"),
            "{a:?}"
        );
        match want {
            None => {
                assert_eq!(t.status.phase, Phase::Executing, "exit {code}");
                assert_eq!(creates_job(&t), Some((2, false)), "exit {code}");
            }
            Some(reason) => {
                assert_eq!(t.status.phase, Phase::Escalated, "exit {code}");
                assert_eq!(t.status.reason.as_deref(), Some(reason), "exit {code}");
                assert_eq!(creates_job(&t), None, "exit {code}");
                let msg = t.status.message.as_deref().unwrap();
                assert!(msg.contains(&format!("runner exit {code}")), "{msg}");
                assert!(msg.contains("Pre-check - unit is installed"), "{msg}");
            }
        }
    }
}

#[test]
fn a_refused_dry_run_is_recorded_and_pages_nobody() {
    let e = entry(Risk::Low);
    let mut s = with_attempts(status(Phase::Executing), 1, None);
    s.attempts[0].dry_run = true;
    let o = Observed {
        job: failed_job(),
        runner: Some(RunnerReport {
            exit_code: 4,
            result: Some("refused".into()),
            ..Default::default()
        }),
        ..obs(&e)
    };
    let t = run(Some(&s), &o, at(6));
    assert_eq!(t.status.phase, Phase::Resolved);
    assert_eq!(t.status.reason.as_deref(), Some("DryRunComplete"));
    assert_eq!(t.status.attempts[0].result.as_deref(), Some("refused"));
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::Notify(_))));
}

#[test]
fn a_job_that_cannot_be_built_escalates_instead_of_looping() {
    let e = entry(Risk::Low);
    let s = status(Phase::Decided);
    let o = Observed {
        job_invalid: Some("params Secret would exceed 1 MiB".into()),
        ..obs(&e)
    };
    let t = run(Some(&s), &o, t0());
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("JobInvalid"));
    assert_eq!(creates_job(&t), None);
    assert!(t.status.attempts.is_empty());
}

#[test]
fn every_engine_escalation_reason_reaches_status() {
    let e = entry(Risk::Low);
    for reason in [
        "NoCandidate",
        "InvalidDecision",
        "LlmUnavailable",
        "LlmDisabled",
        "TokenBudgetExceeded",
        "PromptTooLarge",
    ] {
        let mut s = status(Phase::Decided);
        let mut d = decision(None);
        d.validation = format!("{reason}: detail");
        s.decision = Some(d);
        let t = run(Some(&s), &obs(&e), t0());
        assert_eq!(t.status.phase, Phase::Escalated);
        assert_eq!(t.status.reason.as_deref(), Some(reason));
    }
    // An LLM that chose to escalate (validation "valid") keeps the generic reason.
    let mut s = status(Phase::Decided);
    s.decision = Some(decision(None));
    s.decision.as_mut().unwrap().validation = "valid".into();
    let t = run(Some(&s), &obs(&e), t0());
    assert_eq!(t.status.reason.as_deref(), Some("LlmEscalated"));
}

#[test]
fn the_runner_report_is_parsed_bounded_and_never_trusted_blindly() {
    let full = r#"{"status": "not_fixed", "exitCode": 5, "failedTask": "Verify - free space",
        "message": "/ on web-3 still has only 0.8 GiB"}"#;
    let r = RunnerReport::parse(5, Some(full));
    assert_eq!(r.exit_code, 5);
    assert_eq!(r.result.as_deref(), Some("not_fixed"));
    assert_eq!(r.failed_task.as_deref(), Some("Verify - free space"));
    assert_eq!(
        r.message.as_deref(),
        Some("/ on web-3 still has only 0.8 GiB")
    );
    // The exit code comes from the container status, not from the message.
    assert_eq!(RunnerReport::parse(2, Some(full)).exit_code, 2);
    // Not JSON: kept as text. Empty: nothing.
    let r = RunnerReport::parse(70, Some("Traceback (most recent call last):\x1b[31m"));
    assert_eq!(r.result, None);
    assert!(r.message.unwrap().starts_with("Traceback"));
    assert_eq!(
        RunnerReport::parse(1, Some("  ")),
        RunnerReport {
            exit_code: 1,
            ..Default::default()
        }
    );
    assert_eq!(RunnerReport::parse(1, None).message, None);
    // JSON that is not an object, wrong types, and oversized strings.
    assert_eq!(
        RunnerReport::parse(2, Some("[1,2]")).message.as_deref(),
        Some("[1,2]")
    );
    let r = RunnerReport::parse(2, Some(r#"{"status": 7, "failedTask": ["x"]}"#));
    assert_eq!((r.result, r.failed_task), (None, None));
    let huge = format!(
        r#"{{"status": "{}", "message": "{}"}}"#,
        "é".repeat(100),
        "x".repeat(100_000)
    );
    let r = RunnerReport::parse(2, Some(&huge));
    assert!(r.result.unwrap().len() <= 32);
    assert!(r.message.unwrap().len() <= 1024);
}

#[test]
fn a_dry_run_finishes_without_verification_or_paging() {
    let e = entry(Risk::Low);
    let mut s = with_attempts(status(Phase::Executing), 1, None);
    s.attempts[0].dry_run = true;
    let t = run(
        Some(&s),
        &Observed {
            job: JobState::Succeeded { finished: at(3) },
            ..obs(&e)
        },
        at(3),
    );
    assert_eq!(t.status.phase, Phase::Resolved);
    assert_eq!(t.status.reason.as_deref(), Some("DryRunComplete"));
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::Notify(_))));
}

// ---------------------------------------------------------------------------- Verifying

fn verifying(attempts: u32) -> IncidentStatus {
    let mut s = with_attempts(status(Phase::Verifying), attempts, Some(at(0)));
    s.attempts.last_mut().unwrap().outcome = Some(AttemptOutcome::Succeeded);
    s
}

#[test]
fn verification_waits_for_stabilization() {
    let e = entry(Risk::Low);
    let o = Observed {
        verification: Some(Verification::Cleared),
        ..obs(&e)
    };
    let t = run(Some(&verifying(1)), &o, at(59));
    assert_eq!(t.status.phase, Phase::Verifying);
    assert_eq!(t.requeue, Some(Duration::from_secs(1)));
}

#[test]
fn a_cleared_alert_resolves() {
    let e = entry(Risk::Low);
    let o = Observed {
        verification: Some(Verification::Cleared),
        ..obs(&e)
    };
    let t = run(Some(&verifying(1)), &o, at(60));
    assert_eq!(t.status.phase, Phase::Resolved);
    assert_eq!(t.status.reason.as_deref(), Some("Verified"));
    assert!(notifies(&t, Notice::Resolved));
}

#[test]
fn a_resolved_webhook_counts_as_cleared() {
    let e = entry(Risk::Low);
    let o = Observed {
        alert_resolved_at: Some(at(30)),
        ..obs(&e)
    };
    let t = run(Some(&verifying(1)), &o, at(60));
    assert_eq!(t.status.phase, Phase::Resolved);
}

#[test]
fn still_firing_with_attempts_left_retries_once() {
    let e = entry(Risk::Low);
    let o = Observed {
        verification: Some(Verification::StillFiring),
        ..obs(&e)
    };
    let t = run(Some(&verifying(1)), &o, at(60));
    assert_eq!(t.status.phase, Phase::Executing);
    assert_eq!(creates_job(&t), Some((2, false)));
    assert_eq!(
        t.status.attempts[0].outcome,
        Some(AttemptOutcome::StillFiring)
    );
}

#[test]
fn still_firing_with_no_attempts_left_escalates() {
    let e = entry(Risk::Low);
    let o = Observed {
        verification: Some(Verification::StillFiring),
        ..obs(&e)
    };
    let t = run(Some(&verifying(2)), &o, at(60));
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("AttemptsExhausted"));
    assert!(notifies(&t, Notice::Escalated));
}

#[test]
fn an_unverifiable_alert_escalates_after_the_verify_timeout() {
    let e = entry(Risk::Low);
    let o = Observed {
        verification: Some(Verification::Unknown),
        ..obs(&e)
    };
    let wait = run(Some(&verifying(1)), &o, at(60 + 599));
    assert_eq!(wait.status.phase, Phase::Verifying);
    // Waiting costs no status write: the status is the one the step into Verifying wrote.
    assert_eq!(wait.status, verifying(1));
    assert!(wait.effects.is_empty());
    assert_eq!(wait.requeue, Some(Duration::from_secs(30)));
    let t = run(Some(&verifying(1)), &o, at(60 + 600));
    assert_eq!(t.status.phase, Phase::Escalated);
}

// ---------------------------------------------------------------------------- terminal + invariants

#[test]
fn terminal_phases_never_change_or_act() {
    let e = entry(Risk::Low);
    for phase in [Phase::Resolved, Phase::Escalated, Phase::Cancelled] {
        let o = Observed {
            approved_by: Some("alice".into()),
            job: JobState::Failed {
                finished: at(1),
                reason: "x".into(),
                timed_out: false,
            },
            verification: Some(Verification::StillFiring),
            ..obs(&e)
        };
        let s = status(phase);
        let t = run(Some(&s), &o, at(100_000));
        assert_eq!(t.status, s);
        assert!(t.effects.is_empty());
        assert!(phase.is_terminal());
    }
}

#[test]
fn history_is_bounded() {
    let e = entry(Risk::Low);
    let mut s = status(Phase::Decided);
    for _ in 0..60 {
        s.history.push(salve_api::HistoryEntry {
            at: Time(t0()),
            from: Phase::Pending,
            to: Phase::Decided,
            reason: "X".into(),
            message: String::new(),
        });
    }
    let t = run(Some(&s), &obs(&e), t0());
    assert_eq!(t.status.history.len(), salve_api::incident::MAX_HISTORY);
    assert_eq!(t.status.history.last().unwrap().to, Phase::Executing);
}

/// Exhaustive sweep: from every phase, with every combination of observations, a Job is only
/// ever created when the gates allow it (invariant 2 of DESIGN.md).
#[test]
fn no_combination_of_observations_runs_a_job_the_gates_forbid() {
    let jobs = [
        JobState::Missing,
        JobState::Running,
        JobState::Succeeded { finished: at(0) },
        JobState::Failed {
            finished: at(0),
            reason: "x".into(),
            timed_out: false,
        },
    ];
    for risk in [Risk::Low, Risk::Medium, Risk::High] {
        let e = entry(risk);
        for phase in Phase::ALL {
            for approved in [None, Some("alice".to_owned())] {
                for cancelled in [None, Some("bob".to_owned())] {
                    for job in &jobs {
                        for now in [at(0), at(299), at(300), at(5000)] {
                            let mut s = match phase {
                                Phase::AwaitingApproval => awaiting(risk),
                                Phase::Executing => with_attempts(status(phase), 1, None),
                                Phase::Verifying => verifying(1),
                                _ => status(phase),
                            };
                            s.phase = phase;
                            let o = Observed {
                                approved_by: approved.clone(),
                                cancelled_by: cancelled.clone(),
                                job: job.clone(),
                                verification: Some(Verification::StillFiring),
                                ..obs(&e)
                            };
                            let t = run(Some(&s), &o, now);
                            let Some((attempt, _)) = creates_job(&t) else {
                                continue;
                            };
                            let ctx = format!(
                                "{risk:?} {phase} approved={approved:?} cancelled={cancelled:?} {job:?} {now}"
                            );
                            assert!(cancelled.is_none(), "cancelled incident ran: {ctx}");
                            if attempt == 1
                                && matches!(phase, Phase::Decided | Phase::AwaitingApproval)
                            {
                                match risk {
                                    Risk::Low => {}
                                    Risk::Medium => {
                                        assert!(approved.is_some() || now >= at(300), "{ctx}")
                                    }
                                    Risk::High => assert!(approved.is_some(), "{ctx}"),
                                }
                            }
                            assert!(attempt <= e.max_attempts, "{ctx}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_cancel_during_execution_stops_further_attempts() {
    let e = entry(Risk::Low);
    let s = with_attempts(status(Phase::Executing), 1, None);
    let o = Observed {
        cancelled_by: Some("alice".into()),
        job: JobState::Failed {
            finished: at(5),
            reason: "BackoffLimitExceeded".into(),
            timed_out: false,
        },
        ..obs(&e)
    };
    let t = run(Some(&s), &o, at(6));
    assert_eq!(t.status.phase, Phase::Cancelled);
    assert_eq!(creates_job(&t), None);
}

#[test]
fn routine_waits_leave_status_untouched_so_they_cost_no_api_write() {
    // Each wait is entered by a transition whose message already says what is awaited; a
    // reconcile during the wait must return the very same status (the controller then skips
    // the write) and no effect.
    let check = |s: IncidentStatus, o: Observed<'_>, now: Timestamp| {
        let t = run(Some(&s), &o, now);
        assert_eq!(t.status, s, "a wait changed status");
        assert!(t.effects.is_empty(), "{:?}", t.effects);
    };
    // High risk before its deadline; medium risk inside its cancel window.
    for risk in [Risk::High, Risk::Medium] {
        let e = entry(risk);
        let entered = run(Some(&status(Phase::Decided)), &obs(&e), t0()).status;
        assert_eq!(entered.phase, Phase::AwaitingApproval);
        check(entered, obs(&e), at(10));
    }
    // A running Job.
    let e = entry(Risk::Low);
    let entered = run(Some(&status(Phase::Decided)), &obs(&e), t0()).status;
    assert_eq!(entered.phase, Phase::Executing);
    let running = Observed {
        job: JobState::Running,
        ..obs(&e)
    };
    check(entered.clone(), running, at(5));
    // Stabilizing before verification.
    let mut e = entry(Risk::Low);
    e.verify.stabilization_seconds = 60;
    let succeeded = Observed {
        job: JobState::Succeeded { finished: at(5) },
        ..obs(&e)
    };
    let verifying = run(Some(&entered), &succeeded, at(6)).status;
    assert_eq!(verifying.phase, Phase::Verifying);
    check(verifying, obs(&e), at(30));
}

#[test]
fn an_escalate_decision_is_stored_and_escalated_in_one_transition() {
    let e = entry(Risk::Low);
    let mut d = decision(None);
    d.validation = "LlmUnavailable: the endpoint answered 503 three times".into();
    let o = Observed {
        new_decision: Some(d.clone()),
        ..obs(&e)
    };
    let t = run(None, &o, t0());
    assert_eq!(t.status.phase, Phase::Escalated);
    assert_eq!(t.status.reason.as_deref(), Some("LlmUnavailable"));
    assert_eq!(
        t.status.decision,
        Some(d),
        "the decision is kept for the trail"
    );
    assert_eq!(t.status.history.len(), 1);
    assert_eq!(t.status.history[0].from, Phase::Pending);
    let events = t
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::Event { .. }))
        .count();
    assert_eq!(events, 1);
    assert!(notifies(&t, Notice::Escalated));
}

#[test]
fn a_cancel_that_met_a_job_created_in_the_same_moment_records_it() {
    let e = entry(Risk::High);
    let job = format!("{INC}-a1");
    let o = Observed {
        cancelled_by: Some("alice".into()),
        unrecorded_job: Some(UnrecordedJob {
            attempt: 1,
            job: job.clone(),
            created: Some(at(5)),
            dry_run: false,
        }),
        ..obs(&e)
    };
    let t = run(Some(&awaiting(Risk::High)), &o, at(10));
    assert_eq!(t.status.phase, Phase::Cancelled);
    assert_eq!(t.status.attempts.len(), 1);
    assert_eq!(t.status.attempts[0].job, job);
    assert_eq!(t.status.attempts[0].started_at, Some(Time(at(5))));
    assert!(t.status.message.as_deref().unwrap().contains(&job));
    assert!(t.status.history.last().unwrap().message.contains(&job));
    assert!(t.effects.iter().any(|e| matches!(
        e,
        Effect::Event { warning: true, message, .. } if message.contains(&job)
    )));
    assert_eq!(creates_job(&t), None);
    // Without such a Job, a cancel reads as before.
    let plain = Observed {
        cancelled_by: Some("alice".into()),
        ..obs(&e)
    };
    let t = run(Some(&awaiting(Risk::High)), &plain, at(10));
    assert!(t.status.attempts.is_empty());
    assert!(t.status.message.as_deref().unwrap().ends_with("never ran"));
}
