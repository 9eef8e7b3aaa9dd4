//! Xero's rate limits, enforced locally.
//!
//! Xero allows, per organisation, 5 concurrent calls, 60 calls in any rolling
//! minute and 5,000 in any rolling day, and per app 10,000 calls a minute across
//! every organisation. Hitting a limit costs a 429 and, for the day limit, a
//! day of nothing; so the client waits *before* sending rather than after being
//! refused. The server's `X-*-Remaining` headers only ever tighten the local
//! view (another process may share the organisation), and a 429 blocks the
//! window it names until `Retry-After` has passed, for every caller sharing the
//! limiter.
//!
//! One [`RateLimits`] per process, shared (in an `Arc`) by every client, holds
//! the app-wide window and one [`OrgLimiter`] per organisation.
//!
//! Time comes from a [`Clock`] so tests can run minutes of waiting instantly:
//! [`VirtualClock`] jumps to each deadline instead of sleeping.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Header: calls left in the organisation's current minute.
pub const MIN_LIMIT_REMAINING: &str = "x-minlimit-remaining";
/// Header: calls left in the organisation's current day.
pub const DAY_LIMIT_REMAINING: &str = "x-daylimit-remaining";
/// Header: calls left in the app's current minute.
pub const APP_MIN_LIMIT_REMAINING: &str = "x-appminlimit-remaining";
/// Header on a 429: which limit was hit.
pub const RATE_LIMIT_PROBLEM: &str = "x-rate-limit-problem";

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest a 429's `Retry-After` is believed. Every Xero limit is a
/// rolling minute or day, so no honest answer asks for more than a day; a
/// larger one (a bug or a hostile server) must not block an organisation for
/// years or overflow the clock.
pub const MAX_RETRY_AFTER: Duration = DAY;

/// A source of time and sleep.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Completes at (or, for a virtual clock, as if at) `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now() + duration)
    }
}

/// The real clock (tokio's, so `tokio::time::pause` also applies).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// A clock that never waits: sleeping moves its time forward to the deadline
/// (never backward). Real I/O still takes real time, but it is not counted.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl VirtualClock {
    /// A clock starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    /// Virtual time passed since creation.
    pub fn elapsed(&self) -> Duration {
        *lock(&self.offset)
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        *lock(&self.offset) += by;
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.start + *lock(&self.offset)
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        {
            let mut offset = lock(&self.offset);
            let target = deadline.saturating_duration_since(self.start);
            if target > *offset {
                *offset = target;
            }
        }
        Box::pin(tokio::task::yield_now())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not disable rate limiting; the state is plain
    // counters and stays meaningful.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The numbers; defaults are Xero's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Concurrent calls per organisation (Xero: 5).
    pub max_in_flight: usize,
    /// Calls per rolling minute per organisation (Xero: 60).
    pub per_minute: u32,
    /// Calls per rolling day per organisation (Xero: 5,000).
    pub per_day: u32,
    /// Calls per rolling minute for the whole app (Xero: 10,000).
    pub app_per_minute: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 5,
            per_minute: 60,
            per_day: 5_000,
            app_per_minute: 10_000,
        }
    }
}

/// Which limit a 429 names (`X-Rate-Limit-Problem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitProblem {
    /// The organisation's minute limit.
    Minute,
    /// The organisation's day limit.
    Day,
    /// The app's minute limit.
    AppMinute,
    /// Missing or unknown; treated like a minute limit.
    Other(String),
}

impl RateLimitProblem {
    /// Parses the header value.
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "minute" => Self::Minute,
            Some(v) if v == "day" => Self::Day,
            Some(v) if v == "appminute" => Self::AppMinute,
            Some(v) => Self::Other(v),
            None => Self::Other(String::new()),
        }
    }

    /// Reads it from response headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::parse(
            headers
                .get(RATE_LIMIT_PROBLEM)
                .and_then(|v| v.to_str().ok()),
        )
    }
}

impl fmt::Display for RateLimitProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Minute => f.write_str("minute"),
            Self::Day => f.write_str("day"),
            Self::AppMinute => f.write_str("appminute"),
            Self::Other(s) if s.is_empty() => f.write_str("unspecified"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// `Retry-After` in seconds, if present and numeric, at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The organisation's day limit is used up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Xero day limit reached for this organisation; retry after {}s", retry_after.as_secs())]
pub struct DayLimitReached {
    /// How long until a call may succeed again.
    pub retry_after: Duration,
}

/// A rolling window counting calls in coarse buckets, so a day of 5,000 calls
/// costs at most a few hundred entries. Coarsening is conservative: a bucket
/// expires one window after its *last* call.
#[derive(Debug)]
struct Window {
    limit: u32,
    span: Duration,
    granularity: Duration,
    buckets: VecDeque<Bucket>,
    count: u32,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    last: Instant,
    count: u32,
}

impl Window {
    fn new(limit: u32, span: Duration) -> Self {
        Self {
            limit: limit.max(1),
            span,
            granularity: span / 600,
            buckets: VecDeque::new(),
            count: 0,
            blocked_until: None,
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(front) = self.buckets.front() {
            if front.last + self.span <= now {
                self.count = self.count.saturating_sub(front.count);
                self.buckets.pop_front();
            } else {
                break;
            }
        }
        if self.blocked_until.is_some_and(|t| t <= now) {
            self.blocked_until = None;
        }
    }

    /// `None` if a call may start now, else the earliest instant it may.
    fn next_free(&mut self, now: Instant) -> Option<Instant> {
        self.prune(now);
        let mut at = self.blocked_until;
        if self.count >= self.limit {
            let mut to_free = self.count + 1 - self.limit;
            let mut free_at = None;
            for b in &self.buckets {
                free_at = Some(b.last + self.span);
                if b.count >= to_free {
                    break;
                }
                to_free -= b.count;
            }
            at = at.max(free_at);
        }
        at
    }

    fn record(&mut self, now: Instant, n: u32) {
        if n == 0 {
            return;
        }
        match self.buckets.back_mut() {
            Some(b) if now < b.start + self.granularity => {
                b.last = b.last.max(now);
                b.count += n;
            }
            _ => self.buckets.push_back(Bucket {
                start: now,
                last: now,
                count: n,
            }),
        }
        self.count += n;
    }

    /// The server says only `remaining` calls are left: if we believed more,
    /// count the difference as used now.
    fn tighten(&mut self, now: Instant, remaining: u32) {
        self.prune(now);
        let local_remaining = self.limit.saturating_sub(self.count);
        if remaining < local_remaining {
            self.record(now, local_remaining - remaining);
        }
    }

    fn block_until(&mut self, until: Instant) {
        self.blocked_until = self.blocked_until.max(Some(until));
    }

    fn used(&mut self, now: Instant) -> u32 {
        self.prune(now);
        self.count
    }
}

/// Counts of calls in the current windows, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSnapshot {
    /// Calls currently in flight for the organisation.
    pub in_flight: usize,
    /// Calls in the organisation's rolling minute.
    pub minute_used: u32,
    /// Calls in the organisation's rolling day.
    pub day_used: u32,
    /// Calls in the app's rolling minute.
    pub app_minute_used: u32,
}

/// Every limiter of one app: share one per process.
#[derive(Debug)]
pub struct RateLimits {
    config: LimitConfig,
    clock: Arc<dyn Clock>,
    app: Arc<Mutex<Window>>,
    orgs: Mutex<HashMap<String, Arc<OrgLimiter>>>,
}

impl RateLimits {
    /// Xero's limits on the real clock.
    pub fn new(config: LimitConfig) -> Arc<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// With an injected clock.
    pub fn with_clock(config: LimitConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            config,
            clock,
            app: Arc::new(Mutex::new(Window::new(config.app_per_minute, MINUTE))),
            orgs: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> LimitConfig {
        self.config
    }

    /// The clock everything waits on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The limiter of one organisation (created on first use).
    pub fn for_org(&self, tenant_id: &str) -> Arc<OrgLimiter> {
        let mut orgs = lock(&self.orgs);
        Arc::clone(orgs.entry(tenant_id.to_owned()).or_insert_with(|| {
            Arc::new(OrgLimiter {
                in_flight: Arc::new(Semaphore::new(self.config.max_in_flight.max(1))),
                max_in_flight: self.config.max_in_flight.max(1),
                windows: Mutex::new(OrgWindows {
                    minute: Window::new(self.config.per_minute, MINUTE),
                    day: Window::new(self.config.per_day, DAY),
                }),
                app: Arc::clone(&self.app),
                clock: Arc::clone(&self.clock),
            })
        }))
    }
}

#[derive(Debug)]
struct OrgWindows {
    minute: Window,
    day: Window,
}

/// The limits of one organisation plus the app-wide window.
#[derive(Debug)]
pub struct OrgLimiter {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    windows: Mutex<OrgWindows>,
    app: Arc<Mutex<Window>>,
    clock: Arc<dyn Clock>,
}

/// Held for the duration of one call; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct CallPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl OrgLimiter {
    /// Waits until a call may be sent, then counts it. Fails at once (no
    /// waiting for hours) when the day limit is used up.
    pub async fn acquire(&self) -> Result<CallPermit, DayLimitReached> {
        // The semaphore is never closed; if it were, carry on without a slot
        // rather than fail the call.
        let permit = Arc::clone(&self.in_flight).acquire_owned().await.ok();
        loop {
            let now = self.clock.now();
            let wait_until = {
                // Lock order: organisation, then app.
                let mut org = lock(&self.windows);
                if let Some(t) = org.day.next_free(now) {
                    return Err(DayLimitReached {
                        retry_after: t.saturating_duration_since(now),
                    });
                }
                let mut app = lock(&self.app);
                match org.minute.next_free(now).max(app.next_free(now)) {
                    None => {
                        org.minute.record(now, 1);
                        org.day.record(now, 1);
                        app.record(now, 1);
                        return Ok(CallPermit { _permit: permit });
                    }
                    Some(t) => t,
                }
            };
            tracing::debug!(
                wait_ms = wait_until.saturating_duration_since(now).as_millis() as u64,
                "waiting for Xero rate limit"
            );
            self.clock.sleep_until(wait_until).await;
        }
    }

    /// Tightens the windows from a response's `X-*-Remaining` headers.
    pub fn observe(&self, headers: &HeaderMap) {
        let get =
            |name: &str| -> Option<u32> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let now = self.clock.now();
        let (minute, day, app) = (
            get(MIN_LIMIT_REMAINING),
            get(DAY_LIMIT_REMAINING),
            get(APP_MIN_LIMIT_REMAINING),
        );
        if minute.is_some() || day.is_some() {
            let mut org = lock(&self.windows);
            if let Some(r) = minute {
                org.minute.tighten(now, r);
            }
            if let Some(r) = day {
                org.day.tighten(now, r);
            }
        }
        if let Some(r) = app {
            lock(&self.app).tighten(now, r);
        }
    }

    /// Calls the organisation may still make in its rolling day, as far as
    /// this process knows (its own calls, tightened by Xero's
    /// `X-DayLimit-Remaining`).
    pub fn day_remaining(&self) -> u32 {
        let now = self.clock.now();
        let mut org = lock(&self.windows);
        let used = org.day.used(now);
        org.day.limit.saturating_sub(used)
    }

    /// Records a 429: the named window is closed for `retry_after`, at most
    /// [`MAX_RETRY_AFTER`].
    pub fn rate_limited(&self, problem: &RateLimitProblem, retry_after: Duration) {
        let now = self.clock.now();
        // Capped again here because callers may pass a configured default;
        // should the clock still not reach that far, block nothing rather
        // than panic (a further 429 just comes back).
        let Some(until) = now.checked_add(retry_after.min(MAX_RETRY_AFTER)) else {
            return;
        };
        match problem {
            RateLimitProblem::Day => lock(&self.windows).day.block_until(until),
            RateLimitProblem::AppMinute => lock(&self.app).block_until(until),
            RateLimitProblem::Minute | RateLimitProblem::Other(_) => {
                lock(&self.windows).minute.block_until(until)
            }
        }
    }

    /// Current usage.
    pub fn snapshot(&self) -> LimitSnapshot {
        let now = self.clock.now();
        let (minute_used, day_used) = {
            let mut org = lock(&self.windows);
            (org.minute.used(now), org.day.used(now))
        };
        LimitSnapshot {
            in_flight: self
                .max_in_flight
                .saturating_sub(self.in_flight.available_permits()),
            minute_used,
            day_used,
            app_minute_used: lock(&self.app).used(now),
        }
    }

    /// The clock this limiter waits on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn limits(config: LimitConfig) -> (Arc<VirtualClock>, Arc<RateLimits>) {
        let clock = VirtualClock::new();
        let limits = RateLimits::with_clock(config, clock.clone());
        (clock, limits)
    }

    #[tokio::test]
    async fn sixty_per_minute_then_waits_a_minute() {
        let (clock, limits) = limits(LimitConfig::default());
        let org = limits.for_org("org-a");
        for _ in 0..60 {
            drop(org.acquire().await.unwrap());
        }
        assert_eq!(clock.elapsed(), Duration::ZERO);
        drop(org.acquire().await.unwrap());
        assert!(clock.elapsed() >= Duration::from_secs(60));
        assert!(clock.elapsed() < Duration::from_secs(61));
        // The window rolled: 1 call in it now.
        assert_eq!(org.snapshot().minute_used, 1);
        assert_eq!(org.snapshot().day_used, 61);
    }

    #[tokio::test]
    async fn rolling_window_frees_oldest_first() {
        let (clock, limits) = limits(LimitConfig::default());
        let org = limits.for_org("org-a");
        for _ in 0..30 {
            drop(org.acquire().await.unwrap());
        }
        clock.advance(Duration::from_secs(30));
        for _ in 0..30 {
            drop(org.acquire().await.unwrap());
        }
        // 61st call waits only until the first 30 leave the window.
        drop(org.acquire().await.unwrap());
        let e = clock.elapsed();
        assert!(
            e >= Duration::from_secs(60) && e < Duration::from_secs(61),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn organisations_are_independent_but_share_app_limit() {
        let config = LimitConfig {
            per_minute: 60,
            app_per_minute: 100,
            ..LimitConfig::default()
        };
        let (clock, limits) = limits(config);
        let a = limits.for_org("a");
        let b = limits.for_org("b");
        for _ in 0..60 {
            drop(a.acquire().await.unwrap());
        }
        for _ in 0..40 {
            drop(b.acquire().await.unwrap());
        }
        assert_eq!(clock.elapsed(), Duration::ZERO);
        // b is under its own limit but the app window is full.
        drop(b.acquire().await.unwrap());
        assert!(clock.elapsed() >= Duration::from_secs(60));
        assert_eq!(b.snapshot().app_minute_used, 1);
        // Same org id, same limiter.
        assert!(Arc::ptr_eq(&a, &limits.for_org("a")));
    }

    #[tokio::test]
    async fn day_limit_fails_fast() {
        let config = LimitConfig {
            per_minute: 1_000,
            per_day: 10,
            ..LimitConfig::default()
        };
        let (clock, limits) = limits(config);
        let org = limits.for_org("a");
        for _ in 0..10 {
            drop(org.acquire().await.unwrap());
        }
        let err = org.acquire().await.unwrap_err();
        assert!(err.retry_after > Duration::from_secs(23 * 3600));
        assert_eq!(clock.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn in_flight_cap() {
        let (_clock, limits) = limits(LimitConfig::default());
        let org = limits.for_org("a");
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(org.acquire().await.unwrap());
        }
        assert_eq!(org.snapshot().in_flight, 5);
        let sixth = tokio::time::timeout(Duration::from_millis(50), org.acquire()).await;
        assert!(sixth.is_err(), "a sixth call must wait");
        held.pop();
        let sixth = tokio::time::timeout(Duration::from_secs(5), org.acquire()).await;
        assert!(sixth.is_ok());
    }

    #[tokio::test]
    async fn remaining_headers_tighten_never_loosen() {
        let (clock, limits) = limits(LimitConfig::default());
        let org = limits.for_org("a");
        drop(org.acquire().await.unwrap());
        let mut h = HeaderMap::new();
        h.insert(MIN_LIMIT_REMAINING, HeaderValue::from_static("2"));
        h.insert(DAY_LIMIT_REMAINING, HeaderValue::from_static("4990"));
        h.insert(APP_MIN_LIMIT_REMAINING, HeaderValue::from_static("9999"));
        org.observe(&h);
        let s = org.snapshot();
        assert_eq!(s.minute_used, 58);
        assert_eq!(s.day_used, 10);
        assert_eq!(s.app_minute_used, 1);
        drop(org.acquire().await.unwrap());
        drop(org.acquire().await.unwrap());
        assert_eq!(clock.elapsed(), Duration::ZERO);
        drop(org.acquire().await.unwrap());
        assert!(clock.elapsed() >= Duration::from_secs(60));
        // A larger remaining than ours changes nothing.
        let before = org.snapshot();
        let mut h = HeaderMap::new();
        h.insert(MIN_LIMIT_REMAINING, HeaderValue::from_static("60"));
        org.observe(&h);
        assert_eq!(org.snapshot(), before);
    }

    #[tokio::test]
    async fn retry_after_blocks_the_named_window() {
        let (clock, limits) = limits(LimitConfig::default());
        let org = limits.for_org("a");
        org.rate_limited(&RateLimitProblem::Minute, Duration::from_secs(17));
        drop(org.acquire().await.unwrap());
        assert_eq!(clock.elapsed(), Duration::from_secs(17));
        // App minute blocks every organisation.
        let other = limits.for_org("b");
        org.rate_limited(&RateLimitProblem::AppMinute, Duration::from_secs(5));
        drop(other.acquire().await.unwrap());
        assert_eq!(clock.elapsed(), Duration::from_secs(22));
        // Day turns into an immediate error.
        org.rate_limited(&RateLimitProblem::Day, Duration::from_secs(3600));
        let err = org.acquire().await.unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(3600));
        assert!(other.acquire().await.is_ok());
    }

    #[tokio::test]
    async fn huge_retry_after_is_capped_and_never_panics() {
        let (clock, day_limits) = limits(LimitConfig::default());
        let org = day_limits.for_org("a");
        // What `Retry-After: 18446744073709551615` used to become: the
        // Instant addition overflowed and panicked.
        org.rate_limited(&RateLimitProblem::Day, Duration::from_secs(u64::MAX));
        org.rate_limited(&RateLimitProblem::AppMinute, Duration::MAX);
        let err = org.acquire().await.unwrap_err();
        assert_eq!(err.retry_after, MAX_RETRY_AFTER);

        // Ten years, which does not overflow, blocks a day, not a decade.
        let (clock2, minute_limits) = limits(LimitConfig::default());
        let org2 = minute_limits.for_org("b");
        org2.rate_limited(
            &RateLimitProblem::Minute,
            Duration::from_secs(10 * 365 * 24 * 3600),
        );
        drop(org2.acquire().await.unwrap());
        assert_eq!(clock2.elapsed(), MAX_RETRY_AFTER);
        assert_eq!(clock.elapsed(), Duration::ZERO);
    }

    #[test]
    fn retry_after_header_is_capped_at_a_day() {
        let mut h = HeaderMap::new();
        for huge in ["18446744073709551615", "315360000", "86401"] {
            h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(huge));
            assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER), "{huge}");
        }
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("86400"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(86_400)));
        // Beyond u64 is not a number of seconds at all.
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("18446744073709551616"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn problem_and_retry_after_parsing() {
        assert_eq!(
            RateLimitProblem::parse(Some("Minute")),
            RateLimitProblem::Minute
        );
        assert_eq!(RateLimitProblem::parse(Some("day")), RateLimitProblem::Day);
        assert_eq!(
            RateLimitProblem::parse(Some("appminute")),
            RateLimitProblem::AppMinute
        );
        assert_eq!(
            RateLimitProblem::parse(None),
            RateLimitProblem::Other(String::new())
        );
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static(" 42 "),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(42)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn day_window_stays_small() {
        let mut w = Window::new(5_000, DAY);
        let start = Instant::now();
        for i in 0..5_000u64 {
            w.record(start + Duration::from_secs(i * 10), 1);
        }
        assert_eq!(w.count, 5_000);
        assert!(w.buckets.len() <= 601, "{}", w.buckets.len());
    }
}
