//! The typed errors every port returns, shaped after Google Cloud's so that the
//! reconciler can decide, per error, whether to retry or stop.

use std::time::Duration;

/// The underlying error of a remote or a library, kept whole (never
/// flattened to text) so callers and logs can walk the chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{resource} was not found")]
    NotFound { resource: String },

    /// The resource exists but is not ours (another tenant's labels, or unmanaged).
    /// An "already exists" of our own resource is not an error: creates are create-or-get.
    #[error("{resource} already exists and belongs to {owner}")]
    AlreadyExists { resource: String, owner: String },

    #[error("{principal} may not {action} {resource}")]
    PermissionDenied {
        principal: String,
        action: String,
        resource: String,
    },

    /// An etag precondition failed: someone changed the resource since it was read.
    #[error("{resource} changed since it was read (etag mismatch); read it again")]
    Conflict { resource: String },

    #[error("rate limited on {resource}{}", retry_after.map(|d| format!("; retry after {} ms", d.as_millis())).unwrap_or_default())]
    RateLimited {
        resource: String,
        retry_after: Option<Duration>,
    },

    #[error("transient failure on {resource}: {message}")]
    Transient {
        resource: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    #[error("{resource}: {message}")]
    Permanent {
        resource: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl CloudError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudError::Conflict { .. }
                | CloudError::RateLimited { .. }
                | CloudError::Transient { .. }
        )
    }

    /// The server's requested wait, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn not_found(resource: impl Into<String>) -> Self {
        CloudError::NotFound {
            resource: resource.into(),
        }
    }

    pub fn transient(resource: impl Into<String>, message: impl Into<String>) -> Self {
        CloudError::Transient {
            resource: resource.into(),
            message: message.into(),
            source: None,
        }
    }

    pub fn permanent(resource: impl Into<String>, message: impl Into<String>) -> Self {
        CloudError::Permanent {
            resource: resource.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause of a transient or permanent error (other
    /// kinds carry no cause and are returned as they are).
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        if let CloudError::Transient { source, .. } | CloudError::Permanent { source, .. } =
            &mut self
        {
            *source = Some(cause.into());
        }
        self
    }

    /// Classifies an I/O error on a local file: a full disk or an interrupted call
    /// may pass, a permission problem will not.
    pub fn from_io(resource: impl Into<String>, err: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let resource = resource.into();
        match err.kind() {
            NotFound => CloudError::NotFound { resource },
            Interrupted | WouldBlock | TimedOut | StorageFull | ResourceBusy => {
                CloudError::transient(resource, err.to_string())
                    .with_source(std::io::Error::new(err.kind(), err.to_string()))
            }
            _ => CloudError::permanent(resource, err.to_string())
                .with_source(std::io::Error::new(err.kind(), err.to_string())),
        }
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_passing_ones() {
        assert!(CloudError::transient("b", "x").is_retryable());
        assert!(CloudError::Conflict {
            resource: "p".into()
        }
        .is_retryable());
        let limited = CloudError::RateLimited {
            resource: "b".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert!(limited.to_string().contains("2000 ms"));
        assert!(!CloudError::permanent("b", "x").is_retryable());
        assert!(!CloudError::not_found("b").is_retryable());
        let denied = CloudError::PermissionDenied {
            principal: "a".into(),
            action: "read".into(),
            resource: "b".into(),
        };
        assert!(!denied.is_retryable());
        assert_eq!(denied.to_string(), "a may not read b");
    }

    #[test]
    fn a_cause_is_kept_as_the_source() {
        use std::error::Error;
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "disk slow");
        let e = CloudError::from_io("bucket b", &io);
        assert!(e.is_retryable());
        let source = e.source().expect("source kept");
        assert_eq!(source.to_string(), "disk slow");
        let plain = CloudError::not_found("x").with_source(io);
        assert!(plain.source().is_none());
    }
}
