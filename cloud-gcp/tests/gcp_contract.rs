//! The gcp adapter against the contract servers for the APIs with no emulator
//! (IAM, IAM Credentials, Secret Manager, Cloud Run, Resource Manager): every
//! request is checked against Google's discovery documents, and each test
//! ends by asserting that none was off the contract.

mod support;

use std::time::Duration;

use cloud::error::CloudError;
use cloud::naming::{tenant_labels, TenantId};
use cloud::ports::{
    identity, roles, Credential, ExecutionOverrides, ExecutionState, JobSpec, ResourceRef,
    SecretPayload, SecretSpec, ServiceAccountSpec,
};
use support::{cell, ContractServer};

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).expect("tenant id")
}

fn sa_spec(id: &str) -> ServiceAccountSpec {
    ServiceAccountSpec {
        account_id: format!("client-{id}-sa"),
        display_name: format!("ledgerlake {id}"),
        labels: tenant_labels(&tenant(id)),
    }
}

#[tokio::test]
async fn contract_server_service_accounts_are_waited_for_until_visible_and_created_once() {
    let server = ContractServer::start(&["--sa-visibility-delay", "1.0"]);
    let cloud = server.gcp().await.cloud_for(&cell());
    let spec = sa_spec("acme");
    let sa = cloud
        .identity
        .ensure_service_account(&spec)
        .await
        .expect("create");
    assert_eq!(
        sa.email,
        "client-acme-sa@ledgerlake-cell-001.iam.gserviceaccount.com"
    );
    assert_eq!(sa.labels, spec.labels, "labels kept in the description");
    // Visible now: a grant naming it is accepted at once.
    let secret = SecretSpec {
        name: "xero_token_acme".into(),
        labels: spec.labels.clone(),
    };
    cloud.secrets.ensure_secret(&secret).await.expect("secret");
    let member = cloud::ports::member_for(&sa.email);
    let granted = identity::grant(
        cloud.identity.as_ref(),
        &ResourceRef::Secret(secret.name.clone()),
        roles::SECRET_ACCESSOR,
        &member,
    )
    .await
    .expect("grant right after creation");
    assert!(granted);
    // Again: nothing new.
    let again = cloud
        .identity
        .ensure_service_account(&spec)
        .await
        .expect("again");
    assert_eq!(again.unique_id, sa.unique_id);
    assert!(!identity::grant(
        cloud.identity.as_ref(),
        &ResourceRef::Secret(secret.name.clone()),
        roles::SECRET_ACCESSOR,
        &member
    )
    .await
    .expect("grant again"));
    let creates = server
        .requests("iam")
        .await
        .into_iter()
        .filter(|r| r["method"] == "iam.projects.serviceAccounts.create" && r["status"] == 200)
        .count();
    assert_eq!(creates, 1);
    // Another tenant's account of the same id is refused, not adopted.
    let foreign = ServiceAccountSpec {
        labels: tenant_labels(&tenant("other")),
        ..spec
    };
    let err = cloud
        .identity
        .ensure_service_account(&foreign)
        .await
        .expect_err("foreign");
    assert!(matches!(err, CloudError::AlreadyExists { .. }), "{err}");
    server.assert_on_contract().await;
}

#[tokio::test]
async fn contract_server_a_tenants_token_reads_its_own_secret_and_never_anothers() {
    let server = ContractServer::start(&[]);
    let cloud = server.gcp().await.cloud_for(&cell());
    let mut creds = Vec::new();
    for id in ["acme", "globex"] {
        let sa = cloud
            .identity
            .ensure_service_account(&sa_spec(id))
            .await
            .expect("sa");
        let secret = format!("xero_token_{id}");
        cloud
            .secrets
            .ensure_secret(&SecretSpec {
                name: secret.clone(),
                labels: tenant_labels(&tenant(id)),
            })
            .await
            .expect("secret");
        let member = cloud::ports::member_for(&sa.email);
        for role in [roles::SECRET_ACCESSOR, roles::SECRET_VERSION_ADDER] {
            identity::grant(
                cloud.identity.as_ref(),
                &ResourceRef::Secret(secret.clone()),
                role,
                &member,
            )
            .await
            .expect("grant");
        }
        creds.push(
            cloud
                .identity
                .credential_for(&sa.email)
                .await
                .expect("credential"),
        );
    }
    let (acme, globex) = (&creds[0], &creds[1]);
    let v1 = cloud
        .secrets
        .add_version(
            acme,
            "xero_token_acme",
            &SecretPayload::new(b"refresh-1".to_vec()),
        )
        .await
        .expect("acme writes its own");
    let v2 = cloud
        .secrets
        .add_version(
            acme,
            "xero_token_acme",
            &SecretPayload::new(b"refresh-2".to_vec()),
        )
        .await
        .expect("rotation");
    assert!(v2 > v1);
    let (version, payload) = cloud
        .secrets
        .access_latest(acme, "xero_token_acme")
        .await
        .expect("acme reads");
    assert_eq!((version, payload.expose()), (v2, &b"refresh-2"[..]));
    // globex's impersonated token is refused by the secret's own policy.
    let err = cloud
        .secrets
        .access_latest(globex, "xero_token_acme")
        .await
        .expect_err("cross-tenant read");
    assert!(matches!(err, CloudError::PermissionDenied { .. }), "{err}");
    let err = cloud
        .secrets
        .add_version(
            globex,
            "xero_token_acme",
            &SecretPayload::new(b"forged".to_vec()),
        )
        .await
        .expect_err("cross-tenant write");
    assert!(matches!(err, CloudError::PermissionDenied { .. }), "{err}");
    assert!(!format!("{err}").contains("forged"));
    // The secret reads the same after the refused write.
    let (_, still) = cloud
        .secrets
        .access_latest(acme, "xero_token_acme")
        .await
        .expect("acme reads");
    assert_eq!(still.expose(), b"refresh-2");
    // The calls ran as the tenants, with tokens minted for them.
    let principals: Vec<String> = server
        .requests("secretmanager")
        .await
        .into_iter()
        .filter(|r| r["method"] == "secretmanager.projects.secrets.versions.access")
        .filter_map(|r| r["principal"].as_str().map(str::to_owned))
        .collect();
    assert!(
        principals.iter().any(|p| p.contains("client-globex-sa")),
        "{principals:?}"
    );
    assert!(
        principals
            .iter()
            .all(|p| p.starts_with("serviceAccount:client-")),
        "{principals:?}"
    );
    server.assert_on_contract().await;
}

#[tokio::test]
async fn contract_server_old_secret_versions_are_disabled_then_destroyed() {
    let server = ContractServer::start(&[]);
    let cloud = server.gcp().await.cloud_for(&cell());
    let labels = tenant_labels(&tenant("acme"));
    cloud
        .secrets
        .ensure_secret(&SecretSpec {
            name: "xero_token_acme".into(),
            labels,
        })
        .await
        .expect("secret");
    for i in 0..4 {
        cloud
            .secrets
            .add_version(
                &Credential::Platform,
                "xero_token_acme",
                &SecretPayload::new(format!("t{i}").into_bytes()),
            )
            .await
            .expect("version");
    }
    // Within retention: superseded versions are disabled, none destroyed.
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    assert_eq!(
        cloud
            .secrets
            .destroy_old_versions("xero_token_acme", 1, long_ago)
            .await
            .expect("disable"),
        0
    );
    let (latest, payload) = cloud
        .secrets
        .access_latest(&Credential::Platform, "xero_token_acme")
        .await
        .expect("latest");
    assert_eq!((latest, payload.expose()), (4, &b"t3"[..]));
    // Past retention: destroyed.
    let future = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    assert_eq!(
        cloud
            .secrets
            .destroy_old_versions("xero_token_acme", 1, future)
            .await
            .expect("destroy"),
        3
    );
    let info = cloud
        .secrets
        .get_secret("xero_token_acme")
        .await
        .expect("get");
    assert_eq!(info.latest_version, Some(4));
    server.assert_on_contract().await;
}

#[tokio::test]
async fn contract_server_concurrent_grants_on_the_cell_project_all_land_through_etag_conflicts() {
    let server = ContractServer::start(&[]);
    let gcp = server.gcp().await;
    let cloud = gcp.cloud_for(&cell());
    let mut members = Vec::new();
    for i in 0..6 {
        let sa = cloud
            .identity
            .ensure_service_account(&sa_spec(&format!("t{i}abc")))
            .await
            .expect("sa");
        members.push(cloud::ports::member_for(&sa.email));
    }
    let grants = members.iter().map(|m| {
        let cloud = cloud.clone();
        let m = m.clone();
        async move {
            cloud::retry::retry(&cloud::retry::RetryPolicy::default(), || {
                identity::grant(
                    cloud.identity.as_ref(),
                    &ResourceRef::Project,
                    roles::BIGQUERY_JOB_USER,
                    &m,
                )
            })
            .await
        }
    });
    for r in futures::future::join_all(grants).await {
        r.expect("grant lands");
    }
    let policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Project)
        .await
        .expect("policy");
    for m in &members {
        assert!(policy.has(roles::BIGQUERY_JOB_USER, m), "{m} missing");
    }
    assert_eq!(
        policy.roles_of(&members[0]).collect::<Vec<_>>(),
        [roles::BIGQUERY_JOB_USER],
        "jobUser only"
    );
    let writes = server
        .requests("cloudresourcemanager")
        .await
        .into_iter()
        .filter(|r| r["method"] == "cloudresourcemanager.projects.setIamPolicy")
        .collect::<Vec<_>>();
    assert!(writes.len() >= members.len());
    server.assert_on_contract().await;
}

#[tokio::test]
async fn contract_server_a_429_is_waited_out_after_its_retry_after() {
    let server = ContractServer::start(&[]);
    let cloud = server.gcp().await.cloud_for(&cell());
    server
        .fault(
            "secretmanager",
            "secretmanager.projects.secrets.create",
            429,
            2,
            1,
        )
        .await;
    let started = std::time::Instant::now();
    cloud
        .secrets
        .ensure_secret(&SecretSpec {
            name: "xero_token_acme".into(),
            labels: tenant_labels(&tenant("acme")),
        })
        .await
        .expect("created after two 429s");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    let tries = server
        .requests("secretmanager")
        .await
        .into_iter()
        .filter(|r| r["method"] == "secretmanager.projects.secrets.create")
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect::<Vec<_>>();
    assert_eq!(tries, [429, 429, 200]);
    // A 500 is the caller's to retry (the reconciler's policy): reported as transient.
    server
        .fault(
            "secretmanager",
            "secretmanager.projects.secrets.get",
            500,
            1,
            0,
        )
        .await;
    let err = cloud
        .secrets
        .get_secret("xero_token_acme")
        .await
        .expect_err("500");
    assert!(err.is_retryable(), "{err}");
    server.assert_on_contract().await;
}

fn job(name: &str, sa: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        labels: tenant_labels(&tenant("acme")),
        image: "europe-west1-docker.pkg.dev/ledgerlake-platform/ledgerlake/tenant-job:test".into(),
        args: vec!["ingest".into(), "--tenant".into(), "acme".into()],
        env: [("LEDGERLAKE_TENANT".to_owned(), "acme".to_owned())].into(),
        service_account: sa.into(),
        timeout_seconds: 3600,
        secret_env: Default::default(),
    }
}

#[tokio::test]
async fn contract_server_jobs_are_created_once_updated_on_change_and_run_with_overrides() {
    let server = ContractServer::start(&["--lro-delay", "0.2"]);
    let cloud = server.gcp().await.cloud_for(&cell());
    let sa = cloud
        .identity
        .ensure_service_account(&sa_spec("acme"))
        .await
        .expect("sa");
    let spec = job("ingest-acme", &sa.email);
    let created = cloud
        .jobs
        .ensure_job(&spec)
        .await
        .expect("create (a long-running operation)");
    assert_eq!(created.spec, spec);
    assert_eq!(
        cloud.jobs.ensure_job(&spec).await.expect("again").spec,
        spec
    );
    // A changed definition, now with a secret reference (in the job's own
    // project, read back as it was given).
    let changed = JobSpec {
        args: vec!["transform".into()],
        secret_env: [(
            "LEDGERLAKE_XERO_CLIENT_SECRET".to_owned(),
            "xero-app-client-secret".to_owned(),
        )]
        .into(),
        ..spec.clone()
    };
    assert_eq!(
        cloud.jobs.ensure_job(&changed).await.expect("update").spec,
        changed
    );
    let definitions = server.state("run").await;
    let reference = definitions["run"]["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|job| job["template"]["template"]["containers"][0]["env"].as_array())
        .flatten()
        .find(|var| var["name"] == "LEDGERLAKE_XERO_CLIENT_SECRET")
        .cloned();
    assert_eq!(
        reference
            .as_ref()
            .map(|v| &v["valueSource"]["secretKeyRef"]),
        Some(&serde_json::json!({
            "secret": format!("projects/{}/secrets/xero-app-client-secret", cell().project),
            "version": "latest",
        })),
        "{definitions}"
    );
    let listed = cloud
        .jobs
        .list_jobs(&tenant_labels(&tenant("acme")))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    let execution = cloud
        .jobs
        .run_job(
            "ingest-acme",
            &ExecutionOverrides {
                args: Some(vec!["sync".into()]),
                env: [("LEDGERLAKE_RUN_ID".to_owned(), "r1".to_owned())].into(),
            },
        )
        .await
        .expect("run");
    assert_eq!(execution.state, ExecutionState::Running);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let finished = loop {
        let e = cloud
            .jobs
            .get_execution("ingest-acme", &execution.id)
            .await
            .expect("execution");
        if e.state != ExecutionState::Running {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "execution never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished.state, ExecutionState::Succeeded);
    assert!(finished.finished_at.is_some());
    cloud.jobs.delete_job("ingest-acme").await.expect("delete");
    assert!(matches!(
        cloud.jobs.get_job("ingest-acme").await,
        Err(CloudError::NotFound { .. })
    ));
    server.assert_on_contract().await;
}

#[tokio::test]
async fn contract_server_an_operation_that_never_finishes_is_given_up_with_a_transient_error() {
    // An hour before any operation is done: for the test, never.
    let server = ContractServer::start(&["--lro-delay", "3600"]);
    let mut config = server.config();
    config.lro_time_limit = Duration::from_secs(2);
    let gcp = cloud_gcp::Gcp::connect(config).await.expect("connect");
    let cloud = gcp.cloud_for(&cell());
    let sa = cloud
        .identity
        .ensure_service_account(&sa_spec("acme"))
        .await
        .expect("sa");
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        cloud.jobs.ensure_job(&job("ingest-acme", &sa.email)),
    )
    .await
    .expect("the wait is bounded by the polling time limit")
    .expect_err("the operation never finishes");
    assert!(
        matches!(&err, CloudError::Transient { resource, message, .. }
            if resource == "job ingest-acme" && message.contains("long-running operation")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(started.elapsed() >= Duration::from_secs(2), "{err}");
    server.assert_on_contract().await;
}
