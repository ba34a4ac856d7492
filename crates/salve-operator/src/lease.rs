//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go and controller-runtime
//! do it: optimistic concurrency on the Lease's `resourceVersion` (a replace that answers 409
//! means another candidate wrote first), expiry measured on the *local monotonic clock* from
//! the moment a candidate last saw the record change (never by comparing the holder's
//! `renewTime` with our wall clock, so clock skew between nodes cannot shorten a term), and a
//! renew deadline after which a leader that could not renew stops acting before anybody else
//! may take over.
//!
//! # Timings and the handover bound
//!
//! With [`Timings::default`] — lease 10 s, the leader renews every 2 s and gives up 7 s after
//! its last successful renewal, a standby looks every 1 s:
//!
//! * **Leader SIGKILLed.** Let `R` be its last renewal (the kill comes at or after `R`). A
//!   standby sees that record at its next look, before `R + 1 s (+ one request)`, counts the
//!   10 s lease from then, and takes the lease at its first look after that: before
//!   `R + lease + 2 × retry = R + 12 s` plus two API round trips. So **handover < 15 s**, with
//!   about 3 s to spare for slow requests.
//! * **Leader shut down (SIGTERM).** It releases the lease (empties `holderIdentity`) and a
//!   standby takes it at its next look: within about 1 s.
//! * **Leader cut off from the API server.** It stops acting 7 s after the start of its last
//!   successful renewal; a standby may take over at the earliest 10 s after it *saw* that
//!   renewal, which is later. Every request is bounded by the time left until the deadline, so
//!   a request that hangs cannot keep a stale leader alive.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How long a term lasts, how often it is renewed, and when a leader gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long other candidates wait, after they last saw the record change, before taking it.
    pub lease_duration: Duration,
    /// The leader renews this long after its last successful renewal.
    pub renew_period: Duration,
    /// A leader that has not renewed for this long stops acting. Must be < `lease_duration`.
    pub renew_deadline: Duration,
    /// How often a standby looks at the Lease, and how soon a failed renewal is retried.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(10),
            renew_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(7),
            retry_period: Duration::from_secs(1),
        }
    }
}

impl Timings {
    /// Checks the ordering the safety argument needs.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration.as_secs() < 1 {
            return Err("lease duration must be at least 1 s".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err("the renew deadline must be shorter than the lease duration".into());
        }
        if self.renew_period >= self.renew_deadline || self.retry_period >= self.renew_deadline {
            return Err("renew and retry periods must be shorter than the renew deadline".into());
        }
        if self.retry_period.is_zero() || self.renew_period.is_zero() {
            return Err("renew and retry periods must be positive".into());
        }
        Ok(())
    }

    /// Worst-case time from a leader's death to a standby holding the lease, not counting
    /// API round trips (see the module docs).
    pub fn handover_bound(&self) -> Duration {
        self.lease_duration + 2 * self.retry_period
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What a candidate should do about a Lease record it has seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody holds it, or the holder's term ran out: take it.
    Acquire,
    /// We hold it (perhaps from before a restart under the same identity): renew it.
    Renew,
    /// Another candidate holds it for at least `remaining` more.
    Held { holder: String, remaining: Duration },
}

/// Judges a Lease record first seen (in this form) at `seen_at`. A term is
/// `leaseDurationSeconds` (or `default_duration` when the record has none) counted from
/// `seen_at` on our own monotonic clock.
pub fn judge(
    spec: &LeaseSpec,
    me: &str,
    seen_at: Instant,
    now: Instant,
    default_duration: Duration,
) -> Verdict {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Verdict::Acquire;
    }
    if holder == me {
        return Verdict::Renew;
    }
    let term = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(default_duration, Duration::from_secs);
    let ends = seen_at + term;
    if now >= ends {
        Verdict::Acquire
    } else {
        Verdict::Held {
            holder: holder.to_owned(),
            remaining: ends - now,
        }
    }
}

/// Remembers when the Lease record last changed, as this candidate saw it.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(LeaseSpec, Instant)>,
}

impl Observer {
    /// Records `spec` as seen at `now`; returns when this exact record was first seen.
    /// Only the spec counts: a label or annotation edit does not extend a term.
    pub fn observe(&mut self, spec: &LeaseSpec, now: Instant) -> Instant {
        match &self.last {
            Some((s, at)) if s == spec => *at,
            _ => {
                self.last = Some((spec.clone(), now));
                now
            }
        }
    }
}

/// The record that takes the lease for `me` (keeps `acquireTime` when we already held it).
pub fn acquire_spec(prev: Option<&LeaseSpec>, me: &str, now: Timestamp, t: &Timings) -> LeaseSpec {
    let prev_holder = prev.and_then(|p| p.holder_identity.as_deref());
    let transitions = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
    let ours = prev_holder == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(t.lease_seconds()),
        acquire_time: if ours {
            prev.and_then(|p| p.acquire_time.clone())
                .or(Some(MicroTime(now)))
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || prev.is_none() {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..Default::default()
    }
}

/// The record that renews our term.
pub fn renew_spec(held: &LeaseSpec, now: Timestamp, t: &Timings) -> LeaseSpec {
    LeaseSpec {
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(t.lease_seconds()),
        ..held.clone()
    }
}

/// The record that gives the lease up: no holder, so any standby takes it at its next look.
pub fn release_spec(held: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        acquire_time: None,
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(1),
        lease_transitions: held.lease_transitions,
        ..Default::default()
    }
}

/// Whether a leader whose last successful renewal started at `last_renewed` must stop.
pub fn past_deadline(last_renewed: Instant, now: Instant, t: &Timings) -> bool {
    now.saturating_duration_since(last_renewed) >= t.renew_deadline
}

/// When a leader whose last successful renewal started at `renewed_at` should next try to
/// renew: `renew_period` after it, or `retry_period` after a failed try; never later than one
/// retry period before the renew deadline (so the last try still has time to finish), never
/// sooner than a quarter retry period from `now` (no busy loop). `None`: the deadline passed.
pub fn next_renewal(
    renewed_at: Instant,
    now: Instant,
    after_failure: bool,
    t: &Timings,
) -> Option<Instant> {
    if past_deadline(renewed_at, now, t) {
        return None;
    }
    let deadline = renewed_at + t.renew_deadline;
    let planned = if after_failure {
        now + t.retry_period
    } else {
        renewed_at + t.renew_period
    };
    Some(
        planned
            .min(deadline - t.retry_period)
            .max(now + t.retry_period / 4),
    )
}

/// Why a leader stopped leading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lost {
    /// Another candidate holds the Lease now.
    TakenBy(String),
    /// The Lease was deleted.
    Deleted,
    /// No renewal succeeded within the renew deadline.
    RenewDeadline { since_last_renewal: Duration },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy(h) => write!(f, "the Lease is now held by {h:?}"),
            Lost::Deleted => write!(f, "the Lease was deleted"),
            Lost::RenewDeadline { since_last_renewal } => write!(
                f,
                "no renewal succeeded for {:.1}s (renew deadline)",
                since_last_renewal.as_secs_f64()
            ),
        }
    }
}

/// Our term: the record as we last wrote it and when that write started.
#[derive(Debug)]
struct Term {
    spec: LeaseSpec,
    resource_version: Option<String>,
    renewed_at: Instant,
}

enum Attempt {
    Done(Term),
    NotYet(Option<String>),
}

/// One candidate in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    observer: Observer,
    term: Option<Term>,
}

impl Elector {
    /// A candidate `identity` for Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observer: Observer::default(),
            term: None,
        }
    }

    /// This candidate's identity (the Lease's `holderIdentity` while it leads).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the Lease. API errors are logged and retried.
    pub async fn acquire(&mut self) {
        let mut last_holder: Option<String> = None;
        loop {
            let started = Instant::now();
            let timeout = self.timings.renew_deadline;
            match tokio::time::timeout(timeout, self.try_acquire(started)).await {
                Ok(Ok(Attempt::Done(term))) => {
                    self.term = Some(term);
                    return;
                }
                Ok(Ok(Attempt::NotYet(holder))) => {
                    // Log each new holder once (a lost race reports no holder).
                    if let Some(h) = holder
                        && last_holder.as_ref() != Some(&h)
                    {
                        info!(holder = %h, lease = %self.name, "the lease is held by another replica; standing by");
                        last_holder = Some(h);
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, lease = %self.name, "reading the lease failed; retrying")
                }
                Err(_) => warn!(lease = %self.name, "reading the lease timed out; retrying"),
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    async fn try_acquire(&mut self, started: Instant) -> Result<Attempt, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let spec = acquire_spec(None, &self.identity, Timestamp::now(), &self.timings);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(Attempt::Done(term_of(created, started))),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::NotYet(None)),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let now = Instant::now();
        let seen_at = self.observer.observe(&spec, now);
        match judge(
            &spec,
            &self.identity,
            seen_at,
            now,
            self.timings.lease_duration,
        ) {
            Verdict::Held { holder, remaining } => {
                debug!(%holder, remaining_ms = remaining.as_millis() as u64, "lease held");
                Ok(Attempt::NotYet(Some(holder)))
            }
            Verdict::Acquire | Verdict::Renew => {
                let new =
                    acquire_spec(Some(&spec), &self.identity, Timestamp::now(), &self.timings);
                match self.replace(&current.metadata, new).await {
                    Ok(written) => Ok(Attempt::Done(term_of(written, started))),
                    // Another candidate wrote first.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::NotYet(None)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn replace(&self, meta: &ObjectMeta, spec: LeaseSpec) -> Result<Lease, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            spec: Some(spec),
        };
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
    }

    /// Keeps renewing the Lease and returns only when leadership is lost. Call after
    /// [`Elector::acquire`]; the caller must stop acting as soon as this returns. Dropping the
    /// future stops renewing (the term stays recorded, so [`Elector::release`] can give it up).
    pub async fn hold(&mut self) -> Lost {
        let mut failed = false;
        loop {
            let Some(renewed_at) = self.term.as_ref().map(|t| t.renewed_at) else {
                return Lost::RenewDeadline {
                    since_last_renewal: Duration::ZERO,
                };
            };
            let Some(at) = next_renewal(renewed_at, Instant::now(), failed, &self.timings) else {
                self.term = None;
                return Lost::RenewDeadline {
                    since_last_renewal: Instant::now() - renewed_at,
                };
            };
            tokio::time::sleep_until(at).await;
            let now = Instant::now();
            if past_deadline(renewed_at, now, &self.timings) {
                // Woken too late (e.g. the process was frozen): stop without another write.
                self.term = None;
                return Lost::RenewDeadline {
                    since_last_renewal: now - renewed_at,
                };
            }
            let left = (renewed_at + self.timings.renew_deadline) - now;
            match tokio::time::timeout(left, self.renew(now)).await {
                Ok(Ok(new)) => {
                    self.term = Some(new);
                    failed = false;
                }
                Ok(Err(RenewError::Lost(lost))) => {
                    self.term = None;
                    return lost;
                }
                Ok(Err(RenewError::Api(e))) => {
                    warn!(error = %e, lease = %self.name, "renewing the lease failed; retrying");
                    failed = true;
                }
                Err(_) => {
                    self.term = None;
                    return Lost::RenewDeadline {
                        since_last_renewal: Instant::now() - renewed_at,
                    };
                }
            }
        }
    }

    async fn renew(&self, started: Instant) -> Result<Term, RenewError> {
        let Some(term) = &self.term else {
            return Err(RenewError::Lost(Lost::RenewDeadline {
                since_last_renewal: Duration::ZERO,
            }));
        };
        let spec = renew_spec(&term.spec, Timestamp::now(), &self.timings);
        let meta = ObjectMeta {
            resource_version: term.resource_version.clone(),
            ..Default::default()
        };
        match self.replace(&meta, spec.clone()).await {
            Ok(written) => Ok(term_of(written, started)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Someone else wrote the Lease. If it is still ours (e.g. a label edit),
                // renew on top of that version; otherwise we lost it.
                match self
                    .api
                    .get_opt(&self.name)
                    .await
                    .map_err(RenewError::Api)?
                {
                    None => Err(RenewError::Lost(Lost::Deleted)),
                    Some(current) => {
                        let cur = current.spec.clone().unwrap_or_default();
                        let holder = cur.holder_identity.clone().unwrap_or_default();
                        if holder != self.identity {
                            return Err(RenewError::Lost(Lost::TakenBy(holder)));
                        }
                        let written = self
                            .replace(
                                &current.metadata,
                                renew_spec(&cur, Timestamp::now(), &self.timings),
                            )
                            .await
                            .map_err(RenewError::Api)?;
                        Ok(term_of(written, started))
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Err(RenewError::Lost(Lost::Deleted)),
            Err(e) => Err(RenewError::Api(e)),
        }
    }

    /// Gives the Lease up if we still hold it, so a standby takes over at once. Best effort and
    /// bounded in time; a failure only means the standby waits for the term to run out.
    pub async fn release(&mut self) {
        let Some(term) = self.term.take() else {
            return;
        };
        let limit = self
            .timings
            .renew_deadline
            .saturating_sub(Duration::from_secs(1));
        let release = async {
            let meta = ObjectMeta {
                resource_version: term.resource_version.clone(),
                ..Default::default()
            };
            match self
                .replace(&meta, release_spec(&term.spec, Timestamp::now()))
                .await
            {
                // A renewal that was cut short may have landed: release that version if the
                // Lease is still ours.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let Some(current) = self.api.get_opt(&self.name).await? else {
                        return Ok(false);
                    };
                    let cur = current.spec.clone().unwrap_or_default();
                    if cur.holder_identity.as_deref() != Some(self.identity.as_str()) {
                        return Ok(false);
                    }
                    self.replace(&current.metadata, release_spec(&cur, Timestamp::now()))
                        .await
                        .map(|_| true)
                }
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
                other => other.map(|_| true),
            }
        };
        match tokio::time::timeout(limit, release).await {
            Ok(Ok(true)) => info!(lease = %self.name, "released the lease"),
            Ok(Ok(false)) => info!(lease = %self.name, "the lease was no longer ours to release"),
            Ok(Err(e)) => {
                warn!(error = %e, lease = %self.name, "releasing the lease failed; a standby takes over when it expires")
            }
            Err(_) => {
                warn!(lease = %self.name, "releasing the lease timed out; a standby takes over when it expires")
            }
        }
    }
}

enum RenewError {
    Lost(Lost),
    Api(kube::Error),
}

fn term_of(lease: Lease, started: Instant) -> Term {
    Term {
        spec: lease.spec.unwrap_or_default(),
        resource_version: lease.metadata.resource_version,
        renewed_at: started,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn held_by(holder: &str, secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: secs,
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            ..Default::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_lease_without_holder_is_free() {
        let t0 = Instant::now();
        for spec in [LeaseSpec::default(), held_by("", Some(10))] {
            assert_eq!(judge(&spec, "me", t0, t0, S(10)), Verdict::Acquire);
        }
        assert_eq!(
            judge(
                &release_spec(&held_by("a", Some(10)), Timestamp::UNIX_EPOCH),
                "me",
                t0,
                t0,
                S(10)
            ),
            Verdict::Acquire,
            "a released lease is taken at once"
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let t0 = Instant::now();
        assert_eq!(
            judge(&held_by("me", Some(10)), "me", t0, t0 + S(60), S(10)),
            Verdict::Renew
        );
    }

    #[test]
    fn another_holder_keeps_it_for_its_term_from_when_we_saw_it() {
        let seen = Instant::now();
        let spec = held_by("other", Some(10));
        assert_eq!(
            judge(&spec, "me", seen, seen + S(3), S(30)),
            Verdict::Held {
                holder: "other".into(),
                remaining: S(7)
            }
        );
        assert!(matches!(
            judge(
                &spec,
                "me",
                seen,
                seen + Duration::from_millis(9_999),
                S(30)
            ),
            Verdict::Held { .. }
        ));
        assert_eq!(
            judge(&spec, "me", seen, seen + S(10), S(30)),
            Verdict::Acquire
        );
        assert_eq!(
            judge(&spec, "me", seen, seen + S(11), S(30)),
            Verdict::Acquire
        );
    }

    #[test]
    fn a_missing_or_nonsense_duration_falls_back_to_ours() {
        let seen = Instant::now();
        for secs in [None, Some(0), Some(-5)] {
            let spec = held_by("other", secs);
            assert!(matches!(
                judge(&spec, "me", seen, seen + S(9), S(10)),
                Verdict::Held { .. }
            ));
            assert_eq!(
                judge(&spec, "me", seen, seen + S(10), S(10)),
                Verdict::Acquire
            );
        }
    }

    #[test]
    fn the_term_counts_from_the_last_change_we_saw_not_from_renew_time() {
        // renewTime is far in the past by our wall clock (skew); only our observation counts.
        let mut obs = Observer::default();
        let t0 = Instant::now();
        let mut spec = held_by("other", Some(10));
        assert_eq!(obs.observe(&spec, t0), t0);
        // Unchanged record seen again later: still counted from t0.
        assert_eq!(obs.observe(&spec, t0 + S(4)), t0);
        // A renewal changes the record: the term restarts.
        spec.renew_time = Some(MicroTime(
            Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(2),
        ));
        assert_eq!(obs.observe(&spec, t0 + S(5)), t0 + S(5));
        assert!(matches!(
            judge(&spec, "me", t0 + S(5), t0 + S(14), S(10)),
            Verdict::Held { .. }
        ));
    }

    #[test]
    fn taking_the_lease_counts_transitions_between_holders() {
        let now = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(100);
        let t = Timings::default();
        let fresh = acquire_spec(None, "me", now, &t);
        assert_eq!(fresh.holder_identity.as_deref(), Some("me"));
        assert_eq!(fresh.lease_transitions, Some(0));
        assert_eq!(fresh.lease_duration_seconds, Some(10));
        assert_eq!(fresh.acquire_time, Some(MicroTime(now)));
        assert_eq!(fresh.renew_time, Some(MicroTime(now)));

        let mut other = held_by("other", Some(10));
        other.lease_transitions = Some(4);
        assert_eq!(
            acquire_spec(Some(&other), "me", now, &t).lease_transitions,
            Some(5)
        );
        let released = release_spec(&other, now);
        assert_eq!(
            acquire_spec(Some(&released), "me", now, &t).lease_transitions,
            Some(5)
        );

        // Re-taking our own lease (a restart under the same pod name) keeps acquireTime.
        let mut mine = held_by("me", Some(10));
        mine.lease_transitions = Some(2);
        mine.acquire_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
        let again = acquire_spec(Some(&mine), "me", now, &t);
        assert_eq!(again.lease_transitions, Some(2));
        assert_eq!(again.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        assert_eq!(again.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn renewing_moves_only_renew_time_and_releasing_empties_the_holder() {
        let t = Timings::default();
        let now = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(7);
        let mut mine = held_by("me", Some(10));
        mine.acquire_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
        mine.lease_transitions = Some(3);
        let renewed = renew_spec(&mine, now, &t);
        assert_eq!(renewed.holder_identity.as_deref(), Some("me"));
        assert_eq!(renewed.acquire_time, mine.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        let released = release_spec(&renewed, now);
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(3));
    }

    #[test]
    fn a_leader_stops_at_its_renew_deadline() {
        let t = Timings::default();
        let r = Instant::now();
        assert!(!past_deadline(r, r, &t));
        assert!(!past_deadline(r, r + Duration::from_millis(6_999), &t));
        assert!(past_deadline(r, r + S(7), &t));
        assert!(past_deadline(r, r + S(30), &t));
    }

    #[test]
    fn renewals_are_paced_and_the_last_try_has_time_to_finish() {
        let t = Timings::default();
        let r = Instant::now();
        let ms = Duration::from_millis;
        // On schedule: renew_period after the last renewal, even if the answer came late.
        assert_eq!(next_renewal(r, r, false, &t), Some(r + S(2)));
        assert_eq!(next_renewal(r, r + ms(1_500), false, &t), Some(r + S(2)));
        // After a failure: a retry period later…
        assert_eq!(next_renewal(r, r + S(2), true, &t), Some(r + S(3)));
        // …but the last try starts a retry period before the deadline…
        assert_eq!(next_renewal(r, r + ms(5_500), true, &t), Some(r + S(6)));
        // …and never in a busy loop.
        assert_eq!(
            next_renewal(r, r + ms(6_100), true, &t),
            Some(r + ms(6_350))
        );
        // A slow acquisition still gets a renewal before the deadline.
        assert_eq!(
            next_renewal(r, r + ms(5_900), false, &t),
            Some(r + ms(6_150))
        );
        assert_eq!(next_renewal(r, r + S(7), false, &t), None);
        assert_eq!(next_renewal(r, r + S(8), true, &t), None);
    }

    #[test]
    fn default_timings_are_consistent_and_hand_over_within_15s() {
        let t = Timings::default();
        t.validate().unwrap();
        assert!(t.handover_bound() < S(15), "{:?}", t.handover_bound());
        // The leader gives up before any standby may take over.
        assert!(t.renew_deadline < t.lease_duration);
        for bad in [
            Timings {
                renew_deadline: S(10),
                ..t
            },
            Timings {
                renew_period: S(7),
                ..t
            },
            Timings {
                retry_period: Duration::ZERO,
                ..t
            },
            Timings {
                lease_duration: Duration::from_millis(500),
                ..t
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    /// Simulates a leader renewing every `renew_period` until it is killed, and a standby
    /// looking every `retry_period` at any phase, and checks the handover bound and that the
    /// standby never takes the lease while the leader could still be acting.
    #[test]
    fn simulated_kill_hands_over_within_the_bound_and_never_overlaps() {
        let t = Timings::default();
        let base = Instant::now();
        let ms = Duration::from_millis;
        for kill_ms in (10_000..14_000).step_by(250) {
            for phase_ms in (0..1_000).step_by(125) {
                let kill = base + ms(kill_ms);
                // Renewals at 0, 2, 4, … s strictly before the kill.
                let last_renewal_ms = (0..kill_ms).step_by(2_000).last().unwrap();
                let spec_at = |at: Instant| {
                    let n = (0..=((at - base).as_millis() as u64).min(last_renewal_ms))
                        .step_by(2_000)
                        .count() as i64;
                    let mut s = held_by("leader", Some(10));
                    s.renew_time = Some(MicroTime(
                        Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(n),
                    ));
                    s
                };
                let mut obs = Observer::default();
                let mut at = base + ms(phase_ms);
                let acquired = loop {
                    let seen = obs.observe(&spec_at(at), at);
                    if judge(&spec_at(at), "standby", seen, at, t.lease_duration)
                        == Verdict::Acquire
                    {
                        break at;
                    }
                    at += t.retry_period;
                };
                assert!(
                    acquired > kill,
                    "took over a live leader (kill {kill_ms} ms)"
                );
                // The killed leader would itself have stopped by its deadline.
                assert!(acquired >= base + ms(last_renewal_ms) + t.renew_deadline);
                assert!(
                    acquired - kill <= t.handover_bound(),
                    "handover {:?} > bound (kill {kill_ms} ms, phase {phase_ms} ms)",
                    acquired - kill
                );
            }
        }
    }
}
