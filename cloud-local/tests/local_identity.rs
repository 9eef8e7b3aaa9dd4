//! Local identities: service accounts, keys, IAM policies and the authoriser.

mod common;

use std::os::unix::fs::PermissionsExt;

use cloud::ports::identity::grant;
use cloud::ports::{
    roles, BucketSpec, Credential, Identity, ObjectStore, Policy, ResourceRef, ServiceAccountSpec,
};
use cloud::CloudError;
use common::{email, grant_to, is_denied, labels, open_temp, service_account};

fn sa_spec(id: &str, tenant: &str) -> ServiceAccountSpec {
    ServiceAccountSpec {
        account_id: id.to_owned(),
        display_name: "d".to_owned(),
        labels: labels(tenant),
    }
}

#[tokio::test]
async fn service_accounts_are_create_or_get_with_a_private_key() {
    let (dir, cloud) = open_temp();
    let first = cloud
        .identity
        .ensure_service_account(&sa_spec("client-aaa-sa", "aaa"))
        .await
        .expect("create");
    assert_eq!(first.email, "client-aaa-sa@local.iam.local");
    assert_eq!(cloud.identity.email_for("client-aaa-sa"), first.email);
    assert_eq!(first.unique_id.len(), 21);
    let again = cloud
        .identity
        .ensure_service_account(&sa_spec("client-aaa-sa", "aaa"))
        .await
        .expect("get");
    assert_eq!(first, again);
    let key_path = dir
        .path()
        .join("iam/keys/client-aaa-sa@local.iam.local.key");
    let mode = std::fs::metadata(&key_path)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let Credential::ServiceAccount { key, .. } = cloud
        .identity
        .credential_for(&first.email)
        .await
        .expect("cred")
    else {
        panic!("not a service account");
    };
    assert_eq!(key.len(), 64);
    // The record holds the key's hash, never the key.
    let record = std::fs::read_to_string(
        dir.path()
            .join("iam/service-accounts/client-aaa-sa@local.iam.local.json"),
    )
    .expect("record");
    assert!(!record.contains(&key));
    assert!(record.contains("key_sha256"));
    // Debug output hides the key.
    let cred = cloud
        .identity
        .credential_for(&first.email)
        .await
        .expect("cred");
    assert!(!format!("{cred:?}").contains(&key));

    match cloud
        .identity
        .ensure_service_account(&sa_spec("client-aaa-sa", "bbb"))
        .await
    {
        Err(CloudError::AlreadyExists { owner, .. }) => {
            assert!(owner.contains("tenant=aaa"), "{owner}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cloud
            .identity
            .ensure_service_account(&sa_spec("Bad_Id", "aaa"))
            .await,
        Err(CloudError::Permanent { .. })
    ));
}

#[tokio::test]
async fn deleting_a_service_account_removes_its_key_and_its_power() {
    let (dir, cloud) = open_temp();
    let cred = service_account(&cloud, "aaa").await;
    let email = email(&cred);
    let listed = cloud
        .identity
        .list_service_accounts(&labels("aaa"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(cloud
        .identity
        .list_service_accounts(&labels("bbb"))
        .await
        .expect("list")
        .is_empty());
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    grant_to(
        &cloud,
        &cred,
        ResourceRef::Bucket("b".into()),
        roles::STORAGE_OBJECT_ADMIN,
    )
    .await;
    cloud
        .objects
        .put_object(&cred, "b", "k", b"x".to_vec())
        .await
        .expect("put as the account");

    cloud
        .identity
        .delete_service_account(&email)
        .await
        .expect("delete");
    assert!(!dir.path().join(format!("iam/keys/{email}.key")).exists());
    assert!(matches!(
        cloud.identity.delete_service_account(&email).await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.identity.get_service_account(&email).await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.identity.credential_for(&email).await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(is_denied(&cloud.objects.get_object(&cred, "b", "k").await));
}

#[tokio::test]
async fn a_stale_etag_is_a_conflict() {
    let (_dir, cloud) = open_temp();
    let cred = service_account(&cloud, "aaa").await;
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    let resource = ResourceRef::Bucket("b".into());
    let read1 = cloud
        .identity
        .get_iam_policy(&resource)
        .await
        .expect("read");
    let read2 = cloud
        .identity
        .get_iam_policy(&resource)
        .await
        .expect("read");
    assert_eq!(read1.etag, read2.etag);
    let mut p1 = read1.clone();
    p1.add(roles::STORAGE_OBJECT_VIEWER, &cred.member());
    let stored = cloud
        .identity
        .set_iam_policy(&resource, &p1)
        .await
        .expect("first writer wins");
    assert_ne!(stored.etag, read1.etag);
    let mut p2 = read2.clone();
    p2.add(roles::STORAGE_OBJECT_ADMIN, &cred.member());
    match cloud.identity.set_iam_policy(&resource, &p2).await {
        Err(e @ CloudError::Conflict { .. }) => assert!(e.is_retryable()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The read-modify-write helper re-reads and succeeds; both grants survive.
    assert!(grant(
        cloud.identity.as_ref(),
        &resource,
        roles::STORAGE_OBJECT_ADMIN,
        &cred.member()
    )
    .await
    .expect("grant"));
    let now = cloud
        .identity
        .get_iam_policy(&resource)
        .await
        .expect("read");
    assert!(now.has(roles::STORAGE_OBJECT_VIEWER, &cred.member()));
    assert!(now.has(roles::STORAGE_OBJECT_ADMIN, &cred.member()));
    assert!(!grant(
        cloud.identity.as_ref(),
        &resource,
        roles::STORAGE_OBJECT_ADMIN,
        &cred.member()
    )
    .await
    .expect("grant again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_are_all_kept() {
    let (_dir, cloud) = open_temp();
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    let mut members = Vec::new();
    for t in ["aaa", "bbb", "ccc", "ddd", "eee", "fff"] {
        members.push(service_account(&cloud, t).await.member());
    }
    let tasks: Vec<_> = members
        .iter()
        .cloned()
        .map(|m| {
            let identity = cloud.identity.clone();
            tokio::spawn(async move {
                grant(
                    identity.as_ref(),
                    &ResourceRef::Bucket("b".into()),
                    roles::STORAGE_OBJECT_VIEWER,
                    &m,
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("grant");
    }
    let policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Bucket("b".into()))
        .await
        .expect("read");
    for m in &members {
        assert!(policy.has(roles::STORAGE_OBJECT_VIEWER, m), "{m} lost");
    }
}

#[tokio::test]
async fn granting_to_an_unknown_account_is_transient_and_to_other_members_permanent() {
    let (_dir, cloud) = open_temp();
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    let resource = ResourceRef::Bucket("b".into());
    let mut p = cloud
        .identity
        .get_iam_policy(&resource)
        .await
        .expect("read");
    p.add(
        roles::STORAGE_OBJECT_VIEWER,
        "serviceAccount:ghost-sa@local.iam.local",
    );
    match cloud.identity.set_iam_policy(&resource, &p).await {
        Err(e @ CloudError::Transient { .. }) => {
            assert!(e.to_string().contains("does not exist"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let mut p = cloud
        .identity
        .get_iam_policy(&resource)
        .await
        .expect("read");
    p.add(roles::STORAGE_OBJECT_VIEWER, "allUsers");
    assert!(matches!(
        cloud.identity.set_iam_policy(&resource, &p).await,
        Err(CloudError::Permanent { .. })
    ));
    // A policy on a resource that does not exist.
    let missing = ResourceRef::Bucket("missing".into());
    assert!(matches!(
        cloud.identity.get_iam_policy(&missing).await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud
            .identity
            .set_iam_policy(&missing, &Policy::default())
            .await,
        Err(CloudError::NotFound { .. })
    ));
    // The project always exists.
    let cred = service_account(&cloud, "aaa").await;
    grant_to(
        &cloud,
        &cred,
        ResourceRef::Project,
        roles::BIGQUERY_JOB_USER,
    )
    .await;
    assert!(cloud
        .identity
        .get_iam_policy(&ResourceRef::Project)
        .await
        .expect("read")
        .has(roles::BIGQUERY_JOB_USER, &cred.member()));
}

#[tokio::test]
async fn a_forged_or_foreign_key_is_refused_and_not_echoed() {
    let (_dir, cloud) = open_temp();
    let a = service_account(&cloud, "aaa").await;
    let b = service_account(&cloud, "bbb").await;
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    grant_to(
        &cloud,
        &a,
        ResourceRef::Bucket("b".into()),
        roles::STORAGE_OBJECT_ADMIN,
    )
    .await;
    cloud
        .objects
        .put_object(&a, "b", "k", b"x".to_vec())
        .await
        .expect("the real key works");
    let Credential::ServiceAccount { key: b_key, .. } = &b else {
        panic!()
    };
    let forged = [
        Credential::ServiceAccount {
            email: email(&a),
            key: "0".repeat(64),
        },
        Credential::ServiceAccount {
            email: email(&a),
            key: String::new(),
        },
        Credential::ServiceAccount {
            email: email(&a),
            key: b_key.clone(),
        },
        Credential::ServiceAccount {
            email: "nobody@local.iam.local".into(),
            key: "k".into(),
        },
        Credential::ServiceAccount {
            email: "../../etc/passwd".into(),
            key: "k".into(),
        },
    ];
    for cred in forged {
        let r = cloud.objects.get_object(&cred, "b", "k").await;
        match &r {
            Err(e @ CloudError::PermissionDenied { .. }) => {
                let Credential::ServiceAccount { key, .. } = &cred else {
                    panic!()
                };
                if !key.is_empty() && key.len() > 2 {
                    assert!(
                        !e.to_string().contains(key.as_str()),
                        "the key is echoed: {e}"
                    );
                }
            }
            other => panic!("{cred:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_recreated_bucket_does_not_inherit_the_old_grants() {
    let (dir, cloud) = open_temp();
    let a = service_account(&cloud, "aaa").await;
    let spec = BucketSpec {
        name: "b".into(),
        labels: labels("aaa"),
    };
    cloud.objects.ensure_bucket(&spec).await.expect("bucket");
    grant_to(
        &cloud,
        &a,
        ResourceRef::Bucket("b".into()),
        roles::STORAGE_OBJECT_ADMIN,
    )
    .await;
    assert!(dir.path().join("iam/policies/bucket/b.json").exists());
    cloud.objects.delete_bucket("b").await.expect("delete");
    assert!(
        !dir.path().join("iam/policies/bucket/b.json").exists(),
        "the policy goes with the bucket"
    );
    cloud.objects.ensure_bucket(&spec).await.expect("recreate");
    assert!(is_denied(
        &cloud.objects.put_object(&a, "b", "k", b"x".to_vec()).await
    ));
    let policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Bucket("b".into()))
        .await
        .expect("read");
    assert!(policy.bindings.is_empty());
}
