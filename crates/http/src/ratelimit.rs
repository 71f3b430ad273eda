//! Per-client quotas: each organisation gets its configured requests per second
//! (default 100, with one second's worth as burst), counted separately, so one
//! organisation's flood is refused with `429` without slowing anyone else.

use std::collections::HashMap;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter, state::InMemoryState, state::NotKeyed};

use crate::config::ClientConfig;

const DEFAULT_RPS: u32 = 100;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// Why a request is over quota, for the `429` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    /// The quota, requests per second.
    pub limit: u32,
    /// Seconds until a request would be admitted (rounded up, at least 1).
    pub retry_after_secs: u64,
}

pub struct ClientLimits {
    limiters: HashMap<String, (u32, Limiter)>,
    clock: DefaultClock,
}

impl ClientLimits {
    pub fn new(clients: &[ClientConfig]) -> Self {
        let limiters = clients
            .iter()
            .map(|c| {
                let rps = c.requests_per_second.unwrap_or(DEFAULT_RPS).max(1);
                let quota = Quota::per_second(NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN));
                (c.org_no.clone(), (rps, RateLimiter::direct(quota)))
            })
            .collect();
        ClientLimits {
            limiters,
            clock: DefaultClock::default(),
        }
    }

    /// Admits one request from `org_no`, or says how long to wait. Organisations
    /// not in the config are refused elsewhere (403) and are not limited here.
    pub fn check(&self, org_no: &str) -> Result<(), OverQuota> {
        let Some((limit, limiter)) = self.limiters.get(org_no) else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            OverQuota {
                limit: *limit,
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            }
        })
    }
}

/// Per-person quotas on `/v1/me/*` and the embedded page, keyed by the keyed
/// hash of the person's id (the id itself is never held here). Every person
/// gets the same quota: `[quota] person_requests_per_second`, with
/// `person_burst` requests allowed at once.
pub struct PersonLimits {
    limit: u32,
    limiter: governor::DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    /// Checks since the last sweep of idle keys.
    checks: std::sync::atomic::AtomicU32,
}

/// Idle keys (persons whose bucket is full again) are dropped after this many
/// checks, so the map holds only persons seen recently.
const SWEEP_EVERY: u32 = 4096;

impl PersonLimits {
    pub fn new(q: &crate::config::QuotaConfig) -> Self {
        let rps = q.person_requests_per_second().max(1);
        let burst = q.person_burst().max(1);
        let quota = Quota::per_second(NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        PersonLimits {
            limit: rps,
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Admits one request of the person whose hashed id is `person_hash`, or
    /// says how long to wait.
    pub fn check(&self, person_hash: &str) -> Result<(), OverQuota> {
        use std::sync::atomic::Ordering;
        if self.checks.fetch_add(1, Ordering::Relaxed) >= SWEEP_EVERY {
            self.checks.store(0, Ordering::Relaxed);
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&person_hash.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                OverQuota {
                    limit: self.limit,
                    retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_person_has_their_own_quota() {
        let limits = PersonLimits::new(&crate::config::QuotaConfig {
            person_requests_per_second: Some(1),
            person_burst: Some(3),
        });
        let admitted = (0..10).filter(|_| limits.check("aaaa").is_ok()).count();
        assert_eq!(admitted, 3, "the burst");
        let over = limits.check("aaaa").unwrap_err();
        assert_eq!(over.limit, 1);
        assert!(over.retry_after_secs >= 1);
        assert!(limits.check("bbbb").is_ok(), "another person is untouched");
    }

    fn client(org: &str, rps: Option<u32>) -> ClientConfig {
        ClientConfig {
            org_no: org.into(),
            name: "x".into(),
            roles: vec![],
            requests_per_second: rps,
            embed_origins: Vec::new(),
        }
    }

    #[test]
    fn each_organisation_has_its_own_quota() {
        let limits = ClientLimits::new(&[client("910000001", Some(5)), client("910000002", None)]);
        let admitted = (0..20)
            .filter(|_| limits.check("910000001").is_ok())
            .count();
        assert_eq!(admitted, 5, "a burst of one second's worth");
        let over = limits.check("910000001").unwrap_err();
        assert_eq!(over.limit, 5);
        assert!(over.retry_after_secs >= 1);
        assert!(
            (0..50).all(|_| limits.check("910000002").is_ok()),
            "the other organisation is untouched"
        );
        assert!(limits.check("999999999").is_ok());
    }
}
