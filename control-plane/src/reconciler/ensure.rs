//! Ensuring and removing single resources through the cloud ports. Each call
//! observes first, so that a pass over a resource that is already right reads
//! and never writes.

use cloud::error::{CloudError, CloudResult};
use cloud::naming::{check_owner, Labels};
use cloud::ports::{
    identity, BucketSpec, DatasetSpec, ResourceRef, SecretSpec, ServiceAccountSpec,
};
use cloud::Cloud;
use job_contract::plan::XERO_APP_SECRET;

use super::plan::Planned;

/// What ensuring a resource did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Unchanged,
}

/// Creates the resource when absent; an existing one with our labels is success.
pub async fn ensure(cloud: &Cloud, p: &Planned, labels: &Labels) -> CloudResult<Change> {
    match p {
        Planned::ServiceAccount { account_id, email } => {
            match cloud.identity.get_service_account(email).await {
                Ok(sa) => check_owner(format!("service account {email}"), &sa.labels, labels)
                    .map(|()| Change::Unchanged),
                Err(CloudError::NotFound { .. }) => {
                    let spec = ServiceAccountSpec {
                        account_id: account_id.clone(),
                        display_name: format!("ledgerlake {}", labels_tenant(labels)),
                        labels: labels.clone(),
                    };
                    cloud.identity.ensure_service_account(&spec).await?;
                    Ok(Change::Created)
                }
                Err(e) => Err(e),
            }
        }
        Planned::Bucket { name } => match cloud.objects.get_bucket(name).await {
            Ok(b) => {
                check_owner(format!("bucket {name}"), &b.labels, labels).map(|()| Change::Unchanged)
            }
            Err(CloudError::NotFound { .. }) => {
                let spec = BucketSpec {
                    name: name.clone(),
                    labels: labels.clone(),
                };
                cloud.objects.ensure_bucket(&spec).await?;
                Ok(Change::Created)
            }
            Err(e) => Err(e),
        },
        Planned::Dataset { name } => match cloud.warehouse.get_dataset(name).await {
            Ok(d) => check_owner(format!("dataset {name}"), &d.labels, labels)
                .map(|()| Change::Unchanged),
            Err(CloudError::NotFound { .. }) => {
                let spec = DatasetSpec {
                    name: name.clone(),
                    labels: labels.clone(),
                };
                cloud.warehouse.ensure_dataset(&spec).await?;
                Ok(Change::Created)
            }
            Err(e) => Err(e),
        },
        Planned::Secret { name } => match cloud.secrets.get_secret(name).await {
            Ok(s) => {
                check_owner(format!("secret {name}"), &s.labels, labels).map(|()| Change::Unchanged)
            }
            Err(CloudError::NotFound { .. }) => {
                let spec = SecretSpec {
                    name: name.clone(),
                    labels: labels.clone(),
                };
                cloud.secrets.ensure_secret(&spec).await?;
                Ok(Change::Created)
            }
            Err(e) => Err(e),
        },
        Planned::Binding {
            resource,
            role,
            member,
        } => {
            let changed = identity::grant(cloud.identity.as_ref(), resource, role, member)
                .await
                .map_err(|e| match (e, resource) {
                    // The cell's copy of the app's secret is the operator's to write.
                    (CloudError::NotFound { .. }, ResourceRef::Secret(name))
                        if name == XERO_APP_SECRET =>
                    {
                        CloudError::permanent(
                            format!("secret {name}"),
                            "this cell holds no copy of the Xero app's client secret yet: write \
                             it with `control-plane cells sync-secret` (or POST \
                             /v1/cells/sync-secret), then provision again",
                        )
                    }
                    (e, _) => e,
                })?;
            Ok(if changed {
                Change::Created
            } else {
                Change::Unchanged
            })
        }
        Planned::Job { spec } => match cloud.jobs.get_job(&spec.name).await {
            Ok(job) if job.spec == *spec => Ok(Change::Unchanged),
            Ok(job) => {
                check_owner(format!("job {}", spec.name), &job.spec.labels, labels)?;
                // A changed template (a new image, new settings) updates the job.
                cloud.jobs.ensure_job(spec).await?;
                Ok(Change::Created)
            }
            Err(CloudError::NotFound { .. }) => {
                cloud.jobs.ensure_job(spec).await?;
                Ok(Change::Created)
            }
            Err(e) => Err(e),
        },
    }
}

/// Whether the resource exists as planned, owned by this tenant, by reads
/// only. `false` covers anything a full pass must look at (absent, owned by
/// someone else, a missing grant); errors are the cloud's.
pub async fn is_in_place(cloud: &Cloud, p: &Planned, labels: &Labels) -> CloudResult<bool> {
    let found = match p {
        Planned::ServiceAccount { email, .. } => cloud
            .identity
            .get_service_account(email)
            .await
            .map(|sa| sa.labels),
        Planned::Bucket { name } => cloud.objects.get_bucket(name).await.map(|b| b.labels),
        Planned::Dataset { name } => cloud.warehouse.get_dataset(name).await.map(|d| d.labels),
        Planned::Secret { name } => cloud.secrets.get_secret(name).await.map(|s| s.labels),
        Planned::Job { spec } => {
            return match cloud.jobs.get_job(&spec.name).await {
                Ok(job) => Ok(job.spec == *spec),
                Err(CloudError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        }
        Planned::Binding {
            resource,
            role,
            member,
        } => {
            return match cloud.identity.get_iam_policy(resource).await {
                Ok(policy) => Ok(policy.has(role, member)),
                Err(CloudError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        }
    };
    match found {
        Ok(found) => Ok(labels.iter().all(|(k, v)| found.get(k) == Some(v))),
        Err(CloudError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the resource; one that is already gone is success.
pub async fn remove(cloud: &Cloud, p: &Planned) -> CloudResult<()> {
    let result = match p {
        Planned::ServiceAccount { email, .. } => cloud.identity.delete_service_account(email).await,
        Planned::Bucket { name } => cloud.objects.delete_bucket(name).await,
        Planned::Dataset { name } => cloud.warehouse.delete_dataset(name).await,
        Planned::Secret { name } => cloud.secrets.delete_secret(name).await,
        Planned::Job { spec } => cloud.jobs.delete_job(&spec.name).await,
        Planned::Binding {
            resource,
            role,
            member,
        } => identity::revoke(cloud.identity.as_ref(), resource, role, member)
            .await
            .map(|_| ()),
    };
    match result {
        Err(CloudError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

fn labels_tenant(labels: &Labels) -> &str {
    labels
        .get(cloud::naming::TENANT_LABEL)
        .map(String::as_str)
        .unwrap_or("tenant")
}
