# One tenant: exactly what the control plane's reconciler ensures for it in
# its cell (job_contract::plan::TenantPlan, created by cloud-gcp), with the
# same names, labels, settings and grants, so that a team may keep a tenant
# in Terraform or `import` one the reconciler made (templates/terraform/
# tenant.tf.tera renders the call and the import blocks; README.md).
#
# Names are inputs, computed by the control plane: nothing here derives one.
# Tenants' data (objects, tables, token versions) is never Terraform's: the
# bucket, datasets and secret refuse to be destroyed with data in them.

locals {
  # What the reconciler writes into the account's description, service
  # accounts taking no labels (cloud-gcp/src/iam.rs, labels_to_description):
  # "ledgerlake labels: " then k=v pairs by key, joined by commas. It reads
  # them back from there to recognise its own account, so the format must
  # match to the character. (A for over a map goes by key, as Rust's BTreeMap.)
  sa_description = "ledgerlake labels: ${join(",", [for k, v in var.labels : "${k}=${v}"])}"
  tenant         = var.labels["tenant"]

  grants_by_kind = {
    for kind in ["bucket", "dataset", "secret", "project"] :
    kind => { for g in var.grants : g.key => g if g.kind == kind }
  }

  datasets = {
    raw         = var.raw_dataset_id
    transformed = var.transformed_dataset_id
  }
}

# ----- the tenant's identity ---------------------------------------------------------

resource "google_service_account" "tenant" {
  project      = var.project
  account_id   = var.service_account_id
  display_name = "ledgerlake ${local.tenant}"
  description  = local.sa_description
}

# ----- its data: a bucket, two datasets, the Xero token set's secret ---------------------

resource "google_storage_bucket" "tenant" {
  # checkov:skip=CKV_GCP_62:The bucket holds one tenant's raw pages and run summaries, read and written by that tenant's jobs only; Cloud Audit Logs (data access) are the record of access, not a second logging bucket per tenant.
  # checkov:skip=CKV_GCP_78:Versioning is off, as the reconciler creates the bucket: ingest rewrites its cursors, summaries and token lease in place and keeps each run's raw pages under the run, so noncurrent versions would only pile up.
  project                     = var.project
  name                        = var.bucket_name
  location                    = var.location
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # A tenant's data is removed by the control plane's teardown, never by a
  # terraform destroy that would empty the bucket first.
  force_destroy = false

  versioning {
    enabled = false
  }
}

# No `access` blocks: the datasets' members are google_bigquery_dataset_iam_member
# (below, and the grants), which would fight an authoritative access list.
# No default table expiration: the tables are the tenant's data.
resource "google_bigquery_dataset" "raw" {
  # checkov:skip=CKV_GCP_81:Google-managed encryption, as the reconciler creates every tenant's datasets; a customer-managed key per tenant or cell would be a KMS key ring to run for no requirement of ledgerlake's.
  project                    = var.project
  dataset_id                 = var.raw_dataset_id
  location                   = var.location
  labels                     = var.labels
  delete_contents_on_destroy = false
}

resource "google_bigquery_dataset" "transformed" {
  # checkov:skip=CKV_GCP_81:As the raw dataset: Google-managed encryption, as the reconciler creates it.
  project                    = var.project
  dataset_id                 = var.transformed_dataset_id
  location                   = var.location
  labels                     = var.labels
  delete_contents_on_destroy = false
}

# The control plane owns both datasets: the reconciler creates them, and
# BigQuery lists a dataset's creator as OWNER in its access.
resource "google_bigquery_dataset_iam_member" "platform_owner" {
  for_each   = local.datasets
  project    = var.project
  dataset_id = each.value
  role       = "roles/bigquery.dataOwner"
  member     = var.platform_member

  depends_on = [google_bigquery_dataset.raw, google_bigquery_dataset.transformed]
}

# The token set's versions are written by the control plane (consent) and by
# ingest (each refresh), never by Terraform.
resource "google_secret_manager_secret" "token" {
  project   = var.project
  secret_id = var.token_secret_id
  labels    = var.labels

  replication {
    # Automatic, as the reconciler creates it, unless one location is asked for.
    dynamic "auto" {
      for_each = var.secret_replica_location == null ? [1] : []
      content {}
    }

    dynamic "user_managed" {
      for_each = var.secret_replica_location == null ? [] : [var.secret_replica_location]
      content {
        replicas {
          location = user_managed.value
        }
      }
    }
  }
}

# ----- the tenant account's grants (job_contract::grants), by kind --------------------------

resource "google_storage_bucket_iam_member" "grant" {
  for_each = local.grants_by_kind["bucket"]
  bucket   = each.value.resource
  role     = each.value.role
  member   = google_service_account.tenant.member

  lifecycle {
    precondition {
      condition     = each.value.resource == var.bucket_name
      error_message = "A tenant's bucket grants are on its own bucket only."
    }
  }

  depends_on = [google_storage_bucket.tenant]
}

resource "google_bigquery_dataset_iam_member" "grant" {
  for_each   = local.grants_by_kind["dataset"]
  project    = var.project
  dataset_id = each.value.resource
  role       = each.value.role
  member     = google_service_account.tenant.member

  lifecycle {
    precondition {
      condition     = contains(values(local.datasets), each.value.resource)
      error_message = "A tenant's dataset grants are on its own raw and transformed datasets only."
    }
  }

  depends_on = [google_bigquery_dataset.raw, google_bigquery_dataset.transformed]
}

# The token secret, and (when jobs read the Xero app's client secret by
# reference) the cell's shared secret, which this module does not create.
resource "google_secret_manager_secret_iam_member" "grant" {
  for_each  = local.grants_by_kind["secret"]
  project   = var.project
  secret_id = each.value.resource
  role      = each.value.role
  member    = google_service_account.tenant.member

  depends_on = [google_secret_manager_secret.token]
}

# BigQuery grants running jobs on the project alone (roles/bigquery.jobUser).
resource "google_project_iam_member" "grant" {
  for_each = local.grants_by_kind["project"]
  project  = var.project
  role     = each.value.role
  member   = google_service_account.tenant.member
}

# ----- the jobs its runs execute ------------------------------------------------------------

resource "google_cloud_run_v2_job" "job" {
  for_each            = var.jobs
  project             = var.project
  location            = var.region
  name                = each.key
  labels              = var.labels
  deletion_protection = false

  template {
    task_count = 1

    template {
      service_account = google_service_account.tenant.email
      timeout         = "${each.value.timeout_seconds}s"
      # A failed run is retried by the control plane, which knows why it
      # failed; Cloud Run retrying too would double runs.
      max_retries = 0

      containers {
        # The container's name in every definition cloud-gcp writes.
        name  = "tenant-job"
        image = each.value.image
        args  = each.value.args

        # Plain values first, then the secret references, each by name: the
        # order cloud-gcp writes them in.
        dynamic "env" {
          for_each = { for k, v in each.value.env : k => v if !contains(keys(each.value.secret_env), k) }
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = each.value.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = "projects/${var.project}/secrets/${env.value}"
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  # A run reads the token set, the bucket and the datasets as the tenant's
  # account: the job comes after its grants, as in the reconciler's plan.
  depends_on = [
    google_storage_bucket_iam_member.grant,
    google_bigquery_dataset_iam_member.grant,
    google_secret_manager_secret_iam_member.grant,
    google_project_iam_member.grant,
  ]
}
