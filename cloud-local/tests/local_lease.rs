//! Object preconditions of the local adapter and the object lease built on
//! them: create-if-absent, generation matches, expiry, takeover, and many
//! takers at once through separately opened adapters (as separate processes
//! would).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloud::lease::ObjectLease;
use cloud::naming::tenant_labels;
use cloud::ports::{BucketSpec, Credential, ObjectStore, Precondition};
use cloud::CloudError;
use cloud_local::{LocalAdapters, LocalConfig};
use common::{open_temp, tenant};

const P: Credential = Credential::Platform;

async fn bucket(cloud: &LocalAdapters) {
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b-bucket".into(),
            labels: tenant_labels(&tenant("bbb")),
        })
        .await
        .expect("bucket");
}

fn lease(cloud: &LocalAdapters, holder: &str, ttl: Duration) -> ObjectLease {
    let objects: Arc<dyn ObjectStore> = cloud.objects.clone();
    ObjectLease::new(objects, P, "b-bucket", "leases/l.json", holder, ttl)
}

#[tokio::test]
async fn conditional_writes_and_deletes_follow_the_generation() {
    let (_dir, cloud) = open_temp();
    bucket(&cloud).await;
    let o = &cloud.objects;
    let first = o
        .put_object_if(
            &P,
            "b-bucket",
            "k",
            b"one".to_vec(),
            &Precondition::DoesNotExist,
        )
        .await
        .expect("create");
    let again = o
        .put_object_if(
            &P,
            "b-bucket",
            "k",
            b"two".to_vec(),
            &Precondition::DoesNotExist,
        )
        .await;
    assert!(
        matches!(again, Err(CloudError::Conflict { .. })),
        "{again:?}"
    );

    let (info, bytes) = o.read_object(&P, "b-bucket", "k").await.expect("read");
    assert_eq!(bytes, b"one");
    assert_eq!(info.generation, first.generation);

    let second = o
        .put_object_if(
            &P,
            "b-bucket",
            "k",
            b"two".to_vec(),
            &Precondition::GenerationMatch(first.generation.clone()),
        )
        .await
        .expect("replace at the generation read");
    assert_ne!(second.generation, first.generation);
    let stale = o
        .put_object_if(
            &P,
            "b-bucket",
            "k",
            b"three".to_vec(),
            &Precondition::GenerationMatch(first.generation.clone()),
        )
        .await;
    assert!(
        matches!(stale, Err(CloudError::Conflict { .. })),
        "{stale:?}"
    );
    // An unconditional write moves the generation too.
    let third = o
        .put_object(&P, "b-bucket", "k", b"four".to_vec())
        .await
        .expect("put");
    assert_ne!(third.generation, second.generation);

    let stale_delete = o
        .delete_object_if(&P, "b-bucket", "k", &second.generation)
        .await;
    assert!(matches!(stale_delete, Err(CloudError::Conflict { .. })));
    assert_eq!(
        o.get_object(&P, "b-bucket", "k").await.expect("kept"),
        b"four"
    );
    o.delete_object_if(&P, "b-bucket", "k", &third.generation)
        .await
        .expect("delete at the generation");
    let gone = o
        .delete_object_if(&P, "b-bucket", "k", &third.generation)
        .await;
    assert!(matches!(gone, Err(CloudError::NotFound { .. })), "{gone:?}");
    let missing = o
        .put_object_if(
            &P,
            "b-bucket",
            "k",
            b"x".to_vec(),
            &Precondition::GenerationMatch(third.generation),
        )
        .await;
    assert!(matches!(missing, Err(CloudError::Conflict { .. })));
}

#[tokio::test]
async fn a_held_lease_excludes_others_until_released_or_expired() {
    let (_dir, cloud) = open_temp();
    bucket(&cloud).await;
    let a = lease(&cloud, "a", Duration::from_secs(30));
    let b = lease(&cloud, "b", Duration::from_secs(30));
    assert!(a.try_acquire().await.expect("a"));
    assert!(!b.try_acquire().await.expect("b"));
    // Renewal by the holder keeps it.
    assert!(a.try_acquire().await.expect("renew"));
    assert!(!b
        .acquire(Duration::from_millis(120))
        .await
        .expect("b waits"));
    a.release().await.expect("release");
    assert!(b.try_acquire().await.expect("b after release"));
    // A released holder's release again does not free someone else's lease.
    a.release().await.expect("second release");
    assert!(!a.try_acquire().await.expect("a while b holds"));

    // An expired lease is taken over; the old holder's release then leaves
    // the new holder's lease alone.
    let short = lease(&cloud, "short", Duration::from_millis(50));
    b.release().await.expect("b releases");
    assert!(short.try_acquire().await.expect("short"));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(a.try_acquire().await.expect("a takes the expired lease"));
    short.release().await.expect("stale release is harmless");
    assert!(!b.try_acquire().await.expect("a still holds it"));
}

#[tokio::test]
async fn many_takers_in_separate_adapters_get_it_one_at_a_time() {
    let (dir, cloud) = open_temp();
    bucket(&cloud).await;
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..6 {
        // Each taker opens the data directory itself, as a separate process would.
        let adapters = LocalAdapters::open(&LocalConfig::new(dir.path())).expect("open");
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let l = lease(&adapters, &format!("taker{t}"), Duration::from_secs(30));
            for _ in 0..5 {
                assert!(l.acquire(Duration::from_secs(30)).await.expect("acquire"));
                if inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                l.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(overlaps.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_lease_needs_write_access_to_its_bucket() {
    let (_dir, cloud) = open_temp();
    bucket(&cloud).await;
    let stranger = common::service_account(&cloud, "zzz").await;
    let objects: Arc<dyn ObjectStore> = cloud.objects.clone();
    let l = ObjectLease::new(
        objects,
        stranger,
        "b-bucket",
        "leases/l.json",
        "z",
        Duration::from_secs(5),
    );
    assert!(matches!(
        l.try_acquire().await,
        Err(CloudError::PermissionDenied { .. })
    ));
}

#[tokio::test]
async fn a_wait_past_any_deadline_neither_panics_nor_hangs_a_free_lease() {
    let (_dir, cloud) = open_temp();
    bucket(&cloud).await;
    let first = lease(&cloud, "first", Duration::from_secs(60));
    // `now + Duration::MAX` as a deadline would panic before the first try.
    assert!(first.acquire(Duration::MAX).await.expect("acquire"));
    // Held by another: a zero wait tries once and gives up at once.
    let second = lease(&cloud, "second", Duration::from_secs(60));
    assert!(!second.acquire(Duration::ZERO).await.expect("acquire"));
}
