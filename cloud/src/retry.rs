//! The one retry policy for calls through the cloud ports.
//!
//! Which layer retries what, so that attempts never multiply:
//! - the adapters retry nothing; they classify errors (`CloudError::is_retryable`,
//!   `retry_after`);
//! - whoever calls a port (the reconciler for each resource, the job for each
//!   object and warehouse call) retries through [`retry`] here, once, at that level;
//! - Xero calls are retried by `xero`'s client alone (5xx, transport errors and
//!   Xero's 429s with their own limits); callers of the client do not retry them;
//! - the state store retries nothing (a failed pass is retried whole by the
//!   controller's backoff).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::{CloudError, CloudResult};

/// Exponential backoff with jitter; a server's `Retry-After` wins over the
/// schedule, within the same number of retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first try.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retries: 6,
        }
    }
}

/// Runs `op`, trying again while it fails with a retryable [`CloudError`].
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, op: F) -> CloudResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CloudResult<T>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    op.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &CloudError| e.is_retryable())
        .adjust(
            |e: &CloudError, next: Option<Duration>| match (e.retry_after(), next) {
                (Some(server), Some(_)) => Some(server),
                (_, next) => next,
            },
        )
        .notify(|e: &CloudError, wait: Duration| {
            tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "retrying a cloud call");
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn fast(max_retries: usize) -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retries,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let got = retry(&fast(5), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(CloudError::transient("bucket b", "busy"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got.expect("succeeds"), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried_and_retries_are_bounded() {
        let calls = AtomicUsize::new(0);
        let got: CloudResult<()> = retry(&fast(5), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::permanent("bucket b", "invalid name"))
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicUsize::new(0);
        let got: CloudResult<()> = retry(&fast(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::transient("bucket b", "busy"))
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
    }
}
