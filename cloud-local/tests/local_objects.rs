//! The local object store: buckets as folders, atomic objects.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cloud::naming::Labels;
use cloud::ports::{BucketSpec, Credential, ObjectStore};
use cloud::CloudError;
use common::{labels, open_temp};

fn spec(name: &str, tenant: &str) -> BucketSpec {
    BucketSpec {
        name: name.to_owned(),
        labels: labels(tenant),
    }
}

#[tokio::test]
async fn ensure_bucket_is_create_or_get() {
    let (dir, cloud) = open_temp();
    let first = cloud
        .objects
        .ensure_bucket(&spec("client-a-bucket", "aaa"))
        .await
        .expect("create");
    assert!(dir.path().join("buckets/client-a-bucket").is_dir());
    assert!(dir
        .path()
        .join("meta/buckets/client-a-bucket.json")
        .is_file());
    let again = cloud
        .objects
        .ensure_bucket(&spec("client-a-bucket", "aaa"))
        .await
        .expect("get");
    assert_eq!(
        first, again,
        "the second ensure returns the bucket unchanged"
    );
    assert_eq!(
        cloud
            .objects
            .get_bucket("client-a-bucket")
            .await
            .expect("get"),
        first
    );
}

#[tokio::test]
async fn a_bucket_of_another_owner_is_already_exists() {
    let (_dir, cloud) = open_temp();
    cloud
        .objects
        .ensure_bucket(&spec("shared-name", "aaa"))
        .await
        .expect("create");
    match cloud
        .objects
        .ensure_bucket(&spec("shared-name", "bbb"))
        .await
    {
        Err(CloudError::AlreadyExists { resource, owner }) => {
            assert_eq!(resource, "bucket shared-name");
            assert!(owner.contains("tenant=aaa"), "{owner}");
        }
        other => panic!("{other:?}"),
    }
    let unlabelled = BucketSpec {
        name: "shared-name".into(),
        labels: Labels::new(),
    };
    assert!(matches!(
        cloud.objects.ensure_bucket(&unlabelled).await,
        Err(CloudError::AlreadyExists { .. })
    ));
}

#[tokio::test]
async fn delete_and_get_of_an_absent_bucket_are_not_found() {
    let (dir, cloud) = open_temp();
    assert!(matches!(
        cloud.objects.delete_bucket("nope").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.objects.get_bucket("nope").await,
        Err(CloudError::NotFound { .. })
    ));
    cloud
        .objects
        .ensure_bucket(&spec("b1", "aaa"))
        .await
        .expect("create");
    cloud
        .objects
        .put_object(&Credential::Platform, "b1", "raw/x.ndjson", b"{}".to_vec())
        .await
        .expect("put");
    cloud.objects.delete_bucket("b1").await.expect("delete");
    assert!(!dir.path().join("buckets/b1").exists());
    assert!(!dir.path().join("meta/buckets/b1.json").exists());
    assert!(matches!(
        cloud.objects.delete_bucket("b1").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud
            .objects
            .get_object(&Credential::Platform, "b1", "raw/x.ndjson")
            .await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test]
async fn list_buckets_filters_by_every_label_and_sorts_by_name() {
    let (_dir, cloud) = open_temp();
    for (name, t) in [("zeta", "aaa"), ("alpha", "aaa"), ("mid", "bbb")] {
        cloud
            .objects
            .ensure_bucket(&spec(name, t))
            .await
            .expect("create");
    }
    let names = |v: Vec<cloud::ports::Bucket>| v.into_iter().map(|b| b.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            cloud
                .objects
                .list_buckets(&labels("aaa"))
                .await
                .expect("list")
        ),
        ["alpha", "zeta"]
    );
    assert_eq!(
        names(
            cloud
                .objects
                .list_buckets(&Labels::new())
                .await
                .expect("list")
        ),
        ["alpha", "mid", "zeta"]
    );
    let mut narrower = labels("aaa");
    narrower.insert("extra".into(), "x".into());
    assert!(cloud
        .objects
        .list_buckets(&narrower)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn objects_round_trip_and_list_by_prefix_in_key_order() {
    let (_dir, cloud) = open_temp();
    let p = Credential::Platform;
    cloud
        .objects
        .ensure_bucket(&spec("b", "aaa"))
        .await
        .expect("create");
    for key in [
        "raw/invoices/2.ndjson",
        "raw/invoices/1.ndjson",
        "raw/contacts/1.ndjson",
        "rawfile",
        "other/x",
    ] {
        let info = cloud
            .objects
            .put_object(&p, "b", key, key.as_bytes().to_vec())
            .await
            .expect("put");
        assert_eq!(info.key, key);
        assert_eq!(info.size, key.len() as u64);
    }
    assert_eq!(
        cloud
            .objects
            .get_object(&p, "b", "rawfile")
            .await
            .expect("get"),
        b"rawfile"
    );
    let keys = |v: Vec<cloud::ports::ObjectInfo>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(
            cloud
                .objects
                .list_objects(&p, "b", "raw/")
                .await
                .expect("list")
        ),
        [
            "raw/contacts/1.ndjson",
            "raw/invoices/1.ndjson",
            "raw/invoices/2.ndjson"
        ]
    );
    assert_eq!(
        keys(
            cloud
                .objects
                .list_objects(&p, "b", "raw")
                .await
                .expect("list")
        ),
        [
            "raw/contacts/1.ndjson",
            "raw/invoices/1.ndjson",
            "raw/invoices/2.ndjson",
            "rawfile"
        ]
    );
    assert_eq!(
        keys(
            cloud
                .objects
                .list_objects(&p, "b", "raw/invoices/2")
                .await
                .expect("list")
        ),
        ["raw/invoices/2.ndjson"]
    );
    assert_eq!(
        cloud
            .objects
            .list_objects(&p, "b", "")
            .await
            .expect("list")
            .len(),
        5
    );
    assert!(cloud
        .objects
        .list_objects(&p, "b", "nothing")
        .await
        .expect("list")
        .is_empty());

    // Overwrite, then delete; an emptied folder does not linger as a phantom prefix.
    cloud
        .objects
        .put_object(&p, "b", "rawfile", b"v2".to_vec())
        .await
        .expect("put");
    assert_eq!(
        cloud
            .objects
            .get_object(&p, "b", "rawfile")
            .await
            .expect("get"),
        b"v2"
    );
    cloud
        .objects
        .delete_object(&p, "b", "other/x")
        .await
        .expect("delete");
    assert!(matches!(
        cloud.objects.delete_object(&p, "b", "other/x").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.objects.get_object(&p, "b", "other/x").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.objects.get_object(&p, "b", "raw").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(!_dir.path().join("buckets/b/other").exists());
}

#[tokio::test]
async fn bad_keys_are_refused_and_never_touch_the_disk_outside_the_bucket() {
    let (dir, cloud) = open_temp();
    let p = Credential::Platform;
    cloud
        .objects
        .ensure_bucket(&spec("b", "aaa"))
        .await
        .expect("create");
    for key in [
        "../escape",
        "a/../../escape",
        "/abs",
        "a//b",
        "a/./b",
        "a\\b",
        "a\0b",
        "",
        "trailing/",
    ] {
        let r = cloud.objects.put_object(&p, "b", key, b"x".to_vec()).await;
        assert!(
            matches!(r, Err(CloudError::Permanent { .. })),
            "{key:?}: {r:?}"
        );
        let r = cloud.objects.get_object(&p, "b", key).await;
        assert!(
            matches!(r, Err(CloudError::Permanent { .. })),
            "{key:?}: {r:?}"
        );
    }
    assert!(!dir.path().join("buckets/escape").exists());
    assert!(!dir.path().join("escape").exists());
    for bucket in ["..", "../buckets", "a/b", ".hidden"] {
        let r = cloud
            .objects
            .put_object(&p, bucket, "k", b"x".to_vec())
            .await;
        assert!(
            matches!(r, Err(CloudError::Permanent { .. })),
            "{bucket:?}: {r:?}"
        );
    }
    // A key whose folder is another object's name is refused, not half-written.
    cloud
        .objects
        .put_object(&p, "b", "a", b"x".to_vec())
        .await
        .expect("put");
    assert!(matches!(
        cloud
            .objects
            .put_object(&p, "b", "a/b", b"x".to_vec())
            .await,
        Err(CloudError::Permanent { .. })
    ));
    cloud
        .objects
        .put_object(&p, "b", "f/g", b"x".to_vec())
        .await
        .expect("put");
    assert!(matches!(
        cloud.objects.put_object(&p, "b", "f", b"x".to_vec()).await,
        Err(CloudError::Permanent { .. })
    ));
    // Writing to a bucket that does not exist.
    assert!(matches!(
        cloud
            .objects
            .put_object(&p, "missing", "k", b"x".to_vec())
            .await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_sees_the_old_bytes_or_the_new_never_a_mix() {
    let (dir, cloud) = open_temp();
    let p = Credential::Platform;
    cloud
        .objects
        .ensure_bucket(&spec("b", "aaa"))
        .await
        .expect("create");
    let old = vec![b'o'; 1 << 20];
    let new = vec![b'n'; 1 << 20];
    cloud
        .objects
        .put_object(&p, "b", "big", old.clone())
        .await
        .expect("put");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (objects, done, old, new) = (
            cloud.objects.clone(),
            done.clone(),
            old.clone(),
            new.clone(),
        );
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) || reads < 10 {
                let got = objects
                    .get_object(&Credential::Platform, "b", "big")
                    .await
                    .expect("get");
                assert!(
                    got == old || got == new,
                    "a torn read of {} bytes",
                    got.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..40 {
        let data = if i % 2 == 0 { new.clone() } else { old.clone() };
        cloud
            .objects
            .put_object(&p, "b", "big", data)
            .await
            .expect("put");
    }
    done.store(true, Ordering::SeqCst);
    assert!(reader.await.expect("reader") >= 10);
    // No temporary file is left in the bucket or in tmp/.
    let listed = cloud.objects.list_objects(&p, "b", "").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}
