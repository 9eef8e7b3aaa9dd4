//! A tenant's whole life on the gcp adapter, on one machine: the Cloud
//! Storage and BigQuery emulators, a contract server for IAM, IAM
//! Credentials, Secret Manager, Cloud Run and Resource Manager (checking every
//! request against Google's discovery documents), and the real `tenant-job`
//! binary, which the contract server runs for each Cloud Run execution with
//! a token minted for the job's service account, as Cloud Run's metadata
//! server would hand it over. Provisioning in a cell, the consent's token set
//! written into the tenant's secret in that cell, a sync whose job reads the
//! secret and writes the bucket as the tenant and builds the tables on
//! BigQuery, a question as the tenant, and a teardown that leaves nothing
//! labelled with the tenant. Skipped, saying so, without the emulators.

#[path = "../control-plane/tests/support/mod.rs"]
mod support;

#[path = "../cloud-gcp/tests/support.rs"]
mod gcp;

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloud::naming::{self, tenant_labels, TenantId};
use cloud::ports::{Credential, QueryRequest};
use cloud::Clouds;
use control_plane::reconciler::{Reconciler, Settings};
use control_plane::runs::{RunSettings, Runs};
use control_plane::service::cells::AppSecretChange;
use control_plane::store::{NewCell, RunStatus, RunTrigger, WithoutCells};
use control_plane::tokens::write_token_set;
use job_contract::plan::XERO_APP_SECRET;
use job_contract::RunCommand;
use xero::secret::SecretString;
use xero_sandbox::{Sandbox, SandboxConfig, SandboxLimits};

const CLIENT_ID: &str = "gcp-client";
const CLIENT_SECRET: &str = "gcp-client-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_emulators_and_contract_server_a_tenant_from_provisioning_through_a_sync_and_a_question_to_teardown(
) {
    if !gcp::emulators() {
        return;
    }
    let sandbox = Sandbox::start(
        SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)
            .invoices(40)
            .seed(11)
            .auto_approve(true)
            .limits(SandboxLimits {
                per_minute: 100_000,
                ..SandboxLimits::default()
            }),
    )
    .await
    .expect("sandbox");
    let jobs = common::job_template(&sandbox);
    // Cloud Run's stand-in runs the tenant-job binary for each execution.
    let server = gcp::ContractServer::start(&[
        "--sa-visibility-delay",
        "0.3",
        "--lro-delay",
        "0.1",
        "--executor",
        &jobs.image,
    ]);
    let gcp_adapter = cloud_gcp::Gcp::connect(server.config())
        .await
        .expect("connect");
    let image = gcp_adapter.config().tenant_job_image.clone();
    let clouds = Clouds::PerCell(Arc::new(gcp_adapter.clone()));
    let cloud = gcp_adapter.cloud_for(&gcp::cell());

    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let store = platform.store.clone();
    // Registering the cell writes the Xero app's client secret into it,
    // where its tenants' jobs read it by reference: it never travels with a
    // run, and one copy per cell keeps each policy within Google's 1,500
    // principals.
    let added = control_plane::service::cells::add(
        &store,
        &clouds,
        NewCell {
            id: "cell-001".into(),
            project: gcp::CELL_PROJECT.into(),
            region: "europe-west1".into(),
            capacity: 100,
        },
        Some(&SecretString::new(CLIENT_SECRET)),
        "test",
    )
    .await
    .expect("cell");
    assert_eq!(added.app_secret, Some(AppSecretChange::Created));
    let reconciler = Reconciler::new(
        clouds.clone(),
        store.clone(),
        Settings {
            without_cells: WithoutCells::Refuse,
            jobs: control_plane::reconciler::JobTemplate {
                image,
                app_secret: Some(XERO_APP_SECRET.into()),
                ..jobs
            },
            ..support::fast_settings()
        },
    );
    let id = TenantId::parse(&format!(
        "l{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .expect("id");

    let report = reconciler.provision(&id, "test").await.expect("provision");
    assert!(report.is_success(), "{}", report.failure_summary());
    // Its account may read the cell's copy, and only read it.
    let app_secret = cloud::ports::ResourceRef::Secret(XERO_APP_SECRET.into());
    let member =
        cloud::ports::member_for(&cloud.identity.email_for(&naming::service_account_id(&id)));
    let policy = cloud
        .identity
        .get_iam_policy(&app_secret)
        .await
        .expect("policy");
    assert!(
        policy.has(cloud::ports::roles::SECRET_ACCESSOR, &member),
        "{policy:?}"
    );
    let tenant = store.get_tenant(&id).await.expect("read").expect("tenant");
    assert_eq!(tenant.cell.as_deref(), Some("cell-001"));

    // Consent's part: the token set into the tenant's secret, in its cell.
    let tokens = sandbox.issue_tokens(None);
    write_token_set(&cloud, &Credential::Platform, &id, &tokens)
        .await
        .expect("tokens");
    let orgs: Vec<(String, Option<String>)> = tokens
        .tenant_ids
        .iter()
        .map(|t| (t.clone(), None))
        .collect();
    store
        .record_connections(&id, &orgs)
        .await
        .expect("connections");

    let runs = Runs::new(
        clouds.clone(),
        store.clone(),
        None,
        RunSettings {
            xero_client_id: Some(CLIENT_ID.to_owned()),
            xero_client_secret: Some(SecretString::new(CLIENT_SECRET)),
        },
    );
    let run = runs
        .start(&id, RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("start");
    let run = runs
        .wait(&run.id, Duration::from_secs(300))
        .await
        .expect("wait");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    // The execution Cloud Run's stand-in ran (its definition with the run's
    // overrides merged in) names the client secret by reference only.
    let run_state = server.state("run").await;
    let executions = run_state["run"]["executions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!executions.is_empty(), "{run_state}");
    for execution in &executions {
        for container in execution["template"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for var in container["env"].as_array().into_iter().flatten() {
                assert_ne!(
                    var["value"], CLIENT_SECRET,
                    "a secret's value in an execution: {var}"
                );
                if var["name"] == "LEDGERLAKE_XERO_CLIENT_SECRET" {
                    assert!(
                        var["valueSource"]["secretKeyRef"]["secret"].as_str()
                            == Some(
                                format!("projects/{}/secrets/{XERO_APP_SECRET}", gcp::CELL_PROJECT)
                                    .as_str()
                            ),
                        "{var}"
                    );
                }
            }
        }
    }

    // The job ran as the tenant: its secret read and its writes were the
    // tenant account's, by the token minted for it.
    let sa = member.clone();
    let accesses: Vec<String> = server
        .requests("secretmanager")
        .await
        .into_iter()
        .filter(|r| r["method"] == "secretmanager.projects.secrets.versions.access")
        .filter_map(|r| r["principal"].as_str().map(str::to_owned))
        .collect();
    assert!(accesses.contains(&sa), "{accesses:?}");
    let bucket = naming::bucket_name(None, &id);
    let raw = cloud
        .objects
        .list_objects(&Credential::Platform, &bucket, "")
        .await
        .expect("objects");
    assert!(
        raw.iter().any(|o| o.key.contains("invoices")),
        "{:?}",
        raw.iter().map(|o| &o.key).collect::<Vec<_>>()
    );

    // A question as the tenant, on its transformed dataset in its cell.
    let tenant_cred = cloud
        .identity
        .credential_for(&cloud.identity.email_for(&naming::service_account_id(&id)))
        .await
        .expect("cred");
    let books = sandbox.books(None, false).expect("books");
    for (table, key) in [
        ("fct_invoices", "Invoices"),
        ("fct_payments", "Payments"),
        ("dim_contacts", "Contacts"),
        ("fct_journal_lines", "JournalLines"),
    ] {
        let answer = cloud
            .warehouse
            .query(
                &tenant_cred,
                &QueryRequest {
                    dataset: naming::transformed_dataset(&id),
                    sql: format!("SELECT COUNT(*) AS n FROM {table}"),
                    max_rows: 10,
                    timeout: Duration::from_secs(30),
                    max_bytes: Some(1_000_000_000),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(
            answer.rows[0][0].as_i64(),
            books["counts"][key].as_i64(),
            "{table} against the books"
        );
    }

    // A second sync after edits, voids, archived and erased contacts, an
    // account deleted and every item deleted merges into the raw tables on
    // BigQuery (upgraded in place, removals marked: the items by an empty
    // complete listing, a manifest with no pages) and compacts the
    // manifests it superseded (unpaged resources are listed in full every
    // run); loading what is left from scratch gives the same raw tables.
    sandbox
        .apply_changes(&xero_sandbox::ChangeRequest {
            create: 3,
            edit: 3,
            void: 2,
            pay: 2,
            contacts: 5,
            gdpr_contacts: 1,
            delete_accounts: 1,
            delete_items: 1_000,
            ..Default::default()
        })
        .await
        .expect("changes");
    let second = runs
        .start(&id, RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("start");
    let second = runs
        .wait(&second.id, Duration::from_secs(300))
        .await
        .expect("wait");
    assert_eq!(second.status, RunStatus::Succeeded, "{second:#?}");
    let summary: serde_json::Value = serde_json::from_slice(
        &cloud
            .objects
            .get_object(
                &Credential::Platform,
                &bucket,
                &job_contract::raw::run_summary_key(&second.id),
            )
            .await
            .expect("summary"),
    )
    .expect("summary JSON");
    let compaction = &summary["transform"]["compaction"];
    assert!(compaction["error"].is_null(), "{compaction}");
    assert!(compaction["manifests"].as_u64() > Some(0), "{compaction}");
    let raw_rows = |table: &'static str| {
        let (cloud, cred, dataset) = (cloud.clone(), tenant_cred.clone(), naming::raw_dataset(&id));
        async move {
            cloud
                .warehouse
                .query(
                    &cred,
                    &QueryRequest {
                        dataset,
                        sql: format!(
                            "SELECT id, record, run_id, CAST(fetched_at AS STRING), xero_status, \
                             CAST(removed_at AS STRING), removed_run_id FROM {table} ORDER BY id"
                        ),
                        max_rows: 1_000_000,
                        timeout: Duration::from_secs(60),
                        max_bytes: None,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"))
                .rows
        }
    };
    let voided = cloud
        .warehouse
        .query(
            &tenant_cred,
            &QueryRequest {
                dataset: naming::raw_dataset(&id),
                sql: "SELECT COUNT(*) FROM invoices WHERE xero_status = 'VOIDED' \
                      AND removed_at = updated_at AND removed_run_id = run_id"
                    .into(),
                max_rows: 10,
                timeout: Duration::from_secs(30),
                max_bytes: None,
            },
        )
        .await
        .expect("voided");
    assert!(voided.rows[0][0].as_i64() > Some(0), "{voided:?}");
    let count = |sql: &'static str| {
        let (cloud, cred, dataset) = (cloud.clone(), tenant_cred.clone(), naming::raw_dataset(&id));
        async move {
            cloud
                .warehouse
                .query(
                    &cred,
                    &QueryRequest {
                        dataset,
                        sql: sql.into(),
                        max_rows: 10,
                        timeout: Duration::from_secs(30),
                        max_bytes: None,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .rows[0][0]
                .as_i64()
        }
    };
    let items_run = raw_rows("items").await;
    assert!(!items_run.is_empty());
    assert_eq!(
        count("SELECT COUNT(*) FROM items WHERE removed_at IS NULL OR removed_run_id IS NULL")
            .await,
        Some(0),
        "every item is marked removed by the empty listing"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM accounts WHERE removed_at IS NOT NULL AND removed_run_id <> run_id").await,
        Some(1),
        "the deleted account"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM contacts WHERE xero_status = 'GDPRREQUEST' AND removed_at = updated_at AND removed_run_id = run_id").await,
        Some(1),
        "the erased contact"
    );
    // A manifest mostly superseded is rewritten on Cloud Storage: a run
    // (written here as ingest writes one) with newer versions of all but five
    // of the invoices the first sync's manifest still has kept, then a
    // transform as the tenant. The rebuild below checks that nothing was lost.
    let invoices = xero::resources::Resource::Invoices;
    let first_key = job_contract::raw::manifest_key(invoices, &run.id);
    let manifest_of = |key: String| {
        let (cloud, cred, bucket) = (cloud.clone(), tenant_cred.clone(), bucket.clone());
        async move {
            let bytes = cloud
                .objects
                .get_object(&cred, &bucket, &key)
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            serde_json::from_slice::<job_contract::raw::Manifest>(&bytes).expect("manifest")
        }
    };
    let first_records = manifest_of(first_key.clone()).await.records;
    let kept_first: Vec<String> = raw_rows("invoices")
        .await
        .into_iter()
        .filter(|r| r[2].as_str() == Some(run.id.as_str()))
        .map(|r| r[1].as_str().expect("record").to_owned())
        .collect();
    assert!(kept_first.len() > 10, "{} kept", kept_first.len());
    let mut body = Vec::new();
    for record in &kept_first[5..] {
        let mut v: serde_json::Value = serde_json::from_str(record).expect("record");
        let stamp =
            xero::dates::parse(v["UpdatedDateUTC"].as_str().expect("stamp")).expect("stamp");
        v["UpdatedDateUTC"] = xero::dates::to_ms_date(stamp + time::Duration::days(1)).into();
        v["Reference"] = "edited".into();
        body.extend_from_slice(v.to_string().as_bytes());
        body.push(b'\n');
    }
    let page = job_contract::raw::page_key(invoices, "edit-gcp", 1);
    let edit = job_contract::raw::Manifest {
        resource: invoices.name().to_owned(),
        run_id: "edit-gcp".to_owned(),
        pages: vec![job_contract::raw::PageEntry {
            key: page.clone(),
            records: (kept_first.len() - 5) as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)),
        }],
        records: (kept_first.len() - 5) as u64,
        modified_since: None,
        completed_at: time::OffsetDateTime::now_utc(),
    };
    for (key, bytes) in [
        (page, body),
        (
            job_contract::raw::manifest_key(invoices, "edit-gcp"),
            serde_json::to_vec(&edit).expect("manifest"),
        ),
    ] {
        cloud
            .objects
            .put_object(&tenant_cred, &bucket, &key, bytes)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    // The tenant's transform on BigQuery, as its job runs it.
    let on_bigquery = |run_id: &str| tenant_job::transform::TransformContext {
        cloud: cloud.clone(),
        cred: tenant_cred.clone(),
        bucket: bucket.clone(),
        raw_dataset: naming::raw_dataset(&id),
        transformed_dataset: naming::transformed_dataset(&id),
        run_id: run_id.into(),
        dialect: tenant_job::transform::Dialect::BigQuery,
    };
    let report = tenant_job::transform::run(&on_bigquery("edit-gcp"))
        .await
        .expect("a transform on BigQuery");
    assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
    assert_eq!(report.compaction.rewritten, 1, "{:?}", report.compaction);
    let rewritten = manifest_of(first_key).await;
    assert_eq!(rewritten.records, 5, "of {first_records}");
    let kept_prefix = format!("{}kept-", job_contract::raw::run_prefix(invoices, &run.id));
    assert!(
        rewritten
            .pages
            .iter()
            .all(|p| p.key.starts_with(&kept_prefix)),
        "{:?}",
        rewritten.pages
    );

    let tables = [
        "invoices",
        "contacts",
        "currencies",
        "organisation",
        "taxrates",
        "items",
        "accounts",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(raw_rows(table).await);
    }
    tenant_job::transform::rebuild(&on_bigquery("rebuild"))
        .await
        .expect("rebuild on BigQuery");
    for (table, rows) in tables.into_iter().zip(before) {
        assert_eq!(raw_rows(table).await, rows, "{table} after the rebuild");
    }

    // And in plain language, through the query service: planned offline,
    // compiled for BigQuery, guarded, dry-run, then run as the tenant.
    let service = control_plane::service::questions::QueryService::new(
        clouds.clone(),
        store.clone(),
        Arc::new(query::semantic::SemanticModel::builtin().expect("model")),
        &control_plane::service::questions::QuerySettings::default(),
    );
    let answer = service
        .ask(
            &id,
            &control_plane::service::questions::Asker {
                actor: "test".into(),
                token_id: None,
            },
            &control_plane::service::questions::Question {
                text: "how many invoices do we have".into(),
                as_of: None,
                generator: query::engine::GeneratorChoice::Offline,
                conversation: None,
            },
        )
        .await
        .expect("answered");
    assert!(answer.answer.answered, "{:?}", answer.answer.explanation);
    assert!(!answer.answer.rows.is_empty(), "{:?}", answer.answer);

    let report = reconciler
        .teardown(&id, false, "test")
        .await
        .expect("teardown");
    assert!(report.is_success(), "{}", report.failure_summary());
    let labels = tenant_labels(&id);
    assert_eq!(
        gcp::labelled(&cloud, &labels).await,
        [0; 5],
        "nothing labelled with the tenant is left"
    );
    // Its grant on the cell's copy of the app's secret went with it; the
    // copy stays for the cell's other tenants.
    let policy = cloud
        .identity
        .get_iam_policy(&app_secret)
        .await
        .expect("policy");
    assert!(
        !policy.has(cloud::ports::roles::SECRET_ACCESSOR, &member),
        "{policy:?}"
    );
    assert!(cloud.secrets.get_secret(XERO_APP_SECRET).await.is_ok());
    server.assert_on_contract().await;
}
