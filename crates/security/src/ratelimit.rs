//! Failed-login rate limiting per source address, shared by every protocol's login.
//!
//! Each address may fail [`LimiterConfig::free_failures`] times; after that it must wait
//! before its next attempt, the wait doubling with each further failure up to
//! `max_delay`. A success clears the address. Entries idle for `forget_after` are dropped,
//! and the table is bounded: when full, the oldest entry goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LimiterConfig {
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub forget_after: Duration,
    pub max_entries: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            free_failures: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
}

/// What [`LoginLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refuse without checking the credentials; the address may retry after this long.
    Throttled(Duration),
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    config: LimiterConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl LoginLimiter {
    pub fn new(config: LimiterConfig) -> LoginLimiter {
        LoginLimiter {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may attempt a login now.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Admission {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = entries.get(&ip) else {
            return Admission::Allowed;
        };
        let delay = self.delay(e.failures);
        let ready = e.last_failure + delay;
        if now >= ready {
            Admission::Allowed
        } else {
            Admission::Throttled(ready - now)
        }
    }

    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.config.max_entries && !entries.contains_key(&ip) {
            let forget = self.config.forget_after;
            entries.retain(|_, e| now.saturating_duration_since(e.last_failure) < forget);
            if entries.len() >= self.config.max_entries {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(ip, _)| *ip)
                {
                    entries.remove(&oldest);
                }
            }
        }
        let e = entries.entry(ip).or_insert(Entry {
            failures: 0,
            last_failure: now,
        });
        if now.saturating_duration_since(e.last_failure) >= self.config.forget_after {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }

    fn delay(&self, failures: u32) -> Duration {
        if failures < self.config.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.config.free_failures).min(16);
        self.config
            .base_delay
            .saturating_mul(1 << doublings)
            .min(self.config.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn failures_beyond_the_free_ones_are_throttled_and_backed_off() {
        let l = LoginLimiter::new(LimiterConfig::default());
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check(ip(1), t), Admission::Allowed);
            l.failed(ip(1), t);
        }
        assert_eq!(
            l.check(ip(1), t),
            Admission::Throttled(Duration::from_millis(500))
        );
        assert_eq!(
            l.check(ip(2), t),
            Admission::Allowed,
            "other addresses unaffected"
        );
        let later = t + Duration::from_millis(500);
        assert_eq!(l.check(ip(1), later), Admission::Allowed);
        l.failed(ip(1), later);
        assert_eq!(
            l.check(ip(1), later),
            Admission::Throttled(Duration::from_secs(1))
        );
        l.succeeded(ip(1));
        assert_eq!(l.check(ip(1), later), Admission::Allowed);
    }

    #[test]
    fn the_table_is_bounded() {
        let l = LoginLimiter::new(LimiterConfig {
            max_entries: 3,
            ..LimiterConfig::default()
        });
        let t = Instant::now();
        for n in 0..10 {
            l.failed(ip(n), t + Duration::from_millis(n as u64));
        }
        assert!(l.entries.lock().unwrap().len() <= 3);
    }
}
