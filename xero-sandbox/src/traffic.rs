//! Server-side rate limits (Xero's numbers by default) and fault injection.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{self, Resource};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The limits the sandbox enforces per organisation and per app.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxLimits {
    /// Enforce (429s); when off, the headers are still sent.
    pub enabled: bool,
    /// Calls in flight per organisation.
    pub max_in_flight: usize,
    /// Calls per minute window per organisation.
    pub per_minute: u32,
    /// Calls per day window per organisation.
    pub per_day: u32,
    /// Calls per minute window for the whole app.
    pub app_per_minute: u32,
    /// Length of the "minute" window (shorten it in tests).
    #[serde(with = "secs")]
    pub minute_window: Duration,
    /// Length of the "day" window.
    #[serde(with = "secs")]
    pub day_window: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=1e9).contains(&v) {
            return Err(serde::de::Error::custom("seconds out of range"));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight: wire::MAX_IN_FLIGHT,
            per_minute: wire::PER_MINUTE,
            per_day: wire::PER_DAY,
            app_per_minute: wire::APP_PER_MINUTE,
            minute_window: Duration::from_secs(wire::MINUTE_WINDOW_SECS),
            day_window: Duration::from_secs(wire::DAY_WINDOW_SECS),
        }
    }
}

/// Remaining calls, for the `X-*-Remaining` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Remaining {
    pub minute: u32,
    pub day: u32,
    pub app_minute: u32,
}

/// A 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub problem: &'static str,
    pub retry_after_secs: u64,
}

#[derive(Debug, Default)]
struct OrgWindows {
    in_flight: usize,
    minute: VecDeque<Instant>,
    day: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct LimState {
    orgs: HashMap<Uuid, OrgWindows>,
    app: VecDeque<Instant>,
}

/// The limiter.
#[derive(Debug)]
pub(crate) struct Limiter {
    cfg: Mutex<SandboxLimits>,
    state: Mutex<LimState>,
}

/// Holds an in-flight slot until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    limiter: Arc<Limiter>,
    tenant: Uuid,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = lock(&self.limiter.state);
        if let Some(o) = st.orgs.get_mut(&self.tenant) {
            o.in_flight = o.in_flight.saturating_sub(1);
        }
    }
}

fn prune(q: &mut VecDeque<Instant>, span: Duration, now: Instant) {
    while q.front().is_some_and(|t| *t + span <= now) {
        q.pop_front();
    }
}

fn wait_secs(q: &VecDeque<Instant>, span: Duration, now: Instant) -> u64 {
    let free_at = q.front().map_or(now, |t| *t + span);
    let d = free_at.saturating_duration_since(now);
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl Limiter {
    pub(crate) fn new(cfg: SandboxLimits) -> Arc<Self> {
        Arc::new(Self {
            cfg: Mutex::new(cfg),
            state: Mutex::new(LimState::default()),
        })
    }

    pub(crate) fn config(&self) -> SandboxLimits {
        *lock(&self.cfg)
    }

    pub(crate) fn set_config(&self, cfg: SandboxLimits) {
        *lock(&self.cfg) = cfg;
    }

    /// Forgets every counted call.
    pub(crate) fn reset(&self) {
        let mut st = lock(&self.state);
        st.app.clear();
        for o in st.orgs.values_mut() {
            o.minute.clear();
            o.day.clear();
        }
    }

    /// Counts a call for `tenant`, or refuses it.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        tenant: Uuid,
    ) -> Result<(InFlight, Remaining), Limited> {
        let cfg = self.config();
        let now = Instant::now();
        let mut st = lock(&self.state);
        prune(&mut st.app, cfg.minute_window, now);
        let app_len = st.app.len() as u32;
        let o = st.orgs.entry(tenant).or_default();
        prune(&mut o.minute, cfg.minute_window, now);
        prune(&mut o.day, cfg.day_window, now);
        let remaining = Remaining {
            minute: cfg.per_minute.saturating_sub(o.minute.len() as u32),
            day: cfg.per_day.saturating_sub(o.day.len() as u32),
            app_minute: cfg.app_per_minute.saturating_sub(app_len),
        };
        if cfg.enabled {
            let refuse = if remaining.day == 0 {
                Some((wire::PROBLEM_DAY, wait_secs(&o.day, cfg.day_window, now)))
            } else if remaining.minute == 0 {
                Some((
                    wire::PROBLEM_MINUTE,
                    wait_secs(&o.minute, cfg.minute_window, now),
                ))
            } else if remaining.app_minute == 0 {
                Some((
                    wire::PROBLEM_APP_MINUTE,
                    wait_secs(&st.app, cfg.minute_window, now),
                ))
            } else if o.in_flight >= cfg.max_in_flight {
                // Xero documents no separate value for the concurrency
                // limit; it is a short minute-style wait.
                Some((wire::PROBLEM_MINUTE, 1))
            } else {
                None
            };
            if let Some((problem, retry_after_secs)) = refuse {
                return Err(Limited {
                    problem,
                    retry_after_secs,
                });
            }
        }
        let o = st.orgs.entry(tenant).or_default();
        o.in_flight += 1;
        o.minute.push_back(now);
        o.day.push_back(now);
        st.app.push_back(now);
        Ok((
            InFlight {
                limiter: self.clone(),
                tenant,
            },
            Remaining {
                minute: remaining.minute.saturating_sub(1),
                day: remaining.day.saturating_sub(1),
                app_minute: remaining.app_minute.saturating_sub(1),
            },
        ))
    }
}

/// Fault injection on Accounting API calls. Rates are probabilities per
/// call drawn from a generator seeded with the sandbox seed, so a sequence
/// of calls meets the same faults on every run; the `*_next` counters
/// force faults on the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Share of calls answered with `fail_status`.
    pub fail_rate: f64,
    /// The 5xx to answer (default 503).
    pub fail_status: Option<u16>,
    /// Share of calls delayed by `slow_ms`.
    pub slow_rate: f64,
    /// Delay of slow calls.
    pub slow_ms: u64,
    /// Share of calls whose connection drops mid-response.
    pub drop_rate: f64,
    /// Fail exactly the next N calls.
    pub fail_next: u32,
    /// Drop exactly the next N calls.
    pub drop_next: u32,
    /// Slow down exactly the next N calls.
    pub slow_next: u32,
    /// Carry out the next N successful token requests (so a refresh token
    /// rotates) but drop the connection before the answer arrives: a lost
    /// refresh response.
    pub lose_token_responses_next: u32,
    /// Fail every call listing this resource (an outage of one endpoint
    /// mid-sync), whatever the other settings say.
    pub fail_resource: Option<Resource>,
}

/// The longest injected delay.
const MAX_SLOW_MS: u64 = 600_000;

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Fail(u16),
    Drop,
    Slow(u64),
}

#[derive(Debug)]
pub(crate) struct Faults {
    state: Mutex<(FaultSettings, ChaCha8Rng)>,
}

impl Faults {
    pub(crate) fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            state: Mutex::new((settings, ChaCha8Rng::seed_from_u64(seed ^ 0xFA17_FA17))),
        }
    }

    pub(crate) fn settings(&self) -> FaultSettings {
        lock(&self.state).0
    }

    pub(crate) fn set(&self, s: FaultSettings) {
        lock(&self.state).0 = s;
    }

    /// Whether this successful token response is to be lost (see
    /// [`FaultSettings::lose_token_responses_next`]).
    pub(crate) fn lose_token_response(&self) -> bool {
        let mut st = lock(&self.state);
        if st.0.lose_token_responses_next > 0 {
            st.0.lose_token_responses_next -= 1;
            true
        } else {
            false
        }
    }

    /// What happens to one call listing `resource`.
    pub(crate) fn decide(&self, resource: Resource) -> Fault {
        let mut st = lock(&self.state);
        let (s, rng) = &mut *st;
        let status = s
            .fail_status
            .filter(|c| (500..=599).contains(c))
            .unwrap_or(503);
        if s.fail_resource == Some(resource) {
            return Fault::Fail(status);
        }
        if s.drop_next > 0 {
            s.drop_next -= 1;
            return Fault::Drop;
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Fault::Fail(status);
        }
        if s.slow_next > 0 {
            s.slow_next -= 1;
            return Fault::Slow(s.slow_ms.min(MAX_SLOW_MS));
        }
        let r: f64 = rng.gen();
        let drop = s.drop_rate.clamp(0.0, 1.0);
        let fail = s.fail_rate.clamp(0.0, 1.0);
        let slow = s.slow_rate.clamp(0.0, 1.0);
        if r < drop {
            Fault::Drop
        } else if r < drop + fail {
            Fault::Fail(status)
        } else if r < drop + fail + slow {
            Fault::Slow(s.slow_ms.min(MAX_SLOW_MS))
        } else {
            Fault::None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minute_then_day_limits() {
        let l = Limiter::new(SandboxLimits {
            per_minute: 2,
            per_day: 3,
            ..SandboxLimits::default()
        });
        let t = Uuid::new_v4();
        let (a, r) = l.acquire(t).unwrap();
        assert_eq!(r.minute, 1);
        drop(a);
        let _b = l.acquire(t).unwrap();
        let e = l.acquire(t).unwrap_err();
        assert_eq!(e.problem, "minute");
        assert!(e.retry_after_secs >= 1 && e.retry_after_secs <= 60);
        // Another organisation is unaffected.
        assert!(l.acquire(Uuid::new_v4()).is_ok());
        l.reset();
        let _c = l.acquire(t).unwrap();
        let _d = l.acquire(t).unwrap();
        l.set_config(SandboxLimits {
            per_minute: 100,
            per_day: 3,
            ..SandboxLimits::default()
        });
        let _e = l.acquire(t).unwrap();
        let e = l.acquire(t).unwrap_err();
        assert_eq!(e.problem, "day");
        assert!(e.retry_after_secs > 80_000);
    }

    #[test]
    fn in_flight_limit() {
        let l = Limiter::new(SandboxLimits {
            max_in_flight: 1,
            ..SandboxLimits::default()
        });
        let t = Uuid::new_v4();
        let a = l.acquire(t).unwrap();
        assert!(l.acquire(t).is_err());
        drop(a);
        assert!(l.acquire(t).is_ok());
    }

    #[test]
    fn faults_are_deterministic() {
        let s = FaultSettings {
            fail_rate: 0.3,
            drop_rate: 0.1,
            ..Default::default()
        };
        let a = Faults::new(s, 7);
        let b = Faults::new(s, 7);
        let xa: Vec<Fault> = (0..50).map(|_| a.decide(Resource::Invoices)).collect();
        let xb: Vec<Fault> = (0..50).map(|_| b.decide(Resource::Invoices)).collect();
        assert_eq!(xa, xb);
        assert!(xa.contains(&Fault::Fail(503)) && xa.contains(&Fault::Drop));
        let c = Faults::new(
            FaultSettings {
                fail_next: 2,
                ..Default::default()
            },
            1,
        );
        assert_eq!(c.decide(Resource::Invoices), Fault::Fail(503));
        assert_eq!(c.decide(Resource::Invoices), Fault::Fail(503));
        assert_eq!(c.decide(Resource::Invoices), Fault::None);
        let d = Faults::new(
            FaultSettings {
                fail_resource: Some(Resource::Payments),
                fail_status: Some(500),
                ..Default::default()
            },
            1,
        );
        for _ in 0..3 {
            assert_eq!(d.decide(Resource::Payments), Fault::Fail(500));
            assert_eq!(d.decide(Resource::Invoices), Fault::None);
        }
    }
}
