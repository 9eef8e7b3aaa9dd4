//! IAM: tenants' service accounts, and each resource's own allow policy,
//! read and written with its etag (the reconciler's `grant` retries a
//! conflict). Service accounts carry no labels in Google's API, so the
//! adapter keeps them in the account's description.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Binding, Credential, Identity, Policy, ResourceRef, ServiceAccount, ServiceAccountSpec,
};
use google_cloud_iam_v1::model as iam_model;

use crate::limiter::QuotaClass;
use crate::{errors, CellAdapter};

const LABELS_PREFIX: &str = "ledgerlake labels: ";
/// How long a new service account may stay invisible before provisioning
/// gives up for now (Google documents up to a minute; the reconciler retries).
const VISIBILITY_WAIT: Duration = Duration::from_secs(90);

/// `ledgerlake labels: managed-by=ledgerlake,tenant=acme`.
fn labels_to_description(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{LABELS_PREFIX}{}", pairs.join(","))
}

fn labels_from_description(description: &str) -> Labels {
    description
        .strip_prefix(LABELS_PREFIX)
        .map(|rest| {
            rest.split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn account_of(sa: google_cloud_iam_admin_v1::model::ServiceAccount) -> ServiceAccount {
    ServiceAccount {
        labels: labels_from_description(&sa.description),
        email: sa.email,
        unique_id: sa.unique_id,
        display_name: sa.display_name,
    }
}

/// The port's policy from Google's (etag as base64 text).
pub(crate) fn policy_from_google(p: &iam_model::Policy) -> Policy {
    Policy {
        bindings: p
            .bindings
            .iter()
            .filter(|b| b.condition.is_none())
            .map(|b| Binding {
                role: b.role.clone(),
                members: b.members.iter().cloned().collect(),
            })
            .collect(),
        etag: base64::engine::general_purpose::STANDARD.encode(&p.etag),
    }
}

/// Google's policy from the port's, keeping conditional bindings of `current`
/// (which the port does not model) untouched.
pub(crate) fn policy_to_google(
    p: &Policy,
    current: Option<&iam_model::Policy>,
) -> CloudResult<iam_model::Policy> {
    let etag = base64::engine::general_purpose::STANDARD
        .decode(&p.etag)
        .map_err(|_| {
            CloudError::permanent("IAM policy", "the policy's etag is not the one Google gave")
        })?;
    let mut bindings: Vec<iam_model::Binding> = p
        .bindings
        .iter()
        .map(|b| {
            iam_model::Binding::new()
                .set_role(b.role.clone())
                .set_members(b.members.iter().cloned())
        })
        .collect();
    if let Some(current) = current {
        bindings.extend(
            current
                .bindings
                .iter()
                .filter(|b| b.condition.is_some())
                .cloned(),
        );
    }
    Ok(iam_model::Policy::new()
        .set_version(if bindings.iter().any(|b| b.condition.is_some()) {
            3
        } else {
            1
        })
        .set_bindings(bindings)
        .set_etag(bytes::Bytes::from(etag)))
}

impl CellAdapter {
    /// Keeps the conditional bindings of a policy just read (the port does not
    /// model conditions), so that writing it back with the same etag keeps them.
    fn remember_conditions(&self, resource: &ResourceRef, p: &iam_model::Policy) {
        let key = format!("{}/{resource}", self.project);
        let Ok(mut read) = self.shared.conditional_policies.lock() else {
            return;
        };
        if p.bindings.iter().any(|b| b.condition.is_some()) {
            read.insert(key, p.clone());
        } else {
            read.remove(&key);
        }
    }

    /// The policy read with `policy`'s etag, when it had conditional bindings.
    fn read_conditions(
        &self,
        resource: &ResourceRef,
        policy: &Policy,
    ) -> Option<iam_model::Policy> {
        let key = format!("{}/{resource}", self.project);
        let read = self.shared.conditional_policies.lock().ok()?;
        read.get(&key)
            .filter(|p| base64::engine::general_purpose::STANDARD.encode(&p.etag) == policy.etag)
            .cloned()
    }

    fn sa_name(&self, email: &str) -> String {
        format!("projects/{}/serviceAccounts/{email}", self.project)
    }

    fn secret_path(&self, name: &str) -> String {
        format!("projects/{}/secrets/{name}", self.project)
    }

    /// Reads until the account is visible, as Google's Terraform provider
    /// does after a create: other APIs refuse it until then.
    async fn wait_until_visible(&self, email: &str) -> CloudResult<ServiceAccount> {
        let start = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            match self.get_service_account(email).await {
                Err(CloudError::NotFound { .. }) if start.elapsed() < VISIBILITY_WAIT => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(CloudError::NotFound { .. }) => {
                    return Err(CloudError::transient(
                        format!("service account {email}"),
                        "created but not yet visible; provisioning will retry",
                    ))
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Identity for CellAdapter {
    fn email_for(&self, account_id: &str) -> String {
        format!("{account_id}@{}.iam.gserviceaccount.com", self.project)
    }

    async fn ensure_service_account(
        &self,
        spec: &ServiceAccountSpec,
    ) -> CloudResult<ServiceAccount> {
        let email = self.email_for(&spec.account_id);
        let resource = format!("service account {email}");
        let created = self
            .paced(QuotaClass::IamAdmin, || async {
                self.shared
                    .iam
                    .create_service_account()
                    .set_name(format!("projects/{}", self.project))
                    .set_account_id(spec.account_id.clone())
                    .set_service_account(
                        google_cloud_iam_admin_v1::model::ServiceAccount::new()
                            .set_display_name(spec.display_name.clone())
                            .set_description(labels_to_description(&spec.labels)),
                    )
                    .send()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await;
        match created {
            Ok(_) => self.wait_until_visible(&email).await,
            Err(CloudError::AlreadyExists { .. }) => {
                let found = self.wait_until_visible(&email).await?;
                crate::check_owner(resource, &found.labels, &spec.labels)?;
                Ok(found)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_service_account(&self, email: &str) -> CloudResult<ServiceAccount> {
        let resource = format!("service account {email}");
        self.paced(QuotaClass::IamAdmin, || async {
            self.shared
                .iam
                .get_service_account()
                .set_name(self.sa_name(email))
                .send()
                .await
                .map(account_of)
                .map_err(|e| errors::from_gax(&resource, &e))
        })
        .await
    }

    async fn list_service_accounts(&self, labels: &Labels) -> CloudResult<Vec<ServiceAccount>> {
        let resource = format!("service accounts of project {}", self.project);
        let accounts = crate::pages::every_page(&resource, |token| {
            let resource = &resource;
            self.paced(QuotaClass::IamAdmin, move || {
                let request = self
                    .shared
                    .iam
                    .list_service_accounts()
                    .set_name(format!("projects/{}", self.project))
                    .set_page_size(100)
                    .set_page_token(token.clone());
                async move {
                    request
                        .send()
                        .await
                        .map(|page| (page.accounts, page.next_page_token))
                        .map_err(|e| errors::from_gax(resource, &e))
                }
            })
        })
        .await?;
        Ok(accounts
            .into_iter()
            .map(account_of)
            .filter(|sa| crate::has_labels(&sa.labels, labels))
            .collect())
    }

    async fn delete_service_account(&self, email: &str) -> CloudResult<()> {
        let resource = format!("service account {email}");
        self.paced(QuotaClass::IamAdmin, || async {
            self.shared
                .iam
                .delete_service_account()
                .set_name(self.sa_name(email))
                .send()
                .await
                .map_err(|e| errors::from_gax(&resource, &e))
        })
        .await
    }

    async fn get_iam_policy(&self, resource: &ResourceRef) -> CloudResult<Policy> {
        match resource {
            ResourceRef::Bucket(name) => self.bucket_policy(name).await,
            ResourceRef::Dataset(name) => self.dataset_policy(name).await,
            ResourceRef::Secret(name) => {
                let what = format!("policy of secret {name}");
                let p = self
                    .paced(QuotaClass::SecretAdmin, || async {
                        self.shared
                            .secrets
                            .get_iam_policy()
                            // Version 3 shows conditional bindings as such, so
                            // writing the policy back keeps them.
                            .set_options(
                                iam_model::GetPolicyOptions::new().set_requested_policy_version(3),
                            )
                            .set_resource(self.secret_path(name))
                            .send()
                            .await
                            .map_err(|e| errors::from_gax(&what, &e))
                    })
                    .await?;
                self.remember_conditions(resource, &p);
                Ok(policy_from_google(&p))
            }
            ResourceRef::Project => {
                let what = format!("policy of project {}", self.project);
                let p = self
                    .paced(QuotaClass::ProjectAdmin, || async {
                        self.shared
                            .projects
                            .get_iam_policy()
                            // Version 3 shows conditional bindings as such, so
                            // writing the policy back keeps them.
                            .set_options(
                                iam_model::GetPolicyOptions::new().set_requested_policy_version(3),
                            )
                            .set_resource(format!("projects/{}", self.project))
                            .send()
                            .await
                            .map_err(|e| errors::from_gax(&what, &e))
                    })
                    .await?;
                self.remember_conditions(resource, &p);
                Ok(policy_from_google(&p))
            }
        }
    }

    async fn set_iam_policy(&self, resource: &ResourceRef, policy: &Policy) -> CloudResult<Policy> {
        match resource {
            ResourceRef::Bucket(name) => self.set_bucket_policy(name, policy).await,
            ResourceRef::Dataset(name) => self.set_dataset_policy(name, policy).await,
            ResourceRef::Secret(name) => {
                let what = format!("policy of secret {name}");
                let google =
                    policy_to_google(policy, self.read_conditions(resource, policy).as_ref())?;
                let p = self
                    .paced(QuotaClass::PolicyWrite, || async {
                        self.shared
                            .secrets
                            .set_iam_policy()
                            .set_resource(self.secret_path(name))
                            .set_policy(google.clone())
                            .send()
                            .await
                            .map_err(|e| errors::from_gax(&what, &e))
                    })
                    .await?;
                Ok(policy_from_google(&p))
            }
            ResourceRef::Project => {
                let what = format!("policy of project {}", self.project);
                // The project policy is shared by every tenant of the cell: only
                // roles/bigquery.jobUser may be granted on it by ledgerlake.
                let google =
                    policy_to_google(policy, self.read_conditions(resource, policy).as_ref())?;
                let p = self
                    .paced(QuotaClass::PolicyWrite, || async {
                        self.shared
                            .projects
                            .set_iam_policy()
                            .set_resource(format!("projects/{}", self.project))
                            .set_policy(google.clone())
                            .send()
                            .await
                            .map_err(|e| errors::from_gax(&what, &e))
                    })
                    .await?;
                Ok(policy_from_google(&p))
            }
        }
    }

    async fn credential_for(&self, email: &str) -> CloudResult<Credential> {
        // Nothing to hold: each call mints (or reuses) a token for the account.
        Ok(Credential::ServiceAccount {
            email: email.to_owned(),
            key: String::new(),
        })
    }
}

/// Members of a policy, for a quick look in logs and tests.
#[allow(dead_code)]
pub(crate) fn members(p: &Policy) -> BTreeSet<String> {
    p.bindings
        .iter()
        .flat_map(|b| b.members.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_the_description() {
        let labels = Labels::from([
            ("managed-by".to_owned(), "ledgerlake".to_owned()),
            ("tenant".to_owned(), "acme".to_owned()),
        ]);
        let d = labels_to_description(&labels);
        assert!(d.len() <= 256, "IAM's description limit");
        assert_eq!(labels_from_description(&d), labels);
        assert!(labels_from_description("someone else's account").is_empty());
    }

    #[test]
    fn policies_round_trip_and_keep_conditional_bindings() {
        let conditional = iam_model::Binding::new()
            .set_role("roles/viewer")
            .set_members(["user:x@example.com"])
            .set_condition(google_cloud_type::model::Expr::new().set_expression("true"));
        let google = iam_model::Policy::new()
            .set_bindings([
                iam_model::Binding::new()
                    .set_role("roles/secretmanager.secretAccessor")
                    .set_members(["serviceAccount:a@p.iam.gserviceaccount.com"]),
                conditional,
            ])
            .set_etag(bytes::Bytes::from_static(b"\x01\x02"));
        let mut port = policy_from_google(&google);
        assert_eq!(port.bindings.len(), 1);
        port.add(
            "roles/secretmanager.secretVersionAdder",
            "serviceAccount:a@p.iam.gserviceaccount.com",
        );
        let back = policy_to_google(&port, Some(&google)).expect("etag");
        assert_eq!(back.etag.as_ref(), b"\x01\x02");
        assert_eq!(back.bindings.len(), 3);
        assert_eq!(back.version, 3);
        let forged = Policy {
            etag: "not base64!".into(),
            ..port
        };
        assert!(policy_to_google(&forged, None).is_err());
    }
}
