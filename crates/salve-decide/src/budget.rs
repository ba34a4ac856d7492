//! The rolling daily token budget: a cap on what the LLM may cost per 24 hours.
//!
//! Usage is kept in one-minute buckets over a rolling 24-hour window. Before a call the engine
//! reserves its worst case (estimated prompt + `max_tokens`); afterwards it settles the
//! reservation with the tokens the server reported. Reserving first keeps concurrent decisions
//! from overshooting together. Pure: the clock is passed in. The budget lives in memory, so a
//! restart starts a new window (decisions are stored and never re-asked, so a restart does not
//! re-spend them).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

/// Length of the rolling window, in minutes.
const WINDOW_MINUTES: i64 = 24 * 60;

/// The budget would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "daily token budget exhausted: {used} of {limit} tokens used in the last 24h, this call may need {requested}"
)]
pub struct OverBudget {
    /// Tokens used (and reserved) in the window.
    pub used: u64,
    /// The configured limit.
    pub limit: u64,
    /// What the refused call asked for.
    pub requested: u64,
}

/// Tokens set aside for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "settle the reservation with the tokens actually used"]
pub struct Reservation {
    minute: i64,
    tokens: u64,
}

/// A rolling 24-hour token budget.
#[derive(Debug, Clone)]
pub struct TokenBudget {
    limit: u64,
    buckets: BTreeMap<i64, u64>,
}

impl TokenBudget {
    /// A budget of `limit` tokens per rolling 24 hours.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            buckets: BTreeMap::new(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Tokens used or reserved in the 24 hours before `now`.
    pub fn used(&mut self, now: Timestamp) -> u64 {
        self.prune(now);
        self.buckets.values().sum()
    }

    /// Sets `tokens` aside, or refuses when that would exceed the limit.
    pub fn try_reserve(&mut self, now: Timestamp, tokens: u64) -> Result<Reservation, OverBudget> {
        let used = self.used(now);
        if used.saturating_add(tokens) > self.limit {
            return Err(OverBudget {
                used,
                limit: self.limit,
                requested: tokens,
            });
        }
        let minute = minute(now);
        *self.buckets.entry(minute).or_default() += tokens;
        Ok(Reservation { minute, tokens })
    }

    /// Replaces a reservation by the tokens actually used (which may exceed it).
    pub fn settle(&mut self, reservation: Reservation, actual: u64, now: Timestamp) {
        if let Some(b) = self.buckets.get_mut(&reservation.minute) {
            *b = b.saturating_sub(reservation.tokens);
        }
        *self.buckets.entry(minute(now)).or_default() += actual;
        self.prune(now);
    }

    fn prune(&mut self, now: Timestamp) {
        let oldest = minute(now) - WINDOW_MINUTES + 1;
        self.buckets = self.buckets.split_off(&oldest);
        self.buckets.retain(|_, v| *v > 0);
    }
}

fn minute(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn t0() -> Timestamp {
        "2026-11-28T00:00:00Z".parse().expect("timestamp")
    }

    #[test]
    fn reservations_count_until_settled_with_actual_usage() {
        let mut b = TokenBudget::new(1000);
        let r = b.try_reserve(t0(), 600).expect("fits");
        assert_eq!(b.used(t0()), 600);
        assert_eq!(
            b.try_reserve(t0(), 500),
            Err(OverBudget {
                used: 600,
                limit: 1000,
                requested: 500
            })
        );
        b.settle(r, 250, t0());
        assert_eq!(b.used(t0()), 250);
        assert!(b.try_reserve(t0(), 500).is_ok());
    }

    #[test]
    fn usage_older_than_24_hours_no_longer_counts() {
        let mut b = TokenBudget::new(1000);
        let r = b.try_reserve(t0(), 900).expect("fits");
        b.settle(r, 900, t0());
        let later = t0() + SignedDuration::from_hours(23);
        assert!(
            b.try_reserve(later, 200).is_err(),
            "still inside the window"
        );
        let next_day = t0() + SignedDuration::from_hours(24);
        assert_eq!(b.used(next_day), 0);
        assert!(b.try_reserve(next_day, 1000).is_ok());
    }

    #[test]
    fn settling_late_charges_the_current_minute() {
        let mut b = TokenBudget::new(10_000);
        let r = b.try_reserve(t0(), 100).expect("fits");
        let later = t0() + SignedDuration::from_mins(5);
        b.settle(r, 300, later);
        assert_eq!(b.used(later), 300);
        assert_eq!(
            b.used(t0() + SignedDuration::from_hours(24)),
            300,
            "charged at settle time, so it expires later"
        );
    }

    #[test]
    fn an_exactly_full_budget_is_allowed_and_one_more_token_is_not() {
        let mut b = TokenBudget::new(100);
        let _kept = b.try_reserve(t0(), 100).expect("exactly the limit");
        assert!(b.try_reserve(t0(), 1).is_err());
    }
}
