//! The SLM budget: at most a share of messages, and optionally at most a rate, may use the
//! small language model. Calibrated thresholds drift when the data shifts, so the budget is
//! enforced at run time too.
//!
//! The share is a token bucket counted in messages: each message adds `max_share` of a token
//! (the bucket starts with `burst` and saves at most about that many), each SLM call takes a
//! whole one. So over
//! every prefix of `n` messages at most `max_share · n + burst` use the SLM: the promise holds
//! from the first message, not only on average over a window.

use std::time::Instant;

use triage_core::config::BudgetConfig;

use crate::RouterError;

/// A budget tracker. Not thread-safe: wrap it in a mutex or keep one per worker.
#[derive(Debug, Clone)]
pub struct Budget {
    config: BudgetConfig,
    /// Share tokens, in SLM calls (0..=burst).
    share_tokens: f64,
    /// Rate tokens (only with `max_per_second`).
    rate_tokens: f64,
    last_refill: Option<Instant>,
}

impl Budget {
    /// Validates the settings.
    pub fn new(config: BudgetConfig) -> Result<Self, RouterError> {
        if !(0.0..=1.0).contains(&config.max_share) {
            return Err(RouterError::Config(format!(
                "budget.max_share must be within 0..=1, got {}",
                config.max_share
            )));
        }
        if let Some(r) = config.max_per_second
            && !(r.is_finite() && r > 0.0)
        {
            return Err(RouterError::Config(format!(
                "budget.max_per_second must be > 0, got {r}"
            )));
        }
        Ok(Self {
            share_tokens: f64::from(config.burst),
            rate_tokens: config.max_per_second.unwrap_or(0.0).max(1.0),
            config,
            last_refill: None,
        })
    }

    /// Records one message and whether it may use the SLM (`wants` = the policy asked for it).
    /// Returns true when the SLM may be used.
    pub fn admit(&mut self, wants: bool) -> bool {
        self.admit_with(wants, Instant::now)
    }

    /// [`Budget::admit`] with an explicit clock, for tests.
    pub fn admit_at(&mut self, wants: bool, now: Instant) -> bool {
        self.admit_with(wants, || now)
    }

    /// The clock is read only under a rate limit (this runs for every message).
    fn admit_with(&mut self, wants: bool, now: impl FnOnce() -> Instant) -> bool {
        // Every message earns its share, wanted or not; a burst is the most that can be saved
        // (plus this message's share, so that the fraction left after a call is never clipped:
        // with a burst of 1 and a share of 0.65, full demand still gets 65%).
        let cap = f64::from(self.config.burst).max(1.0) + self.config.max_share;
        self.share_tokens = (self.share_tokens + self.config.max_share).min(cap);
        let allowed_by_rate = match self.config.max_per_second {
            None => true,
            Some(rate) => {
                let now = now();
                if let Some(last) = self.last_refill {
                    let dt = now.saturating_duration_since(last).as_secs_f64();
                    self.rate_tokens = (self.rate_tokens + dt * rate).min(rate.max(1.0));
                }
                self.last_refill = Some(now);
                self.rate_tokens >= 1.0
            }
        };
        // (A tiny epsilon absorbs the rounding of repeated additions: 0.1 added ten times is
        // 0.9999999999999999.)
        let admit = wants && allowed_by_rate && self.share_tokens >= 1.0 - 1e-9;
        if admit {
            self.share_tokens -= 1.0;
            if self.config.max_per_second.is_some() {
                self.rate_tokens -= 1.0;
            }
        }
        admit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the demand, every prefix of n messages holds at most max_share · n + burst
        /// SLM uses, and a budget never admits what was not asked for.
        #[test]
        fn every_prefix_keeps_the_share(
            wants in proptest::collection::vec(any::<bool>(), 1..3000),
            share in 0.0f64..=1.0,
            burst in 0u32..50,
        ) {
            let mut b = Budget::new(BudgetConfig { max_share: share, burst, max_per_second: None }).unwrap();
            let mut used = 0usize;
            for (n, &w) in wants.iter().enumerate() {
                let a = b.admit(w);
                prop_assert!(!a || w);
                used += a as usize;
                let bound = share * (n + 1) as f64 + f64::from(burst.max(1));
                prop_assert!(used as f64 <= bound + 1e-6, "prefix {}: {} > {}", n + 1, used, bound);
            }
        }

        /// Under full demand the share is met: the SLM gets its share, not less.
        #[test]
        fn full_demand_gets_the_share(share in 0.01f64..=1.0, burst in 1u32..20, n in 100usize..3000) {
            let mut b = Budget::new(BudgetConfig { max_share: share, burst, max_per_second: None }).unwrap();
            let used = (0..n).filter(|_| b.admit(true)).count() as f64;
            prop_assert!(used >= share * n as f64 - 1.0, "{used} < {}", share * n as f64);
        }
    }

    #[test]
    fn the_sample_log_stays_near_the_share() {
        // 70 messages that all want the SLM, 15%, a burst of 5: at most 10.5 + 5.
        let mut b = Budget::new(BudgetConfig::default()).unwrap();
        let used = (0..70).filter(|_| b.admit(true)).count();
        assert_eq!(used, 15);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let mut b = Budget::new(BudgetConfig {
            max_share: 1.0,
            burst: 10,
            max_per_second: Some(2.0),
        })
        .unwrap();
        let t0 = Instant::now();
        assert!(b.admit_at(true, t0));
        assert!(b.admit_at(true, t0));
        assert!(!b.admit_at(true, t0));
        assert!(b.admit_at(true, t0 + std::time::Duration::from_millis(600)));
    }
}
