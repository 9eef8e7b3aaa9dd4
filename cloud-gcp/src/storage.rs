//! Cloud Storage through its JSON API: each tenant's bucket (uniform
//! bucket-level access, public access prevention enforced, no versioning,
//! objectAdmin for the tenant's account only, on the bucket's own policy) and
//! its objects, written with generation preconditions so concurrent writers
//! cannot lose each other's work.

use async_trait::async_trait;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Binding, Bucket, BucketSpec, Credential, ObjectInfo, ObjectStore, Policy, Precondition,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::limiter::QuotaClass;
use crate::rest::{int64, labels_in, Rest};
use crate::CellAdapter;

fn bucket_of(v: &Value) -> Bucket {
    Bucket {
        name: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        labels: labels_in(v),
        created_at: crate::parse_time(v.get("timeCreated").and_then(Value::as_str)),
    }
}

fn object_of(v: &Value) -> ObjectInfo {
    ObjectInfo {
        key: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        size: int64::<u64>(v.get("size")).unwrap_or(0),
        generation: int64::<u64>(v.get("generation"))
            .map(|g| g.to_string())
            .unwrap_or_default(),
        updated_at: crate::parse_time(v.get("updated").and_then(Value::as_str)),
    }
}

fn bucket_path(bucket: &str) -> String {
    format!("/storage/v1/b/{}", Rest::segment(bucket))
}

fn object_path(bucket: &str, key: &str) -> String {
    format!("{}/o/{}", bucket_path(bucket), Rest::segment(key))
}

/// Uniform bucket-level access on and public access prevention enforced.
fn is_locked_down(bucket: &Value) -> bool {
    let iam = &bucket["iamConfiguration"];
    iam["uniformBucketLevelAccess"]["enabled"] == Value::Bool(true)
        && iam["publicAccessPrevention"] == "enforced"
}

impl CellAdapter {
    async fn bucket_json(&self, name: &str) -> CloudResult<Value> {
        let resource = format!("bucket {name}");
        self.paced(QuotaClass::Storage, || async {
            self.rest()
                .json(
                    &resource,
                    self.rest().storage(Method::GET, &bucket_path(name)),
                )
                .await
        })
        .await
    }

    pub(crate) async fn bucket_policy(&self, bucket: &str) -> CloudResult<Policy> {
        let resource = format!("policy of bucket {bucket}");
        let v = self
            .paced(QuotaClass::Storage, || async {
                let req = self
                    .rest()
                    .storage(Method::GET, &format!("{}/iam", bucket_path(bucket)));
                self.rest().json(&resource, req).await
            })
            .await?;
        Ok(policy_of_json(&v))
    }

    pub(crate) async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: &Policy,
    ) -> CloudResult<Policy> {
        let resource = format!("policy of bucket {bucket}");
        let body = json!({
            "bindings": policy.bindings.iter().map(|b| json!({"role": b.role, "members": b.members})).collect::<Vec<_>>(),
            "etag": policy.etag,
        });
        let v = self
            .paced(QuotaClass::PolicyWrite, || async {
                let req = self
                    .rest()
                    .storage(Method::PUT, &format!("{}/iam", bucket_path(bucket)))
                    .json(&body);
                self.rest().json(&resource, req).await
            })
            .await?;
        Ok(policy_of_json(&v))
    }

    async fn upload(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        if_generation: Option<&str>,
    ) -> CloudResult<ObjectInfo> {
        let resource = format!("object {key} in bucket {bucket}");
        let data = bytes::Bytes::from(data);
        let v = self
            .paced_as(cred, QuotaClass::Storage, || async {
                let mut query = vec![("uploadType", "media".to_owned()), ("name", key.to_owned())];
                if let Some(generation) = if_generation {
                    query.push(("ifGenerationMatch", generation.to_owned()));
                }
                let req = self
                    .rest()
                    .storage(Method::POST, &format!("/upload{}/o", bucket_path(bucket)))
                    .query(&query)
                    .header(http::header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone());
                self.rest().json(&resource, req).await
            })
            .await?;
        Ok(object_of(&v))
    }
}

fn policy_of_json(v: &Value) -> Policy {
    let bindings = v
        .get("bindings")
        .and_then(Value::as_array)
        .map(|bs| {
            bs.iter()
                // Conditional bindings are not the port's; the bucket's policy
                // is ledgerlake's alone (uniform access, one tenant).
                .filter(|b| b.get("condition").is_none())
                .map(|b| Binding {
                    role: b
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    members: b
                        .get("members")
                        .and_then(Value::as_array)
                        .map(|m| {
                            m.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Policy {
        bindings,
        etag: v
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

#[async_trait]
impl ObjectStore for CellAdapter {
    async fn ensure_bucket(&self, spec: &BucketSpec) -> CloudResult<Bucket> {
        let resource = format!("bucket {}", spec.name);
        let body = json!({
            "name": spec.name,
            "location": self.shared.config.location,
            "labels": spec.labels,
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": true},
                "publicAccessPrevention": "enforced",
            },
            "versioning": {"enabled": false},
        });
        let created = self
            .paced(QuotaClass::BucketCreate, || async {
                let req = self
                    .rest()
                    .storage(Method::POST, "/storage/v1/b")
                    .query(&[("project", self.project.as_str())])
                    .json(&body);
                self.rest().json(&resource, req).await
            })
            .await;
        let current = match created {
            Ok(v) => v,
            Err(CloudError::AlreadyExists { .. }) => {
                let found = self.bucket_json(&spec.name).await?;
                // Bucket names are global: one that exists without our labels
                // is someone else's (or another deployment's).
                crate::check_owner(resource.as_str(), &labels_in(&found), &spec.labels)?;
                found
            }
            Err(e) => return Err(e),
        };
        if crate::has_labels(&labels_in(&current), &spec.labels) && is_locked_down(&current) {
            return Ok(bucket_of(&current));
        }
        // Answered without its labels or its access settings (some emulators
        // drop them on insert; a bucket of an older release may lack them):
        // set them, or teardown's listing by label would miss the bucket and
        // its objects could be reached other than through its own policy.
        let patched = self
            .paced(QuotaClass::Storage, || async {
                let req = self
                    .rest()
                    .storage(Method::PATCH, &bucket_path(&spec.name))
                    .json(&json!({"labels": spec.labels, "iamConfiguration": body["iamConfiguration"]}));
                self.rest().json(&resource, req).await
            })
            .await?;
        if !is_locked_down(&patched) {
            return Err(CloudError::permanent(
                resource,
                "uniform bucket-level access and public access prevention could not be set",
            ));
        }
        Ok(bucket_of(&patched))
    }

    async fn get_bucket(&self, name: &str) -> CloudResult<Bucket> {
        Ok(bucket_of(&self.bucket_json(name).await?))
    }

    async fn list_buckets(&self, labels: &Labels) -> CloudResult<Vec<Bucket>> {
        let resource = format!("buckets of project {}", self.project);
        let items = crate::rest::all_pages(&resource, "items", |token| {
            let resource = &resource;
            self.paced(QuotaClass::Storage, move || {
                let mut query = vec![
                    ("project", self.project.clone()),
                    ("maxResults", "500".to_owned()),
                ];
                query.extend(token.clone().map(|t| ("pageToken", t)));
                let req = self
                    .rest()
                    .storage(Method::GET, "/storage/v1/b")
                    .query(&query);
                async move { self.rest().json(resource, req).await }
            })
        })
        .await?;
        Ok(items
            .iter()
            .map(bucket_of)
            .filter(|b| crate::has_labels(&b.labels, labels))
            .collect())
    }

    async fn delete_bucket(&self, name: &str) -> CloudResult<()> {
        // A bucket must be empty to go: its objects first, as the platform.
        for object in self.list_objects(&Credential::Platform, name, "").await? {
            match self
                .delete_object(&Credential::Platform, name, &object.key)
                .await
            {
                Ok(()) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let resource = format!("bucket {name}");
        self.paced(QuotaClass::Storage, || async {
            self.rest()
                .bytes(
                    &resource,
                    self.rest().storage(Method::DELETE, &bucket_path(name)),
                )
                .await
                .map(|_| ())
        })
        .await
    }

    async fn put_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
    ) -> CloudResult<ObjectInfo> {
        self.upload(cred, bucket, key, data, None).await
    }

    async fn put_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        condition: &Precondition,
    ) -> CloudResult<ObjectInfo> {
        let generation = match condition {
            Precondition::DoesNotExist => "0",
            Precondition::GenerationMatch(g) => g.as_str(),
        };
        self.upload(cred, bucket, key, data, Some(generation)).await
    }

    async fn get_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<Vec<u8>> {
        self.read_object(cred, bucket, key)
            .await
            .map(|(_, data)| data)
    }

    async fn read_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
    ) -> CloudResult<(ObjectInfo, Vec<u8>)> {
        let resource = format!("object {key} in bucket {bucket}");
        let meta = self
            .paced_as(cred, QuotaClass::Storage, || async {
                self.rest()
                    .json(
                        &resource,
                        self.rest().storage(Method::GET, &object_path(bucket, key)),
                    )
                    .await
            })
            .await?;
        let info = object_of(&meta);
        // The media of exactly the generation described, so the pair is consistent.
        let data = self
            .paced_as(cred, QuotaClass::Storage, || async {
                let req = self
                    .rest()
                    .storage(Method::GET, &object_path(bucket, key))
                    .query(&[("alt", "media"), ("generation", info.generation.as_str())]);
                self.rest().bytes(&resource, req).await
            })
            .await?;
        Ok((info, data.to_vec()))
    }

    async fn list_objects(
        &self,
        cred: &Credential,
        bucket: &str,
        prefix: &str,
    ) -> CloudResult<Vec<ObjectInfo>> {
        let resource = format!("objects in bucket {bucket}");
        let listing = crate::rest::all_pages(&resource, "items", |token| {
            let resource = &resource;
            self.paced(QuotaClass::Storage, move || {
                let mut query = vec![
                    ("prefix", prefix.to_owned()),
                    ("maxResults", "1000".to_owned()),
                ];
                query.extend(token.clone().map(|t| ("pageToken", t)));
                let req = self
                    .rest()
                    .storage(Method::GET, &format!("{}/o", bucket_path(bucket)))
                    .query(&query);
                async move { self.rest().json(resource, req).await }
            })
        });
        let items = self
            .shared
            .auth
            .acting_as(crate::auth::Principal::from(cred), listing)
            .await?;
        let mut found: Vec<ObjectInfo> = items.iter().map(object_of).collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<()> {
        let resource = format!("object {key} in bucket {bucket}");
        self.paced_as(cred, QuotaClass::Storage, || async {
            self.rest()
                .bytes(
                    &resource,
                    self.rest()
                        .storage(Method::DELETE, &object_path(bucket, key)),
                )
                .await
                .map(|_| ())
        })
        .await
    }

    async fn delete_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        generation: &str,
    ) -> CloudResult<()> {
        let resource = format!("object {key} in bucket {bucket}");
        self.paced_as(cred, QuotaClass::Storage, || async {
            let req = self
                .rest()
                .storage(Method::DELETE, &object_path(bucket, key))
                .query(&[("ifGenerationMatch", generation)]);
            self.rest().bytes(&resource, req).await.map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_read_int64_fields_sent_as_strings() {
        let o = object_of(
            &json!({"name": "raw/a.ndjson", "size": "42", "generation": "1700000000000001", "updated": "2026-12-02T10:00:00Z"}),
        );
        assert_eq!(o.size, 42);
        assert_eq!(o.generation, "1700000000000001");
        assert_eq!(o.updated_at.year(), 2026);
    }

    #[test]
    fn object_names_are_one_path_segment() {
        assert_eq!(
            object_path("b", "raw/x y.ndjson"),
            "/storage/v1/b/b/o/raw%2Fx%20y.ndjson"
        );
    }
}
