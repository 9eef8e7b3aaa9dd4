//! Rotating the local cloud's master key: every secret version re-encrypted
//! under the new key, readable with it and no longer with the old; a key in
//! the environment needs its successor given; a rotation cut short is
//! refused at opening and finished by running it again, losing nothing; and
//! none starts while an execution holding the old key may still write.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cloud::ports::{
    Credential, ExecutionOverrides, JobRunner, JobSpec, SecretPayload, SecretSpec, SecretStore,
};
use cloud_local::{rotate_master_key, LocalAdapters, LocalConfig};
use common::labels;

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

fn config(dir: &Path, key: Option<&str>) -> LocalConfig {
    LocalConfig {
        master_key: key.map(str::to_owned),
        ..LocalConfig::new(dir)
    }
}

/// Secrets `name` → versions written in order.
async fn write(adapters: &LocalAdapters, secrets: &[(&str, &[&str])]) {
    for (name, versions) in secrets {
        adapters
            .secrets
            .ensure_secret(&SecretSpec {
                name: (*name).to_owned(),
                labels: labels("aaa"),
            })
            .await
            .expect("secret");
        for v in *versions {
            adapters
                .secrets
                .add_version(
                    &Credential::Platform,
                    name,
                    &SecretPayload::new(v.as_bytes().to_vec()),
                )
                .await
                .expect("version");
        }
    }
}

async fn latest(adapters: &LocalAdapters, name: &str) -> (u64, String) {
    let (v, payload) = adapters
        .secrets
        .access_latest(&Credential::Platform, name)
        .await
        .expect("access");
    (
        v,
        String::from_utf8(payload.expose().to_vec()).expect("utf-8"),
    )
}

fn refused_with(dir: &Path, key: Option<&str>, words: &str) {
    match LocalAdapters::open(&config(dir, key)) {
        Ok(_) => panic!("opened with the wrong key"),
        Err(e) => assert!(e.to_string().contains(words), "{e}"),
    }
}

fn leftovers(dir: &Path) -> bool {
    dir.join("master.key.next").exists() || dir.join("secrets/.keycheck.next").exists()
}

#[tokio::test]
async fn the_key_files_key_is_replaced_and_every_version_reads_under_the_new_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let adapters = LocalAdapters::open(&config(dir.path(), None)).expect("open");
    write(
        &adapters,
        &[("alpha", &["a1", "a2"]), ("beta", &["b1", "b2"])],
    )
    .await;
    drop(adapters);
    let old_key = std::fs::read_to_string(dir.path().join("master.key")).expect("key file");

    let rotation = rotate_master_key(&config(dir.path(), None), None).expect("rotate");
    assert_eq!((rotation.reencrypted, rotation.already_new), (4, 0));
    let key_file = dir.path().join("master.key");
    assert_eq!(
        rotation.key_file.as_deref(),
        Some(std::fs::canonicalize(&key_file).expect("path").as_path())
    );
    let new_key = std::fs::read_to_string(&key_file).expect("key file");
    assert_ne!(new_key, old_key);
    assert_eq!(
        std::fs::metadata(&key_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!leftovers(dir.path()));

    let adapters = LocalAdapters::open(&config(dir.path(), None)).expect("reopen");
    assert_eq!(latest(&adapters, "alpha").await, (2, "a2".into()));
    assert_eq!(latest(&adapters, "beta").await, (2, "b2".into()));
    drop(adapters);
    refused_with(dir.path(), Some(old_key.trim()), "does not match");
}

#[tokio::test]
async fn a_key_from_the_environment_needs_its_successor_given() {
    let dir = tempfile::tempdir().expect("tmp");
    let adapters = LocalAdapters::open(&config(dir.path(), Some(KEY_A))).expect("open");
    write(&adapters, &[("token", &["t1"])]).await;
    drop(adapters);
    let with_a = config(dir.path(), Some(KEY_A));
    for (new, words) in [
        (None, "LEDGERLAKE_NEW_MASTER_KEY"),
        (Some(KEY_A), "the current one"),
        (Some("too-short"), "LEDGERLAKE_NEW_MASTER_KEY"),
    ] {
        let err = rotate_master_key(&with_a, new).expect_err("refused");
        assert!(err.to_string().contains(words), "{err}");
        assert!(
            !err.to_string().contains(KEY_A),
            "a key never shows in an error"
        );
        assert!(!leftovers(dir.path()), "nothing was changed");
    }
    // The wrong current key changes nothing either.
    const KEY_C: &str = "2020202020202020202020202020202020202020202020202020202020202020";
    let err = rotate_master_key(&config(dir.path(), Some(KEY_B)), Some(KEY_C)).expect_err("wrong");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!leftovers(dir.path()));

    let rotation = rotate_master_key(&with_a, Some(KEY_B)).expect("rotate");
    assert_eq!((rotation.reencrypted, rotation.key_file), (1, None));
    let adapters = LocalAdapters::open(&config(dir.path(), Some(KEY_B))).expect("new key");
    assert_eq!(latest(&adapters, "token").await, (1, "t1".into()));
    drop(adapters);
    refused_with(dir.path(), Some(KEY_A), "does not match");
    // Run again with the old setting: it is done already, and says so.
    let again = rotate_master_key(&with_a, Some(KEY_B)).expect("again");
    assert_eq!((again.reencrypted, again.already_new), (0, 1));
}

#[tokio::test]
async fn a_rotation_cut_short_is_refused_at_opening_and_finished_by_running_it_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let adapters = LocalAdapters::open(&config(dir.path(), None)).expect("open");
    write(
        &adapters,
        &[
            ("a-first", &["a1"]),
            ("b-second", &["b1", "b2"]),
            ("c-third", &["c1"]),
        ],
    )
    .await;
    drop(adapters);
    // A version that opens with no key stops the rotation half-way: the
    // first secret is under the new key by then, the rest under the old.
    let broken = dir.path().join("secrets/b-second/versions/1.enc");
    let original = std::fs::read(&broken).expect("version");
    std::fs::write(&broken, b"LLS1 not a sealed version").expect("corrupt");
    let err = rotate_master_key(&config(dir.path(), None), None).expect_err("stopped");
    assert!(err.to_string().contains("opens with neither"), "{err}");
    assert!(leftovers(dir.path()));
    refused_with(dir.path(), None, "interrupted");

    // Put the version back (still under the old key) and run it again.
    std::fs::write(&broken, &original).expect("restore");
    let rotation = rotate_master_key(&config(dir.path(), None), None).expect("finish");
    assert_eq!((rotation.reencrypted, rotation.already_new), (3, 1));
    assert!(!leftovers(dir.path()));
    let adapters = LocalAdapters::open(&config(dir.path(), None)).expect("reopen");
    assert_eq!(latest(&adapters, "a-first").await, (1, "a1".into()));
    assert_eq!(latest(&adapters, "b-second").await, (2, "b2".into()));
    assert_eq!(latest(&adapters, "c-third").await, (1, "c1".into()));
}

#[tokio::test]
async fn no_rotation_while_an_execution_holding_the_old_key_may_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let adapters = LocalAdapters::open(&config(dir.path(), None)).expect("open");
    write(&adapters, &[("token", &["t1"])]).await;
    let spec = JobSpec {
        name: "ingest-aaa".into(),
        labels: labels("aaa"),
        image: "/bin/sleep".into(),
        args: vec!["30".into()],
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        service_account: "client-aaa-sa@local.iam.local".into(),
        timeout_seconds: 60,
    };
    adapters.jobs.ensure_job(&spec).await.expect("job");
    let run = adapters
        .jobs
        .run_job("ingest-aaa", &ExecutionOverrides::default())
        .await
        .expect("run");
    let err = rotate_master_key(&config(dir.path(), None), None).expect_err("refused");
    assert!(
        err.to_string().contains(&format!("ingest-aaa/{}", run.id)),
        "{err}"
    );
    assert!(!leftovers(dir.path()), "nothing was changed");
    adapters
        .jobs
        .cancel_execution("ingest-aaa", &run.id)
        .await
        .expect("cancel");
}
