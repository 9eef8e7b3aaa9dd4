//! Secret Manager: one secret per tenant (its Xero tokens). Writes and reads
//! of versions run as the caller's principal, so only the accounts granted on
//! the secret's own policy get through; older versions are disabled after a
//! rotation and destroyed after the retention period.

use async_trait::async_trait;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{Credential, SecretInfo, SecretPayload, SecretSpec, SecretStore};
use google_cloud_secretmanager_v1::model::{self as sm, secret_version::State};
use time::OffsetDateTime;

use crate::limiter::QuotaClass;
use crate::{errors, CellAdapter};

/// `…/versions/7` → 7.
fn version_number(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.parse().ok()
}

impl CellAdapter {
    fn secret_name(&self, name: &str) -> String {
        format!("projects/{}/secrets/{name}", self.project)
    }

    /// One page of the secret's versions (newest first).
    async fn versions_page(
        &self,
        name: &str,
        filter: &str,
        page_size: i32,
        token: String,
    ) -> CloudResult<(Vec<sm::SecretVersion>, String)> {
        let resource = format!("versions of secret {name}");
        self.paced(QuotaClass::SecretAdmin, || {
            let request = self
                .shared
                .secrets
                .list_secret_versions()
                .set_parent(self.secret_name(name))
                .set_filter(filter)
                .set_page_size(page_size)
                .set_page_token(token.clone());
            let resource = &resource;
            async move {
                request
                    .send()
                    .await
                    .map(|page| (page.versions, page.next_page_token))
                    .map_err(|e| errors::from_gax(resource, &e))
            }
        })
        .await
    }

    fn info(&self, s: sm::Secret, latest_version: Option<u64>) -> SecretInfo {
        SecretInfo {
            name: s.name.rsplit('/').next().unwrap_or_default().to_owned(),
            labels: CellAdapter::labels_of(&s.labels),
            created_at: crate::timestamp(s.create_time.as_ref()),
            latest_version,
        }
    }
}

#[async_trait]
impl SecretStore for CellAdapter {
    async fn ensure_secret(&self, spec: &SecretSpec) -> CloudResult<SecretInfo> {
        let resource = format!("secret {}", spec.name);
        let created = self
            .paced(QuotaClass::SecretAdmin, || async {
                self.shared
                    .secrets
                    .create_secret()
                    .set_parent(format!("projects/{}", self.project))
                    .set_secret_id(spec.name.clone())
                    .set_secret(
                        sm::Secret::new()
                            .set_replication(
                                sm::Replication::new()
                                    .set_automatic(sm::replication::Automatic::default()),
                            )
                            .set_labels(spec.labels.clone()),
                    )
                    .send()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await;
        match created {
            Ok(s) => Ok(self.info(s, None)),
            Err(CloudError::AlreadyExists { .. }) => {
                let found = self.get_secret(&spec.name).await?;
                crate::check_owner(resource, &found.labels, &spec.labels)?;
                Ok(found)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_secret(&self, name: &str) -> CloudResult<SecretInfo> {
        let resource = format!("secret {name}");
        let secret = self
            .paced(QuotaClass::SecretAdmin, || async {
                self.shared
                    .secrets
                    .get_secret()
                    .set_name(self.secret_name(name))
                    .send()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await?;
        // Versions are listed newest first.
        let (newest, _) = self
            .versions_page(name, "state:ENABLED", 1, String::new())
            .await?;
        let latest = newest.first().and_then(|v| version_number(&v.name));
        Ok(self.info(secret, latest))
    }

    async fn list_secrets(&self, labels: &Labels) -> CloudResult<Vec<SecretInfo>> {
        let resource = format!("secrets of project {}", self.project);
        // The tenant label narrows the listing on the server; every label is
        // then checked here.
        let filter = labels
            .get(cloud::naming::TENANT_LABEL)
            .map(|t| format!("labels.{}={t}", cloud::naming::TENANT_LABEL))
            .unwrap_or_default();
        let secrets = crate::pages::every_page(&resource, |token| {
            let (resource, filter) = (&resource, &filter);
            self.paced(QuotaClass::SecretAdmin, move || {
                let request = self
                    .shared
                    .secrets
                    .list_secrets()
                    .set_parent(format!("projects/{}", self.project))
                    .set_filter(filter.clone())
                    .set_page_size(100)
                    .set_page_token(token.clone());
                async move {
                    request
                        .send()
                        .await
                        .map(|page| (page.secrets, page.next_page_token))
                        .map_err(|e| errors::from_gax(resource, &e))
                }
            })
        })
        .await?;
        Ok(secrets
            .into_iter()
            .map(|s| self.info(s, None))
            .filter(|info| crate::has_labels(&info.labels, labels))
            .collect())
    }

    async fn delete_secret(&self, name: &str) -> CloudResult<()> {
        let resource = format!("secret {name}");
        self.paced(QuotaClass::SecretAdmin, || async {
            self.shared
                .secrets
                .delete_secret()
                .set_name(self.secret_name(name))
                .send()
                .await
                .map_err(|e| errors::from_gax(&resource, &e))
        })
        .await
    }

    async fn add_version(
        &self,
        cred: &Credential,
        name: &str,
        payload: &SecretPayload,
    ) -> CloudResult<u64> {
        let resource = format!("secret {name}");
        let data = bytes::Bytes::copy_from_slice(payload.expose());
        let version = self
            .paced_as(cred, QuotaClass::SecretAdmin, || async {
                self.shared
                    .secrets
                    .add_secret_version()
                    .set_parent(self.secret_name(name))
                    .set_payload(
                        sm::SecretPayload::new()
                            .set_data(data.clone())
                            .set_data_crc32c(crc32c(&data)),
                    )
                    .send()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await?;
        version_number(&version.name)
            .ok_or_else(|| CloudError::permanent(resource, "the new version has no number"))
    }

    async fn access_latest(
        &self,
        cred: &Credential,
        name: &str,
    ) -> CloudResult<(u64, SecretPayload)> {
        let resource = format!("secret {name}");
        let got = self
            .paced_as(cred, QuotaClass::SecretAccess, || async {
                self.shared
                    .secrets
                    .access_secret_version()
                    .set_name(format!("{}/versions/latest", self.secret_name(name)))
                    .send()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await?;
        let version = version_number(&got.name)
            .ok_or_else(|| CloudError::permanent(&resource, "the version has no number"))?;
        let payload = got
            .payload
            .ok_or_else(|| CloudError::permanent(&resource, "the version has no payload"))?;
        if let Some(sum) = payload.data_crc32c {
            if sum != crc32c(&payload.data) {
                return Err(CloudError::transient(
                    resource,
                    "the payload's checksum does not match; read again",
                ));
            }
        }
        Ok((version, SecretPayload::new(payload.data.to_vec())))
    }

    async fn destroy_old_versions(
        &self,
        name: &str,
        keep: usize,
        before: OffsetDateTime,
    ) -> CloudResult<usize> {
        let mut versions =
            crate::pages::every_page(&format!("versions of secret {name}"), |token| {
                self.versions_page(name, "", 100, token)
            })
            .await?;
        versions.sort_by_key(|v| std::cmp::Reverse(version_number(&v.name).unwrap_or(0)));
        let mut enabled_kept = 0;
        let mut destroyed = 0;
        for v in versions {
            let live = matches!(v.state, State::Enabled | State::Disabled);
            if !live {
                continue;
            }
            if v.state == State::Enabled && enabled_kept < keep {
                enabled_kept += 1;
                continue;
            }
            let resource = format!(
                "version {} of secret {name}",
                version_number(&v.name).unwrap_or(0)
            );
            let old = crate::timestamp(v.create_time.as_ref()) < before;
            if old {
                self.paced(QuotaClass::SecretAdmin, || async {
                    self.shared
                        .secrets
                        .destroy_secret_version()
                        .set_name(v.name.clone())
                        .set_etag(v.etag.clone())
                        .send()
                        .await
                        .map_err(|e| errors::from_gax(&resource, &e))
                })
                .await?;
                destroyed += 1;
            } else if v.state == State::Enabled {
                // Superseded but within retention: unreadable, still recoverable.
                self.paced(QuotaClass::SecretAdmin, || async {
                    self.shared
                        .secrets
                        .disable_secret_version()
                        .set_name(v.name.clone())
                        .set_etag(v.etag.clone())
                        .send()
                        .await
                        .map_err(|e| errors::from_gax(&resource, &e))
                })
                .await?;
            }
        }
        Ok(destroyed)
    }
}

/// CRC32C of a payload, which Secret Manager checks on write and returns on read.
fn crc32c(data: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        // RFC 3720's check value for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn version_numbers_come_from_names() {
        assert_eq!(version_number("projects/p/secrets/s/versions/12"), Some(12));
        assert_eq!(version_number("projects/p/secrets/s/versions/latest"), None);
    }
}
