# One cell: a project whose APIs are enabled and in which the control plane
# may create and remove tenants' resources, and no more. Registered with the
# control plane afterwards: `control-plane cells add <cell_id> --project
# <project> --region <region> --capacity <n>` (the output register_command).

data "google_project" "cell" {
  project_id = var.project_id
}

locals {
  labels = merge(var.labels, { "managed-by" = "ledgerlake", "cell" = var.cell_id })

  # What the reconciler's plan creates per tenant, by API.
  services = [
    "bigquery.googleapis.com",             # raw and transformed datasets, queries
    "cloudresourcemanager.googleapis.com", # the project's IAM policy (bigquery.jobUser)
    "iam.googleapis.com",                  # tenants' service accounts
    "iamcredentials.googleapis.com",       # impersonating them
    "run.googleapis.com",                  # tenants' ingest and transform jobs
    "secretmanager.googleapis.com",        # tenants' Xero token sets
    "storage.googleapis.com",              # tenants' buckets
  ]

  # The control service's roles in the cell, each for one part of the plan.
  control_roles = {
    # Create, label, grant on and delete tenants' buckets.
    "roles/storage.admin" = "tenant buckets"
    # Create datasets, set their access entries, delete them.
    "roles/bigquery.dataOwner" = "tenant datasets"
    # Create tenants' secrets, grant on them, destroy rotated versions.
    "roles/secretmanager.admin" = "tenant secrets"
    # Create, update, run (with overrides) and delete tenants' jobs.
    "roles/run.developer" = "tenant jobs"
  }
  # ... and over the tenants' accounts, which are all the cell's accounts.
  control_account_roles = {
    # Create and delete tenants' accounts and set who may impersonate them.
    "roles/iam.serviceAccountAdmin" = "tenant service accounts"
    # Run tenants' jobs as their accounts (actAs).
    "roles/iam.serviceAccountUser" = "jobs that run as tenant accounts"
  }
}

resource "google_project_service" "cell" {
  for_each = toset(local.services)
  project  = var.project_id
  service  = each.value
  # Turning an API off would break the tenants still in the cell.
  disable_on_destroy = false
}

resource "google_project_iam_member" "control" {
  for_each = local.control_roles
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${var.control_service_account_email}"

  depends_on = [google_project_service.cell]
}

resource "google_project_iam_member" "control_accounts" {
  # checkov:skip=CKV_GCP_41:The cell project holds tenants' accounts only, created by the control plane at run time: Terraform cannot name them to grant per account, and the control plane must run jobs as each (actAs).
  # checkov:skip=CKV_GCP_49:As CKV_GCP_41: managing the tenants' accounts (create, delete, who may impersonate them) is what the control plane does in a cell.
  for_each = local.control_account_roles
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${var.control_service_account_email}"

  depends_on = [google_project_service.cell]
}

# Tenants' data is read and written as the tenant: the services mint a token
# for the tenant's account (IAM Credentials' generateAccessToken) and call
# with it, so each tenant's own grants, not the services', decide what a call
# may touch. Both services impersonate: the control service for a tenant's
# token set and runs, the query service for every question.
resource "google_project_iam_member" "impersonate_tenants" {
  # checkov:skip=CKV_GCP_41:The tenants' accounts are created at run time by the control plane and cannot be named here; the cell project holds only tenants' accounts, and impersonating them is how the services act as each tenant.
  # checkov:skip=CKV_GCP_49:As CKV_GCP_41.
  for_each = {
    control = var.control_service_account_email
    query   = var.query_service_account_email
  }
  project = var.project_id
  role    = "roles/iam.serviceAccountTokenCreator"
  member  = "serviceAccount:${each.value}"

  depends_on = [google_project_service.cell]
}

# The plan binds bigquery.jobUser on the cell to each tenant's account. The
# control service may change the project's policy for that role only: the
# condition stops it from granting itself (or anyone) anything else.
resource "google_project_iam_member" "control_grants_job_user" {
  project = var.project_id
  role    = "roles/resourcemanager.projectIamAdmin"
  member  = "serviceAccount:${var.control_service_account_email}"

  condition {
    title       = "only-bigquery-job-user"
    description = "May grant and revoke roles/bigquery.jobUser only."
    expression  = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(['roles/bigquery.jobUser'])"
  }

  depends_on = [google_project_service.cell]
}

# Cloud Run pulls a job's image as the cell's Cloud Run service agent, not
# as the job's own account: that agent reads the platform's repository.
resource "google_artifact_registry_repository_iam_member" "run_agent_reads_images" {
  project    = var.artifact_registry.project
  location   = var.artifact_registry.location
  repository = var.artifact_registry.repository
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:service-${data.google_project.cell.number}@serverless-robot-prod.iam.gserviceaccount.com"

  depends_on = [google_project_service.cell]
}
