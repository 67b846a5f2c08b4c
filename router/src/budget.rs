//! The SLM budget: at most a share of messages, and optionally at most a rate, may use the
//! small language model. Calibrated thresholds drift when the data shifts, so the budget is
//! enforced at run time too.

use std::time::Instant;

use triage_core::config::BudgetConfig;

use crate::RouterError;

/// A budget tracker. Not thread-safe: wrap it in a mutex or keep one per worker.
#[derive(Debug, Clone)]
pub struct Budget {
    config: BudgetConfig,
    /// Ring of the last `window` decisions: did it use the SLM?
    ring: Vec<bool>,
    pos: usize,
    filled: usize,
    used_in_window: u32,
    tokens: f64,
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
        if config.window == 0 {
            return Err(RouterError::Config("budget.window must be > 0".into()));
        }
        if let Some(r) = config.max_per_second
            && !(r.is_finite() && r > 0.0)
        {
            return Err(RouterError::Config(format!(
                "budget.max_per_second must be > 0, got {r}"
            )));
        }
        Ok(Self {
            ring: vec![false; config.window as usize],
            tokens: config.max_per_second.unwrap_or(0.0).max(1.0),
            config,
            pos: 0,
            filled: 0,
            used_in_window: 0,
            last_refill: None,
        })
    }

    /// Records one message and whether it may use the SLM (`wants` = the policy asked for it).
    /// Returns true when the SLM may be used.
    pub fn admit(&mut self, wants: bool) -> bool {
        self.admit_at(wants, Instant::now())
    }

    /// [`Budget::admit`] with an explicit clock, for tests.
    pub fn admit_at(&mut self, wants: bool, now: Instant) -> bool {
        let window = self.ring.len();
        // The slot we are about to overwrite leaves the window.
        let leaving = if self.filled == window {
            self.ring[self.pos]
        } else {
            false
        };
        let used_after = self.used_in_window - leaving as u32;
        let allowed_by_share = (used_after as f64 + 1.0) <= self.config.max_share * window as f64;
        let allowed_by_rate = match self.config.max_per_second {
            None => true,
            Some(rate) => {
                if let Some(last) = self.last_refill {
                    let dt = now.saturating_duration_since(last).as_secs_f64();
                    self.tokens = (self.tokens + dt * rate).min(rate.max(1.0));
                }
                self.last_refill = Some(now);
                self.tokens >= 1.0
            }
        };
        let admit = wants && allowed_by_share && allowed_by_rate;
        if admit && self.config.max_per_second.is_some() {
            self.tokens -= 1.0;
        }
        self.ring[self.pos] = admit;
        self.pos = (self.pos + 1) % window;
        self.filled = (self.filled + 1).min(window);
        self.used_in_window = used_after + admit as u32;
        admit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the demand, no window of `window` consecutive messages holds more SLM uses
        /// than the share allows.
        #[test]
        fn share_is_never_exceeded(
            wants in proptest::collection::vec(any::<bool>(), 1..3000),
            share in 0.0f64..=1.0,
            window in 1u32..200,
        ) {
            let mut b = Budget::new(BudgetConfig { max_share: share, window, max_per_second: None }).unwrap();
            let admitted: Vec<bool> = wants.iter().map(|&w| b.admit(w)).collect();
            let cap = (share * window as f64).floor() as usize;
            for start in 0..admitted.len() {
                let end = (start + window as usize).min(admitted.len());
                let used = admitted[start..end].iter().filter(|&&a| a).count();
                prop_assert!(used <= cap, "window at {start}: {used} > {cap}");
            }
            // Never admits what was not asked for.
            for (w, a) in wants.iter().zip(&admitted) {
                prop_assert!(!a || *w);
            }
        }
    }

    #[test]
    fn full_demand_gets_the_share() {
        let mut b = Budget::new(BudgetConfig {
            max_share: 0.1,
            window: 100,
            max_per_second: None,
        })
        .unwrap();
        let used = (0..1000).filter(|_| b.admit(true)).count();
        assert_eq!(used, 100);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let mut b = Budget::new(BudgetConfig {
            max_share: 1.0,
            window: 10,
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
