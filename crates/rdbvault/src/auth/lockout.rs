//! After repeated failed signatures for one access key, that key is refused
//! for a while (429 with `Retry-After`), as Huawei's API gateway does after
//! five: guessing a secret, or hammering with a wrong one, gets nowhere
//! fast. Per node: each node counts the failures it sees.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// Failures within [`WINDOW`] that lock the key.
pub(crate) const MAX_FAILURES: u32 = 5;
const WINDOW: TimeDelta = TimeDelta::minutes(5);
/// How long a locked key is refused.
const LOCKED_FOR: TimeDelta = TimeDelta::minutes(5);
/// Keys tracked at most (a flood of made-up keys must not grow memory).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub(crate) struct Lockout {
    keys: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    /// `Some(seconds to wait)` while `access_key` is locked at `now`.
    pub(crate) fn locked(&self, access_key: &str, now: DateTime<Utc>) -> Option<i64> {
        let keys = self.keys.lock().ok()?;
        let until = keys.get(access_key)?.locked_until?;
        (until > now).then(|| (until - now).num_seconds().max(1))
    }

    pub(crate) fn failed(&self, access_key: &str, now: DateTime<Utc>) {
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        if keys.len() >= MAX_TRACKED && !keys.contains_key(access_key) {
            keys.retain(|_, f| now - f.since < WINDOW || f.locked_until.is_some_and(|u| u > now));
            if keys.len() >= MAX_TRACKED {
                return;
            }
        }
        let f = keys.entry(access_key.to_string()).or_insert(Failures {
            count: 0,
            since: now,
            locked_until: None,
        });
        if now - f.since >= WINDOW {
            *f = Failures {
                count: 0,
                since: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= MAX_FAILURES {
            f.locked_until = Some(now + LOCKED_FOR);
            tracing::warn!(
                access_key,
                failures = f.count,
                "access key locked after repeated failed signatures"
            );
        }
    }

    pub(crate) fn succeeded(&self, access_key: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(access_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_a_key_for_a_while() {
        let l = Lockout::default();
        let t0: DateTime<Utc> = "2026-12-03T10:00:00Z".parse().expect("time");
        for i in 0..4 {
            l.failed("AK", t0 + TimeDelta::seconds(i));
        }
        assert_eq!(l.locked("AK", t0 + TimeDelta::seconds(5)), None);
        l.failed("AK", t0 + TimeDelta::seconds(5));
        assert_eq!(l.locked("AK", t0 + TimeDelta::seconds(5)), Some(300));
        assert_eq!(l.locked("OTHER", t0), None);
        assert_eq!(
            l.locked("AK", t0 + TimeDelta::seconds(306)),
            None,
            "it ends"
        );
        // Failures spread wider than the window never lock.
        let l = Lockout::default();
        for i in 0..10 {
            l.failed("AK", t0 + TimeDelta::minutes(2 * i));
        }
        assert_eq!(l.locked("AK", t0 + TimeDelta::minutes(20)), None);
        // A success forgets the failures.
        let l = Lockout::default();
        for _ in 0..4 {
            l.failed("AK", t0);
        }
        l.succeeded("AK");
        l.failed("AK", t0);
        assert_eq!(l.locked("AK", t0), None);
    }
}
