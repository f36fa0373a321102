//! Calls that change something (anything but GET and HEAD), counted per
//! access key: a script gone wrong, or a stolen key, cannot queue backups
//! and restores by the thousand. Beyond `mutating_calls_per_minute` (in
//! bursts of a quarter of it) the answer is 429 `DCS.4961` with
//! `Retry-After`. Per node, like the lockout.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub(crate) struct RateLimit {
    /// `None`: unlimited (`mutating_calls_per_minute = 0`).
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl RateLimit {
    pub(crate) fn per_minute(calls: u32) -> RateLimit {
        let limiter = NonZeroU32::new(calls).map(|rate| {
            let burst = NonZeroU32::new((calls / 4).max(1)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        RateLimit {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when `access_key` has used up its calls.
    pub(crate) fn check(&self, access_key: &str) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&access_key.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_key_waits_and_others_do_not() {
        let limit = RateLimit::per_minute(8);
        assert!((0..2).all(|_| limit.check("AK1").is_ok()));
        let wait = limit.check("AK1").unwrap_err();
        assert!((1..=8).contains(&wait), "{wait}");
        assert!(limit.check("AK2").is_ok());
        let unlimited = RateLimit::per_minute(0);
        assert!((0..1000).all(|_| unlimited.check("AK1").is_ok()));
    }
}
