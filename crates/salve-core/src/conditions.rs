//! metav1-style conditions derived from the status, keeping each condition's
//! `lastTransitionTime` while its status does not change (so a status write that changes
//! nothing else is skipped).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use salve_api::conditions as c;
use salve_api::{IncidentStatus, Phase};

/// The conditions for `new`, reusing transition times from `old` where a condition's status
/// is unchanged.
pub fn compute(
    old: Option<&IncidentStatus>,
    new: &IncidentStatus,
    now: Timestamp,
) -> Vec<Condition> {
    let reason = new
        .reason
        .clone()
        .unwrap_or_else(|| new.phase.as_str().to_owned());
    let message = new.message.clone().unwrap_or_default();
    let decided_reason = new
        .history
        .iter()
        .find(|h| h.to == Phase::Decided)
        .map(|h| h.reason.clone());
    let wanted = [
        (
            c::DECIDED,
            new.decision.is_some(),
            decided_reason.unwrap_or_else(|| {
                if new.decision.is_some() {
                    "Decided".into()
                } else {
                    "Pending".into()
                }
            }),
        ),
        (
            c::AWAITING_APPROVAL,
            new.phase == Phase::AwaitingApproval,
            reason.clone(),
        ),
        (c::EXECUTING, new.phase == Phase::Executing, reason.clone()),
        (c::DONE, new.phase.is_terminal(), reason),
    ];
    wanted
        .into_iter()
        .map(|(type_, on, reason)| {
            let status = if on { "True" } else { "False" }.to_owned();
            let previous = old.and_then(|o| o.conditions.iter().find(|x| x.type_ == type_));
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Time(now),
            };
            // metav1 requires a non-empty CamelCase reason.
            let mut reason: String = reason
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(128)
                .collect();
            if reason.is_empty() {
                reason = "Unknown".into();
            }
            Condition {
                type_: type_.to_owned(),
                status,
                reason,
                message: if on {
                    message.chars().take(1024).collect()
                } else {
                    String::new()
                },
                last_transition_time,
                observed_generation: new.observed_generation,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn transition_times_survive_while_a_condition_holds() {
        let t1: Timestamp = "2026-11-28T01:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-11-28T02:00:00Z".parse().unwrap();
        let mut s = IncidentStatus {
            phase: Phase::AwaitingApproval,
            ..Default::default()
        };
        s.conditions = compute(None, &s, t1);
        let again = compute(Some(&s), &s, t2);
        assert_eq!(again, s.conditions, "nothing changed, nothing to write");
        let mut done = s.clone();
        done.phase = Phase::Cancelled;
        let c = compute(Some(&s), &done, t2);
        let aw = c.iter().find(|x| x.type_ == "AwaitingApproval").unwrap();
        assert_eq!(
            (aw.status.as_str(), aw.last_transition_time.0),
            ("False", t2)
        );
        assert_eq!(c.iter().find(|x| x.type_ == "Done").unwrap().status, "True");
    }
}
