//! Local secrets: encryption at rest, versions, the master key.

mod common;

use std::os::unix::fs::PermissionsExt;

use cloud::ports::{Credential, SecretPayload, SecretSpec, SecretStore};
use cloud::CloudError;
use cloud_local::{LocalAdapters, LocalConfig};
use common::{labels, open_temp};

const P: Credential = Credential::Platform;

fn spec(name: &str, tenant: &str) -> SecretSpec {
    SecretSpec {
        name: name.to_owned(),
        labels: labels(tenant),
    }
}

fn payload(s: &str) -> SecretPayload {
    SecretPayload::new(s.as_bytes().to_vec())
}

#[tokio::test]
async fn secrets_are_create_or_get_and_versioned() {
    let (dir, cloud) = open_temp();
    let info = cloud
        .secrets
        .ensure_secret(&spec("xero_token_aaa", "aaa"))
        .await
        .expect("create");
    assert_eq!(info.latest_version, None);
    assert_eq!(
        cloud
            .secrets
            .ensure_secret(&spec("xero_token_aaa", "aaa"))
            .await
            .expect("get"),
        info
    );
    assert!(matches!(
        cloud
            .secrets
            .ensure_secret(&spec("xero_token_aaa", "bbb"))
            .await,
        Err(CloudError::AlreadyExists { .. })
    ));
    assert!(matches!(
        cloud.secrets.access_latest(&P, "xero_token_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    assert_eq!(
        cloud
            .secrets
            .add_version(&P, "xero_token_aaa", &payload("one"))
            .await
            .expect("add"),
        1
    );
    assert_eq!(
        cloud
            .secrets
            .add_version(&P, "xero_token_aaa", &payload("two"))
            .await
            .expect("add"),
        2
    );
    let (v, got) = cloud
        .secrets
        .access_latest(&P, "xero_token_aaa")
        .await
        .expect("read");
    assert_eq!((v, got.expose()), (2, b"two".as_slice()));
    assert_eq!(
        cloud
            .secrets
            .get_secret("xero_token_aaa")
            .await
            .expect("get")
            .latest_version,
        Some(2)
    );
    // Encrypted at rest: the plaintext is nowhere in the file.
    let file =
        std::fs::read(dir.path().join("secrets/xero_token_aaa/versions/2.enc")).expect("file");
    assert!(!file.windows(3).any(|w| w == b"two"));
    assert!(file.starts_with(b"LLS1"));

    // A number is never reused, even when the newest file is gone.
    std::fs::remove_file(dir.path().join("secrets/xero_token_aaa/versions/2.enc")).expect("rm");
    assert_eq!(
        cloud
            .secrets
            .add_version(&P, "xero_token_aaa", &payload("three"))
            .await
            .expect("add"),
        3
    );

    let listed = cloud
        .secrets
        .list_secrets(&labels("aaa"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(cloud
        .secrets
        .list_secrets(&labels("bbb"))
        .await
        .expect("list")
        .is_empty());
    cloud
        .secrets
        .delete_secret("xero_token_aaa")
        .await
        .expect("delete");
    assert!(!dir.path().join("secrets/xero_token_aaa").exists());
    assert!(matches!(
        cloud.secrets.delete_secret("xero_token_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.secrets.get_secret("xero_token_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    // Recreated, it starts again without versions.
    cloud
        .secrets
        .ensure_secret(&spec("xero_token_aaa", "aaa"))
        .await
        .expect("recreate");
    assert!(matches!(
        cloud.secrets.access_latest(&P, "xero_token_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_get_distinct_numbers() {
    let (_dir, cloud) = open_temp();
    cloud
        .secrets
        .ensure_secret(&spec("s", "aaa"))
        .await
        .expect("create");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let secrets = cloud.secrets.clone();
            tokio::spawn(async move {
                secrets
                    .add_version(&P, "s", &payload(&format!("v{i}")))
                    .await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.expect("join").expect("add"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<u64>>());
}

#[tokio::test]
async fn the_key_file_is_created_private_and_reused() {
    let (dir, cloud) = open_temp();
    let key_path = dir.path().join("master.key");
    let mode = std::fs::metadata(&key_path)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    cloud
        .secrets
        .ensure_secret(&spec("s", "aaa"))
        .await
        .expect("create");
    cloud
        .secrets
        .add_version(&P, "s", &payload("kept"))
        .await
        .expect("add");
    drop(cloud);
    let reopened =
        LocalAdapters::open(&LocalConfig::new(dir.path())).expect("reopen with the key file");
    let (_, got) = reopened.secrets.access_latest(&P, "s").await.expect("read");
    assert_eq!(got.expose(), b"kept");

    // A key file others can read is refused, with a clear message.
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = LocalAdapters::open(&LocalConfig::new(dir.path())).expect_err("group-readable key");
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // Without the key file, no new key is made over existing secrets.
    let moved = dir.path().join("master.key.bak");
    std::fs::rename(&key_path, &moved).expect("move key");
    let err = LocalAdapters::open(&LocalConfig::new(dir.path())).expect_err("missing key");
    assert!(err.to_string().contains("already holds secrets"), "{err}");
    assert!(!key_path.exists(), "no new key file was created");
    std::fs::rename(&moved, &key_path).expect("restore key");
    LocalAdapters::open(&LocalConfig::new(dir.path())).expect("the restored key opens");
}

#[tokio::test]
async fn a_wrong_master_key_fails_open_clearly_and_destroys_nothing() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let key_a = "11".repeat(32);
    let key_b = "22".repeat(32);
    let config = |key: &str| LocalConfig {
        master_key: Some(key.to_owned()),
        ..LocalConfig::new(dir.path())
    };
    let cloud = LocalAdapters::open(&config(&key_a)).expect("open");
    assert!(
        !dir.path().join("master.key").exists(),
        "an explicit key needs no key file"
    );
    cloud
        .secrets
        .ensure_secret(&spec("s", "aaa"))
        .await
        .expect("create");
    cloud
        .secrets
        .add_version(&P, "s", &payload("precious"))
        .await
        .expect("add");
    drop(cloud);
    let before = std::fs::read(dir.path().join("secrets/s/versions/1.enc")).expect("file");

    let err = LocalAdapters::open(&config(&key_b)).expect_err("wrong key");
    let message = err.to_string();
    assert!(message.contains("does not match"), "{message}");
    assert!(
        !message.contains(&key_b) && !message.contains(&key_a),
        "a key is echoed: {message}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("secrets/s/versions/1.enc")).expect("file"),
        before
    );

    // Without the key check, a wrong key is still caught from a version.
    std::fs::remove_file(dir.path().join("secrets/.keycheck")).expect("rm keycheck");
    let err = LocalAdapters::open(&config(&key_b)).expect_err("wrong key");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(
        !dir.path().join("secrets/.keycheck").exists(),
        "nothing written on a wrong key"
    );

    let cloud = LocalAdapters::open(&config(&key_a)).expect("the right key opens");
    let (_, got) = cloud.secrets.access_latest(&P, "s").await.expect("read");
    assert_eq!(got.expose(), b"precious");

    // A malformed key is refused without being echoed.
    let err = LocalAdapters::open(&config("not-a-key-but-a-secret-value")).expect_err("malformed");
    let message = err.to_string();
    assert!(
        message.contains("LEDGERLAKE_MASTER_KEY") && !message.contains("not-a-key-but"),
        "{message}"
    );
}

#[tokio::test]
async fn tampered_or_swapped_ciphertext_is_an_error_never_garbage() {
    let (dir, cloud) = open_temp();
    for name in ["s1", "s2"] {
        cloud
            .secrets
            .ensure_secret(&spec(name, "aaa"))
            .await
            .expect("create");
    }
    cloud
        .secrets
        .add_version(&P, "s1", &payload("s1-v1"))
        .await
        .expect("add");
    cloud
        .secrets
        .add_version(&P, "s1", &payload("s1-v2"))
        .await
        .expect("add");
    cloud
        .secrets
        .add_version(&P, "s2", &payload("s2-v1"))
        .await
        .expect("add");
    let v = |s: &str, n: u64| dir.path().join(format!("secrets/{s}/versions/{n}.enc"));

    // Flip one bit of the ciphertext.
    let original = std::fs::read(v("s1", 2)).expect("read");
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(v("s1", 2), &tampered).expect("write");
    match cloud.secrets.access_latest(&P, "s1").await {
        Err(CloudError::Permanent {
            resource, message, ..
        }) => {
            assert_eq!(resource, "secret s1");
            assert!(
                message.contains("version 2") && message.contains("could not be decrypted"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Truncated.
    std::fs::write(v("s1", 2), &original[..10]).expect("write");
    assert!(matches!(
        cloud.secrets.access_latest(&P, "s1").await,
        Err(CloudError::Permanent { .. })
    ));
    // Version 1 moved into version 2's place of the same secret.
    std::fs::copy(v("s1", 1), v("s1", 2)).expect("copy");
    assert!(matches!(
        cloud.secrets.access_latest(&P, "s1").await,
        Err(CloudError::Permanent { .. })
    ));
    // Another secret's version 2 moved here (same number, other name).
    std::fs::write(v("s1", 2), &original).expect("restore");
    std::fs::copy(v("s1", 2), v("s2", 2)).expect("copy");
    assert!(matches!(
        cloud.secrets.access_latest(&P, "s2").await,
        Err(CloudError::Permanent { .. })
    ));
    // The untouched one still reads.
    let (_, got) = cloud.secrets.access_latest(&P, "s1").await.expect("read");
    assert_eq!(got.expose(), b"s1-v2");
}

#[tokio::test]
async fn old_versions_are_destroyed_keeping_the_newest_and_numbers_are_never_reused() {
    let (_dir, cloud) = open_temp();
    cloud
        .secrets
        .ensure_secret(&spec("rotated", "rot"))
        .await
        .expect("ensure");
    for i in 1..=5 {
        cloud
            .secrets
            .add_version(&P, "rotated", &payload(&format!("set-{i}")))
            .await
            .expect("add");
    }
    // Nothing is old enough yet: nothing goes.
    let long_ago = time::OffsetDateTime::now_utc() - std::time::Duration::from_secs(3600);
    let none = cloud
        .secrets
        .destroy_old_versions("rotated", 2, long_ago)
        .await
        .expect("destroy");
    assert_eq!(none, 0);
    // Everything is old enough: all but the newest two go.
    let soon = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(1);
    let destroyed = cloud
        .secrets
        .destroy_old_versions("rotated", 2, soon)
        .await
        .expect("destroy");
    assert_eq!(destroyed, 3);
    let (version, latest) = cloud
        .secrets
        .access_latest(&P, "rotated")
        .await
        .expect("latest");
    assert_eq!((version, latest.expose()), (5, b"set-5".as_slice()));
    // Again: nothing more to destroy; and a new version gets a new number.
    assert_eq!(
        cloud
            .secrets
            .destroy_old_versions("rotated", 2, soon)
            .await
            .expect("again"),
        0
    );
    let next = cloud
        .secrets
        .add_version(&P, "rotated", &payload("set-6"))
        .await
        .expect("add");
    assert_eq!(next, 6);
    assert!(matches!(
        cloud.secrets.destroy_old_versions("missing", 2, soon).await,
        Err(CloudError::NotFound { .. })
    ));
}
