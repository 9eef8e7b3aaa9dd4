//! The keyed controller that runs the reconciler in `serve`, shaped after
//! kube-rs's runtime controller:
//!
//! - at most one pass per tenant at a time: a request for a tenant whose pass
//!   is under way sets one pending flag, and the tenant gets exactly one more
//!   pass after the current one, however many requests arrived meanwhile;
//! - the error policy requeues a tenant whose pass failed after a per-tenant
//!   exponential backoff with jitter. The attempt count it grows from is the
//!   store's (`resources.attempts`), so the backoff survives a restart and
//!   `tenants show` tells when the next pass is due.
//!
//! Every tenant is in at most one slot: queued (one message in the channel),
//! running (a pass under way, maybe with a pending request), or waiting out its
//! backoff (a timer). Transitions happen under one short lock, so a tenant
//! can never be queued twice nor run twice at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};

use cloud::naming::TenantId;

use crate::metrics::PassOutcome;
use crate::reconciler::{AbortOnDrop, ReconcileError, Reconciler};
use crate::store::{ResourceRecord, ResourceStatus};

/// How long a failed tenant waits before its next pass: `base · 2^(n−1)` after
/// its n-th failed attempt, at most `max`, spread by ±`jitter` so that tenants
/// failing together do not retry together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// The fraction (0 to 1) by which a delay is randomly lengthened or shortened.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(15 * 60),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay after the `attempts`-th failed attempt, before jitter.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    fn jittered(&self, delay: Duration) -> Duration {
        let spread = self.jitter.clamp(0.0, 1.0);
        if spread == 0.0 {
            return delay;
        }
        let factor = rand::thread_rng().gen_range((1.0 - spread)..=(1.0 + spread));
        delay.mul_f64(factor)
    }

    /// When a tenant whose resources failed is due again, from what the store
    /// recorded: its highest attempt count among failed resources, counted from
    /// the latest failure. `None` when no resource failed.
    pub fn next_attempt(&self, rows: &[ResourceRecord]) -> Option<NextAttempt> {
        let failed: Vec<&ResourceRecord> = rows
            .iter()
            .filter(|r| r.status == ResourceStatus::Failed)
            .collect();
        let attempts = failed.iter().map(|r| r.attempts).max()?;
        let last = failed.iter().map(|r| r.last_transition).max()?;
        let attempts = u32::try_from(attempts.max(1)).unwrap_or(u32::MAX);
        Some(NextAttempt {
            attempts,
            at: last + self.delay(attempts),
        })
    }
}

/// When a failed tenant's next pass is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NextAttempt {
    /// Failed attempts so far at the tenant's current generation.
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

enum Slot {
    /// One message for the tenant is in the channel.
    Queued,
    /// A pass is under way; `again` when a request arrived during it.
    Running { again: bool },
    /// Waiting out a backoff; dropping the timer cancels it.
    Waiting { _timer: AbortOnDrop },
}

/// What a pass asks of the controller.
enum Outcome {
    Done,
    RetryAfter(Duration),
}

struct Inner {
    reconciler: Reconciler,
    backoff: Backoff,
    slots: Mutex<HashMap<TenantId, Slot>>,
    queue: mpsc::UnboundedSender<TenantId>,
    passes: AtomicU64,
}

/// A handle on the controller; cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Starts the controller with `workers` passes at most at once. Dropping
    /// the returned guard stops it (passes under way run to their end).
    pub fn start(reconciler: Reconciler, workers: usize, backoff: Backoff) -> (Self, AbortOnDrop) {
        let (queue, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            reconciler,
            backoff,
            slots: Mutex::new(HashMap::new()),
            queue,
            passes: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(Arc::downgrade(&inner), rx, workers.max(1)));
        (Controller { inner }, AbortOnDrop(task))
    }

    /// Asks for a pass over `id` soon: now if it is idle or backing off, after
    /// the current pass if one is under way, not at all if already queued.
    pub fn request(&self, id: &TenantId) {
        let mut slots = self.inner.lock();
        match slots.get_mut(id) {
            Some(Slot::Queued) => {}
            Some(Slot::Running { again }) => *again = true,
            Some(Slot::Waiting { .. }) | None => self.inner.queue_locked(&mut slots, id),
        }
    }

    /// Like [`Controller::request`], but a tenant waiting out a backoff keeps
    /// waiting: what the periodic resync uses.
    pub fn request_unless_backing_off(&self, id: &TenantId) {
        let mut slots = self.inner.lock();
        if slots.get(id).is_none() {
            self.inner.queue_locked(&mut slots, id);
        }
    }

    /// Schedules a pass over an idle tenant at `at` (a backoff recorded in the
    /// store before a restart); a tenant already known is left alone.
    pub fn request_at(&self, id: &TenantId, at: OffsetDateTime) {
        let wait = at - OffsetDateTime::now_utc();
        let Ok(wait) = Duration::try_from(wait) else {
            return self.request_unless_backing_off(id);
        };
        let mut slots = self.inner.lock();
        if slots.get(id).is_none() {
            let timer = self.inner.timer(id.clone(), wait);
            slots.insert(id.clone(), Slot::Waiting { _timer: timer });
        }
    }

    /// Passes finished since the start.
    pub fn passes(&self) -> u64 {
        self.inner.passes.load(Ordering::SeqCst)
    }

    /// Whether no tenant is queued or running (tenants waiting out a backoff
    /// do not count).
    pub fn is_idle(&self) -> bool {
        self.inner
            .lock()
            .values()
            .all(|s| matches!(s, Slot::Waiting { .. }))
    }

    /// How many tenants are queued, running (a pass under way) and waiting
    /// out a backoff: the controller's depth, for `/metrics`.
    pub fn depth(&self) -> (usize, usize, usize) {
        let slots = self.inner.lock();
        slots
            .values()
            .fold((0, 0, 0), |(queued, running, waiting), slot| match slot {
                Slot::Queued => (queued + 1, running, waiting),
                Slot::Running { .. } => (queued, running + 1, waiting),
                Slot::Waiting { .. } => (queued, running, waiting + 1),
            })
    }

    /// Whether `id` is waiting out a backoff.
    pub fn is_backing_off(&self, id: &TenantId) -> bool {
        matches!(self.inner.lock().get(id), Some(Slot::Waiting { .. }))
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Slot>> {
        // A panic while holding the lock leaves the map consistent (every
        // change is one insert or remove), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue_locked(&self, slots: &mut HashMap<TenantId, Slot>, id: &TenantId) {
        // Replacing a Waiting slot drops (cancels) its timer.
        slots.insert(id.clone(), Slot::Queued);
        if self.queue.send(id.clone()).is_err() {
            // The loop has stopped; nothing will run the tenant in this process.
            slots.remove(id);
        }
    }

    /// Marks a queued tenant as running; false for a message with no slot
    /// behind it (which the invariants rule out, but costs nothing to check).
    fn begin(&self, id: &TenantId) -> bool {
        let mut slots = self.lock();
        match slots.get(id) {
            Some(Slot::Queued) => {
                slots.insert(id.clone(), Slot::Running { again: false });
                true
            }
            _ => false,
        }
    }

    fn finish(self: &Arc<Self>, id: &TenantId, outcome: Outcome) {
        self.passes.fetch_add(1, Ordering::SeqCst);
        let mut slots = self.lock();
        let again = matches!(slots.get(id), Some(Slot::Running { again: true }));
        if again {
            self.queue_locked(&mut slots, id);
            return;
        }
        match outcome {
            Outcome::Done => {
                slots.remove(id);
            }
            Outcome::RetryAfter(delay) => {
                let timer = self.timer(id.clone(), self.backoff.jittered(delay));
                slots.insert(id.clone(), Slot::Waiting { _timer: timer });
            }
        }
    }

    /// A timer that queues `id` after `wait`, unless cancelled first.
    fn timer(self: &Arc<Self>, id: TenantId, wait: Duration) -> AbortOnDrop {
        let weak = Arc::downgrade(self);
        AbortOnDrop(tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(inner) = weak.upgrade() else { return };
            let mut slots = inner.lock();
            if matches!(slots.get(&id), Some(Slot::Waiting { .. })) {
                // This replaces (and so aborts) this very task's handle; the
                // abort lands at the next await, and there is none left.
                inner.queue_locked(&mut slots, &id);
            }
        }))
    }

    /// One pass, and what should follow it.
    async fn pass(&self, id: &TenantId) -> Outcome {
        let started = std::time::Instant::now();
        let result = self.reconciler.reconcile(id).await;
        let outcome = match &result {
            Ok(report) if report.is_success() => PassOutcome::Settled,
            Ok(_) => PassOutcome::NotSettled,
            Err(ReconcileError::UnknownTenant(_)) => PassOutcome::Gone,
            Err(_) => PassOutcome::Error,
        };
        crate::metrics::metrics().reconcile_pass(outcome, started.elapsed());
        match result {
            Ok(report) if report.is_success() => {
                tracing::info!(tenant = %id, changed = report.changed, "tenant reconciled");
                Outcome::Done
            }
            Ok(report) => {
                let rows = self
                    .reconciler
                    .store()
                    .list_resources(id)
                    .await
                    .unwrap_or_default();
                let attempts = self
                    .backoff
                    .next_attempt(&rows)
                    .map(|n| n.attempts)
                    .unwrap_or(1);
                let delay = self.backoff.delay(attempts);
                tracing::warn!(
                    tenant = %id,
                    failure = %report.failure_summary(),
                    attempts,
                    retry_in_secs = delay.as_secs(),
                    "tenant not settled; retrying after a backoff"
                );
                Outcome::RetryAfter(delay)
            }
            // Torn down meanwhile: nothing left to do.
            Err(ReconcileError::UnknownTenant(_)) => Outcome::Done,
            Err(e) => {
                // Another process holds the tenant, or the store failed: no
                // attempt was recorded, so back off by the first step.
                tracing::warn!(tenant = %id, error = %e, "reconcile failed; retrying after a backoff");
                Outcome::RetryAfter(self.backoff.delay(1))
            }
        }
    }
}

async fn run(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<TenantId>, workers: usize) {
    let permits = Arc::new(Semaphore::new(workers));
    while let Some(id) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(inner) = inner.upgrade() else { return };
        if !inner.begin(&id) {
            continue;
        }
        tokio::spawn(async move {
            // A panicking pass must not leave the tenant marked running forever.
            let pass = {
                let inner = inner.clone();
                let id = id.clone();
                tokio::spawn(async move { inner.pass(&id).await })
            };
            let outcome = match pass.await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "reconcile pass panicked");
                    Outcome::RetryAfter(inner.backoff.delay(1))
                }
            };
            inner.finish(&id, outcome);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
            jitter: 0.0,
        };
        let got: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 60, 60]);
        assert_eq!(b.delay(0).as_secs(), 5);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        let b = Backoff {
            jitter: 0.2,
            ..Backoff::default()
        };
        for _ in 0..200 {
            let d = b.jittered(Duration::from_secs(10)).as_secs_f64();
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }

    fn row(status: ResourceStatus, attempts: i64, at: OffsetDateTime) -> ResourceRecord {
        ResourceRecord {
            kind: "bucket".to_owned(),
            name: "b".to_owned(),
            status,
            message: None,
            observed_generation: 1,
            attempts,
            last_error: None,
            last_transition: at,
        }
    }

    #[test]
    fn the_next_attempt_grows_from_the_recorded_attempts() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        assert_eq!(
            b.next_attempt(&[row(ResourceStatus::Ready, 3, t0)]),
            None,
            "nothing failed"
        );
        let rows = [
            row(ResourceStatus::Failed, 1, t0),
            row(ResourceStatus::Failed, 3, t0 + Duration::from_secs(2)),
            row(ResourceStatus::Ready, 9, t0 + Duration::from_secs(9)),
        ];
        let next = b.next_attempt(&rows).expect("failed");
        assert_eq!(next.attempts, 3);
        assert_eq!(next.at, t0 + Duration::from_secs(2) + b.delay(3));
    }
}
