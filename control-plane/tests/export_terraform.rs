//! `tenants export-terraform` against `terraform/modules/tenant`: the
//! rendered call and import blocks, read back with an HCL parser, name
//! exactly what the reconciler's plan for the tenant names (resources, labels,
//! grants, job definitions as the gcp adapter writes them), and the module
//! builds its resources from those inputs, so the two can never drift apart.
//! The gcp adapter is only asked for names and definitions here: no Google
//! API (nor a stand-in) is called.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use cloud::naming::{self, tenant_labels, DeploymentPrefix, TenantId};
use cloud::ports::ResourceRef;
use cloud::{CellLocation, Clouds};
use control_plane::reconciler::plan::Planned;
use control_plane::reconciler::{JobTemplate, Reconciler, Settings};
use control_plane::service::terraform::{export_tenant, ExportOptions, DEFAULT_MODULE_SOURCE};
use control_plane::service::ServiceError;
use control_plane::store::{NewCell, WithoutCells};
use job_contract::plan::XERO_APP_SECRET;
use serde_json::{json, Value};

const CELL_PROJECT: &str = "ledgerlake-cell-007";
const REGION: &str = "europe-west4";
const PLATFORM_MEMBER: &str =
    "serviceAccount:ledgerlake-control@ledgerlake-prod.iam.gserviceaccount.com";
/// A setting with HCL's template sequences in it: written as text, never
/// read as an interpolation.
const HOSTILE_ENDPOINT: &str = "http://127.0.0.1:9/${oops}%{if x}";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn hcl_file(relative: &str) -> Value {
    let path = repo().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    hcl::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

struct World {
    reconciler: Reconciler,
    cloud: cloud::Cloud,
    _platform: control_plane::platform::Platform,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let settings: BTreeMap<&str, &str> = BTreeMap::from([
        ("LEDGERLAKE_GCP_PLATFORM_PROJECT", "ledgerlake-prod"),
        (
            "LEDGERLAKE_GCP_TENANT_JOB_IMAGE",
            "europe-west4-docker.pkg.dev/ledgerlake-prod/ledgerlake/tenant-job:abc123",
        ),
        // Never used: nothing is called.
        ("LEDGERLAKE_GCP_ACCESS_TOKEN", "unused"),
    ]);
    let config =
        cloud_gcp::GcpConfig::from_lookup(|name| settings.get(name).map(|v| (*v).to_owned()))
            .expect("config");
    let image = config.tenant_job_image.clone();
    let gcp = cloud_gcp::Gcp::connect(config).await.expect("connect");
    let cloud = gcp.cloud_for(&CellLocation {
        project: CELL_PROJECT.into(),
        region: REGION.into(),
    });
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let store = platform.store.clone();
    store
        .add_cell(&NewCell {
            id: "cell-007".into(),
            project: CELL_PROJECT.into(),
            region: REGION.into(),
            capacity: 100,
        })
        .await
        .expect("cell");
    let reconciler = Reconciler::new(
        Clouds::PerCell(Arc::new(gcp)),
        store,
        Settings {
            prefix: Some(DeploymentPrefix::parse("prod").expect("prefix")),
            without_cells: WithoutCells::Refuse,
            jobs: JobTemplate {
                image,
                app_secret: Some(XERO_APP_SECRET.into()),
                xero_endpoint: Some(HOSTILE_ENDPOINT.into()),
                ..JobTemplate::beside_current_exe()
            },
            ..support::fast_settings()
        },
    );
    World {
        reconciler,
        cloud,
        _platform: platform,
        _dir: dir,
    }
}

fn options() -> ExportOptions {
    ExportOptions {
        module_source: DEFAULT_MODULE_SOURCE.into(),
        location: "EU".into(),
        platform_member: PLATFORM_MEMBER.into(),
    }
}

/// A resource address as the parser shows an `import`'s `to`.
fn address(module: &str, resource: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("${{module.{module}.{resource}[{}]}}", json!(k)),
        None => format!("${{module.{module}.{resource}}}"),
    }
}

#[tokio::test]
async fn the_exported_module_call_and_imports_are_the_reconcilers_plan_for_the_tenant() {
    let w = world().await;
    let id = TenantId::parse("acme-ltd").expect("id");
    let store = w.reconciler.store();
    store
        .want_tenant_placed(&id, WithoutCells::Refuse)
        .await
        .expect("placed");
    let rendered = export_tenant(&w.reconciler, &id, &options())
        .await
        .expect("export");
    let parsed: Value = hcl::from_str(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    let module_name = "tenant_acme_ltd";
    let call = &parsed["module"][module_name];
    assert!(call.is_object(), "{rendered}");

    let plan = w.reconciler.plan(&w.cloud, &id);
    let planned = |kind: &str| -> Vec<&Planned> {
        plan.resources()
            .filter(|p| p.kind().as_str() == kind)
            .collect()
    };
    let name_of = |p: &Planned| p.name();
    let sa = planned("service_account");
    assert_eq!(sa.len(), 1);
    let Planned::ServiceAccount { account_id, email } = sa[0] else {
        unreachable!()
    };

    // The inputs, each the plan's.
    assert_eq!(call["source"], DEFAULT_MODULE_SOURCE);
    assert_eq!(call["project"], CELL_PROJECT);
    assert_eq!(call["region"], REGION);
    assert_eq!(call["location"], "EU");
    assert_eq!(call["labels"], json!(tenant_labels(&id)));
    assert_eq!(call["service_account_id"], account_id.as_str());
    assert_eq!(
        json!([call["bucket_name"].clone()]),
        json!(planned("bucket")
            .into_iter()
            .map(name_of)
            .collect::<Vec<_>>())
    );
    assert_eq!(
        json!([
            call["raw_dataset_id"].clone(),
            call["transformed_dataset_id"].clone()
        ]),
        json!(planned("dataset")
            .into_iter()
            .map(name_of)
            .collect::<Vec<_>>())
    );
    assert_eq!(
        json!([call["token_secret_id"].clone()]),
        json!(planned("secret")
            .into_iter()
            .map(name_of)
            .collect::<Vec<_>>())
    );
    assert_eq!(call["secret_replica_location"], Value::Null);
    assert_eq!(call["platform_member"], PLATFORM_MEMBER);
    let member = cloud::ports::member_for(email);
    let grants: Vec<Value> = plan
        .resources()
        .filter_map(|p| match p {
            Planned::Binding {
                resource,
                role,
                member: m,
            } => {
                assert_eq!(*m, member);
                let (kind, name) = match resource {
                    ResourceRef::Bucket(n) => ("bucket", n.as_str()),
                    ResourceRef::Dataset(n) => ("dataset", n.as_str()),
                    ResourceRef::Secret(n) => ("secret", n.as_str()),
                    ResourceRef::Project => ("project", ""),
                };
                Some(json!({"key": p.name(), "kind": kind, "resource": name, "role": role}))
            }
            _ => None,
        })
        .collect();
    assert_eq!(grants.len(), 7, "six of its own and the cell's app secret");
    assert_eq!(call["grants"], json!(grants));
    let jobs: serde_json::Map<String, Value> = plan
        .resources()
        .filter_map(|p| match p {
            Planned::Job { spec } => Some((
                spec.name.clone(),
                json!({
                    "image": spec.image,
                    "args": spec.args,
                    "env": w.cloud.jobs.definition_env(spec),
                    "secret_env": spec.secret_env,
                    "timeout_seconds": spec.timeout_seconds,
                }),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 2);
    assert_eq!(call["jobs"], Value::Object(jobs));
    // The environment is the whole definition's: where the job finds its
    // cell, as the gcp adapter writes it; the app's secret by reference only.
    for job in call["jobs"]
        .as_object()
        .into_iter()
        .flat_map(|j| j.values())
    {
        assert_eq!(job["env"]["LEDGERLAKE_CLOUD"], "gcp");
        assert_eq!(job["env"]["LEDGERLAKE_GCP_CELL_PROJECT"], CELL_PROJECT);
        assert_eq!(job["env"]["LEDGERLAKE_GCP_SERVICE_ACCOUNT"], email.as_str());
        assert!(job["env"].get("LEDGERLAKE_XERO_CLIENT_SECRET").is_none());
        assert_eq!(
            job["secret_env"]["LEDGERLAKE_XERO_CLIENT_SECRET"],
            XERO_APP_SECRET
        );
    }
    // A value with HCL's template sequences is written escaped, as text.
    assert!(rendered.contains("/$${oops}%%{if x}"), "{rendered}");
    assert!(!rendered.contains("/${oops}"), "{rendered}");

    // The call passes exactly the module's variables (every required one).
    let variables = hcl_file("terraform/modules/tenant/variables.tf");
    let declared: BTreeSet<&String> = variables["variable"]
        .as_object()
        .expect("variables")
        .keys()
        .collect();
    let passed: BTreeSet<&String> = call
        .as_object()
        .expect("call")
        .keys()
        .filter(|k| *k != "source")
        .collect();
    assert_eq!(passed, declared);

    // The module builds each resource from those inputs, under the
    // addresses the imports name.
    let module = hcl_file("terraform/modules/tenant/main.tf");
    let resources = &module["resource"];
    let expect = |resource: &str, attribute: &str, expression: &str| {
        let (kind, name) = resource.split_once('.').expect("type.name");
        assert_eq!(
            resources[kind][name][attribute], expression,
            "{resource}.{attribute}"
        );
    };
    expect(
        "google_service_account.tenant",
        "account_id",
        "${var.service_account_id}",
    );
    expect("google_storage_bucket.tenant", "name", "${var.bucket_name}");
    expect(
        "google_bigquery_dataset.raw",
        "dataset_id",
        "${var.raw_dataset_id}",
    );
    expect(
        "google_bigquery_dataset.transformed",
        "dataset_id",
        "${var.transformed_dataset_id}",
    );
    expect(
        "google_secret_manager_secret.token",
        "secret_id",
        "${var.token_secret_id}",
    );
    expect("google_cloud_run_v2_job.job", "for_each", "${var.jobs}");
    expect("google_cloud_run_v2_job.job", "name", "${each.key}");
    for labelled in [
        "google_storage_bucket.tenant",
        "google_bigquery_dataset.raw",
        "google_bigquery_dataset.transformed",
        "google_secret_manager_secret.token",
        "google_cloud_run_v2_job.job",
    ] {
        expect(labelled, "labels", "${var.labels}");
    }
    let by_kind = [
        ("bucket", "google_storage_bucket_iam_member.grant"),
        ("dataset", "google_bigquery_dataset_iam_member.grant"),
        ("secret", "google_secret_manager_secret_iam_member.grant"),
        ("project", "google_project_iam_member.grant"),
    ];
    for (kind, resource) in by_kind {
        expect(
            resource,
            "for_each",
            &format!("${{local.grants_by_kind[\"{kind}\"]}}"),
        );
        expect(resource, "role", "${each.value.role}");
        expect(
            resource,
            "member",
            "${google_service_account.tenant.member}",
        );
    }

    // One import for every resource of the plan (and the platform's two
    // dataset grants), each on a resource the module declares.
    let mut wanted: BTreeSet<String> = [
        address(module_name, "google_service_account.tenant", None),
        address(module_name, "google_storage_bucket.tenant", None),
        address(module_name, "google_bigquery_dataset.raw", None),
        address(module_name, "google_bigquery_dataset.transformed", None),
        address(module_name, "google_secret_manager_secret.token", None),
        address(
            module_name,
            "google_bigquery_dataset_iam_member.platform_owner",
            Some("raw"),
        ),
        address(
            module_name,
            "google_bigquery_dataset_iam_member.platform_owner",
            Some("transformed"),
        ),
    ]
    .into();
    for g in &grants {
        let kind = g["kind"].as_str().expect("kind");
        let resource = by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| *r)
            .expect("kind");
        wanted.insert(address(module_name, resource, g["key"].as_str()));
    }
    for job in planned("job") {
        wanted.insert(address(
            module_name,
            "google_cloud_run_v2_job.job",
            Some(&job.name()),
        ));
    }
    let imports = parsed["import"].as_array().expect("imports");
    let imported: BTreeSet<String> = imports
        .iter()
        .map(|i| i["to"].as_str().expect("to").to_owned())
        .collect();
    assert_eq!(imports.len(), imported.len(), "no resource imported twice");
    assert_eq!(imported, wanted);
    for to in &imported {
        let inner = to
            .strip_prefix(&format!("${{module.{module_name}."))
            .expect("in the module");
        let (kind, rest) = inner.split_once('.').expect("type.name");
        let name = rest.split(['[', '}']).next().expect("name");
        assert!(
            resources[kind][name].is_object(),
            "{to}: modules/tenant declares no {kind}.{name}"
        );
    }
    let id_of = |to: String| -> String {
        imports
            .iter()
            .find(|i| i["to"] == to.as_str())
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .unwrap_or_else(|| panic!("no import of {to}"))
    };
    assert_eq!(
        id_of(address(
            module_name,
            "google_cloud_run_v2_job.job",
            Some("ingest-acme-ltd")
        )),
        format!("projects/{CELL_PROJECT}/locations/{REGION}/jobs/ingest-acme-ltd")
    );
    assert_eq!(
        id_of(address(module_name, "google_storage_bucket.tenant", None)),
        format!(
            "{CELL_PROJECT}/{}",
            naming::bucket_name(w.reconciler.prefix(), &id)
        )
    );
    assert_eq!(
        id_of(address(
            module_name,
            "google_project_iam_member.grant",
            Some("project roles/bigquery.jobUser")
        )),
        format!("{CELL_PROJECT} roles/bigquery.jobUser {member}")
    );
}

#[tokio::test]
async fn an_unknown_tenant_one_without_a_cell_and_bad_options_are_refused() {
    let w = world().await;
    let unknown = TenantId::parse("nobody").expect("id");
    assert!(matches!(
        export_tenant(&w.reconciler, &unknown, &options()).await,
        Err(ServiceError::NotFound { .. })
    ));
    let unplaced = TenantId::parse("unplaced").expect("id");
    w.reconciler
        .store()
        .want_tenant_placed(&unplaced, WithoutCells::Unplaced)
        .await
        .expect("want");
    // The store has a cell, so placement put it there; a tenant recorded
    // before any cell has none.
    let dir = tempfile::tempdir().expect("tmp");
    let bare = support::platform(dir.path()).await;
    bare.store
        .want_tenant_placed(&unplaced, WithoutCells::Unplaced)
        .await
        .expect("want");
    let without_cell = Reconciler::new(
        w.reconciler.clouds().clone(),
        bare.store.clone(),
        support::fast_settings(),
    );
    assert!(matches!(
        export_tenant(&without_cell, &unplaced, &options()).await,
        Err(ServiceError::Conflict { .. })
    ));
    let bad = ExportOptions {
        platform_member: "not-a-member".into(),
        ..options()
    };
    assert!(matches!(
        export_tenant(&w.reconciler, &unplaced, &bad).await,
        Err(ServiceError::Invalid { .. })
    ));
}
