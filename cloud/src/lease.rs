//! A lease held as an object in a bucket: mutual exclusion across processes
//! and machines, with expiry so that a crashed holder frees it.
//!
//! Built only on the object port's preconditions (Cloud Storage's
//! `ifGenerationMatch`), so it works with any adapter and with the credential
//! of whoever takes it: a tenant's job can hold a lease in its own bucket
//! without any access to the control plane's database. Taking a free lease is
//! a create-if-absent; taking an expired one replaces exactly the generation
//! that was read; releasing deletes exactly the generation written. Expiry
//! compares with this machine's clock, so cooperating machines' clocks must
//! agree to well within the ttl.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::{CloudError, CloudResult};
use crate::ports::{Credential, ObjectStore, Precondition};

/// How often a waiting taker tries again.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// One holder's handle on the lease object `key` in `bucket`.
pub struct ObjectLease {
    objects: Arc<dyn ObjectStore>,
    cred: Credential,
    bucket: String,
    key: String,
    holder: String,
    ttl: Duration,
    /// The generation this holder last wrote, while it believes it holds the lease.
    held: Mutex<Option<String>>,
}

impl std::fmt::Debug for ObjectLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLease")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ObjectLease {
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        cred: Credential,
        bucket: impl Into<String>,
        key: impl Into<String>,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        ObjectLease {
            objects,
            cred,
            bucket: bucket.into(),
            key: key.into(),
            holder: holder.into(),
            ttl,
            held: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn record(&self) -> CloudResult<Vec<u8>> {
        let ttl = time::Duration::try_from(self.ttl).unwrap_or(time::Duration::HOUR);
        serde_json::to_vec(&LeaseRecord {
            holder: self.holder.clone(),
            expires_at: OffsetDateTime::now_utc() + ttl,
        })
        .map_err(|e| CloudError::permanent(self.resource(), format!("encoding the lease: {e}")))
    }

    fn resource(&self) -> String {
        format!("lease gs://{}/{}", self.bucket, self.key)
    }

    async fn write(&self, condition: Precondition) -> CloudResult<Option<String>> {
        let data = self.record()?;
        match self
            .objects
            .put_object_if(&self.cred, &self.bucket, &self.key, data, &condition)
            .await
        {
            Ok(info) => Ok(Some(info.generation)),
            // Someone else created or replaced it first.
            Err(CloudError::Conflict { .. } | CloudError::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the lease if it is free, expired, or already ours (which renews
    /// it). Returns whether this holder now holds it.
    pub async fn try_acquire(&self) -> CloudResult<bool> {
        let mut held = self.held.lock().await;
        if let Some(generation) = held.clone() {
            // Renewal: only the generation we wrote may be replaced.
            *held = self
                .write(Precondition::GenerationMatch(generation))
                .await?;
            if held.is_some() {
                return Ok(true);
            }
            tracing::warn!(lease = %self.resource(), "the lease was taken over; acquiring anew");
        }
        if let Some(generation) = self.write(Precondition::DoesNotExist).await? {
            *held = Some(generation);
            return Ok(true);
        }
        let (info, bytes) = match self
            .objects
            .read_object(&self.cred, &self.bucket, &self.key)
            .await
        {
            Ok(found) => found,
            // Released between our create and our read: try again next time.
            Err(CloudError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let takeable = match serde_json::from_slice::<LeaseRecord>(&bytes) {
            Ok(r) => r.holder == self.holder || r.expires_at <= OffsetDateTime::now_utc(),
            Err(e) => {
                // A lease nobody can read protects nothing; replace it.
                tracing::warn!(lease = %self.resource(), error = %e, "unreadable lease record");
                true
            }
        };
        if !takeable {
            return Ok(false);
        }
        *held = self
            .write(Precondition::GenerationMatch(info.generation))
            .await?;
        Ok(held.is_some())
    }

    /// [`ObjectLease::try_acquire`] until it succeeds or `wait` has passed.
    /// Errors of the object store end the wait at once.
    pub async fn acquire(&self, wait: Duration) -> CloudResult<bool> {
        // Elapsed time against `wait`, not `now + wait` as a deadline, which
        // would panic for a wait past an Instant's range.
        let started = tokio::time::Instant::now();
        loop {
            if self.try_acquire().await? {
                return Ok(true);
            }
            let Some(left) = wait.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else {
                return Ok(false);
            };
            tokio::time::sleep(POLL.min(left)).await;
        }
    }

    /// Releases the lease if this holder still holds it. A lease another
    /// holder has since taken over is left alone.
    pub async fn release(&self) -> CloudResult<()> {
        let mut held = self.held.lock().await;
        let Some(generation) = held.take() else {
            return Ok(());
        };
        match self
            .objects
            .delete_object_if(&self.cred, &self.bucket, &self.key, &generation)
            .await
        {
            Ok(()) | Err(CloudError::NotFound { .. } | CloudError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
