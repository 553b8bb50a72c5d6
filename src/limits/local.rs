//! The limits kept in this instance's memory (GCRA, via governor): per client IP, per buyer
//! and per sale on the purchase path, and per buyer on challenge and token issuance, each set
//! in `[limits]` (rate 0 = off). A refusal is a [`Limited`], which the edge answers with 429
//! `rate-limited`, `Retry-After` and the IETF `RateLimit` / `RateLimit-Policy` headers.
//!
//! Keyed limiters remember one state per key; `cleanup` (run periodically by a worker)
//! forgets keys whose allowance is full again, so memory stays bounded by recent traffic.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{LimitSettings, LimitsSettings};
use crate::domain::{SaleId, UserId};

/// What a limit allows, for the `RateLimit-Policy` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Which limit: `ip`, `user`, `sale`, `issue` or `user-in-flight`.
    pub scope: &'static str,
    /// Requests per second.
    pub rate_per_sec: u32,
    /// Burst size.
    pub burst: u32,
}

impl Policy {
    /// The window, in whole seconds, over which `burst` requests are allowed (at least 1).
    pub fn window_secs(&self) -> u64 {
        u64::from(self.burst)
            .div_ceil(u64::from(self.rate_per_sec.max(1)))
            .max(1)
    }
}

/// A request over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused it.
    pub policy: Policy,
    /// How long until a request would conform.
    pub retry_after: Duration,
}

type Keyed<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One keyed GCRA limiter with its policy.
struct KeyedLimit<K: Hash + Eq + Clone, C: Clock> {
    limiter: Keyed<K, C>,
    policy: Policy,
    clock: C,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimit<K, C> {
    fn new(scope: &'static str, settings: LimitSettings, clock: &C) -> Option<Self> {
        let rate = NonZeroU32::new(settings.rate_per_sec)?;
        let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            policy: Policy {
                scope,
                rate_per_sec: rate.get(),
                burst: burst.get(),
            },
            clock: clock.clone(),
        })
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        self.limiter.check_key(key).map_err(|not_until| Limited {
            policy: self.policy,
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    fn cleanup(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }
}

/// The local limits: the three of the purchase path and the one of issuance.
pub struct RateLimits<C: Clock = DefaultClock> {
    ip: Option<KeyedLimit<IpAddr, C>>,
    user: Option<KeyedLimit<UserId, C>>,
    sale: Option<KeyedLimit<SaleId, C>>,
    issue: Option<KeyedLimit<UserId, C>>,
}

impl RateLimits<DefaultClock> {
    /// Limits on the real clock.
    pub fn new(settings: &LimitsSettings) -> Self {
        Self::with_clock(settings, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits on `clock` (tests move a fake one).
    pub fn with_clock(settings: &LimitsSettings, clock: &C) -> Self {
        Self {
            ip: KeyedLimit::new("ip", settings.ip, clock),
            user: KeyedLimit::new("user", settings.user, clock),
            sale: KeyedLimit::new("sale", settings.sale, clock),
            issue: KeyedLimit::new("issue", settings.issue, clock),
        }
    }

    /// Whether a per-IP limit is configured.
    pub fn limits_ip(&self) -> bool {
        self.ip.is_some()
    }

    /// Counts a request from `ip` against the per-IP limit.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        self.ip.as_ref().map_or(Ok(()), |l| l.check(&ip))
    }

    /// Counts a request by `user` against the per-buyer limit.
    pub fn check_user(&self, user: &UserId) -> Result<(), Limited> {
        self.user.as_ref().map_or(Ok(()), |l| l.check(user))
    }

    /// Counts a request for `sale` against the per-sale limit.
    pub fn check_sale(&self, sale: &SaleId) -> Result<(), Limited> {
        self.sale.as_ref().map_or(Ok(()), |l| l.check(sale))
    }

    /// Counts a challenge or token request by `user` against the issuance limit.
    pub fn check_issue(&self, user: &UserId) -> Result<(), Limited> {
        self.issue.as_ref().map_or(Ok(()), |l| l.check(user))
    }

    /// Forgets keys whose allowance is full again; returns how many keys remain.
    pub fn cleanup(&self) -> usize {
        self.ip.as_ref().map_or(0, KeyedLimit::cleanup)
            + self.user.as_ref().map_or(0, KeyedLimit::cleanup)
            + self.sale.as_ref().map_or(0, KeyedLimit::cleanup)
            + self.issue.as_ref().map_or(0, KeyedLimit::cleanup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    const OFF: LimitSettings = LimitSettings {
        rate_per_sec: 0,
        burst: 0,
    };

    fn user_limits(
        rate: u32,
        burst: u32,
        clock: &FakeRelativeClock,
    ) -> RateLimits<FakeRelativeClock> {
        let settings = LimitsSettings {
            ip: OFF,
            user: LimitSettings {
                rate_per_sec: rate,
                burst,
            },
            sale: OFF,
            sale_shared: OFF,
            issue: OFF,
            cleanup_interval_ms: 1000,
        };
        RateLimits::with_clock(&settings, clock)
    }

    /// Sends `n` requests `every` apart; returns how many were allowed.
    fn send(
        limits: &RateLimits<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        n: u32,
        every: Duration,
    ) -> u32 {
        let alice = UserId::parse("alice").unwrap();
        (0..n)
            .map(|_| {
                let ok = limits.check_user(&alice).is_ok();
                clock.advance(every);
                u32::from(ok)
            })
            .sum()
    }

    #[test]
    fn a_buyer_at_nine_tenths_of_the_rate_is_never_limited() {
        let clock = FakeRelativeClock::default();
        let limits = user_limits(10, 5, &clock);
        let every = Duration::from_secs(1) / 9; // 9 per second against 10 allowed
        assert_eq!(send(&limits, &clock, 500, every), 500);
    }

    #[test]
    fn a_buyer_at_five_times_the_rate_gets_exactly_burst_plus_quota() {
        let clock = FakeRelativeClock::default();
        let limits = user_limits(10, 5, &clock);
        // 50 per second for 10 s: the burst, then one per 100 ms.
        let allowed = send(&limits, &clock, 500, Duration::from_millis(20));
        assert_eq!(
            allowed,
            5 + 10 * 10 - 1,
            "burst + rate x seconds, the last slot falling at 10 s"
        );
    }

    #[test]
    fn a_refusal_says_how_long_to_wait() {
        let clock = FakeRelativeClock::default();
        let limits = user_limits(2, 1, &clock);
        let bob = UserId::parse("bob").unwrap();
        assert!(limits.check_user(&bob).is_ok());
        let limited = limits.check_user(&bob).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_millis(500));
        assert_eq!(limited.policy.scope, "user");
        clock.advance(Duration::from_millis(500));
        assert!(limits.check_user(&bob).is_ok());
    }

    #[test]
    fn limits_are_per_key_and_off_when_rate_is_zero() {
        let clock = FakeRelativeClock::default();
        let limits = user_limits(1, 1, &clock);
        assert!(limits.check_user(&UserId::parse("a").unwrap()).is_ok());
        assert!(limits.check_user(&UserId::parse("b").unwrap()).is_ok());
        assert!(limits.check_user(&UserId::parse("a").unwrap()).is_err());
        for _ in 0..100 {
            assert!(limits.check_ip("127.0.0.1".parse().unwrap()).is_ok());
            assert!(limits.check_issue(&UserId::parse("a").unwrap()).is_ok());
        }
    }

    #[test]
    fn issuance_is_limited_per_buyer_apart_from_purchases() {
        let clock = FakeRelativeClock::default();
        let settings = LimitsSettings {
            issue: LimitSettings {
                rate_per_sec: 1,
                burst: 2,
            },
            ..LimitsSettings::default()
        };
        let limits = RateLimits::with_clock(&settings, &clock);
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        assert!(limits.check_issue(&alice).is_ok());
        assert!(limits.check_issue(&alice).is_ok());
        let limited = limits.check_issue(&alice).unwrap_err();
        assert_eq!(limited.policy.scope, "issue");
        assert!(
            limits.check_issue(&bob).is_ok(),
            "another buyer has their own"
        );
        assert!(
            limits.check_user(&alice).is_ok(),
            "purchases are counted apart"
        );
        clock.advance(Duration::from_secs(1));
        assert!(limits.check_issue(&alice).is_ok());
    }

    #[test]
    fn cleanup_forgets_idle_keys() {
        let clock = FakeRelativeClock::default();
        let limits = user_limits(10, 10, &clock);
        for i in 0..1000 {
            limits
                .check_user(&UserId::parse(&format!("u{i}")).unwrap())
                .unwrap();
        }
        assert_eq!(limits.cleanup(), 1000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(limits.cleanup(), 0);
    }

    #[test]
    fn policy_window_covers_the_burst() {
        let p = Policy {
            scope: "ip",
            rate_per_sec: 10,
            burst: 25,
        };
        assert_eq!(p.window_secs(), 3);
    }
}
