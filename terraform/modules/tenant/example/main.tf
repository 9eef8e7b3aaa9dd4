# An example root: templates/terraform/tenant.tf.tera rendered for a sample
# tenant "acme" in cell project acme-ledgerlake-cell-001 (module_source "../").
# CI parses it (checkov, terraform/tests/structure.py), so the template's
# output is known to be HCL the checks accept; `control-plane tenants
# export-terraform` writes the same for a real tenant.

# Tenant "acme" as the control plane's reconciler made it
# (control-plane tenants export-terraform). After `terraform plan` shows only
# imports, apply: Terraform then manages these resources, and the reconciler
# keeps finding them as its own (same names, labels and grants). Data is
# never Terraform's: objects, tables and token versions stay out of its state.

module "tenant_acme" {
  source = "../"

  project  = "acme-ledgerlake-cell-001"
  region   = "europe-west1"
  location = "EU"
  labels   = {"managed-by":"ledgerlake","tenant":"acme"}

  service_account_id      = "client-acme-sa"
  bucket_name             = "client-acme-bucket"
  raw_dataset_id          = "raw_acme"
  transformed_dataset_id  = "transformed_acme"
  token_secret_id         = "xero_token_acme"
  secret_replica_location = null
  platform_member         = "serviceAccount:ledgerlake-control@acme-ledgerlake-prod.iam.gserviceaccount.com"

  grants = [
    {
      key      = "bucket/client-acme-bucket roles/storage.objectAdmin"
      kind     = "bucket"
      resource = "client-acme-bucket"
      role     = "roles/storage.objectAdmin"
    },
    {
      key      = "dataset/raw_acme roles/bigquery.dataEditor"
      kind     = "dataset"
      resource = "raw_acme"
      role     = "roles/bigquery.dataEditor"
    },
    {
      key      = "dataset/transformed_acme roles/bigquery.dataEditor"
      kind     = "dataset"
      resource = "transformed_acme"
      role     = "roles/bigquery.dataEditor"
    },
    {
      key      = "secret/xero_token_acme roles/secretmanager.secretAccessor"
      kind     = "secret"
      resource = "xero_token_acme"
      role     = "roles/secretmanager.secretAccessor"
    },
    {
      key      = "secret/xero_token_acme roles/secretmanager.secretVersionAdder"
      kind     = "secret"
      resource = "xero_token_acme"
      role     = "roles/secretmanager.secretVersionAdder"
    },
    {
      key      = "project roles/bigquery.jobUser"
      kind     = "project"
      resource = ""
      role     = "roles/bigquery.jobUser"
    },
    {
      key      = "secret/xero-app-client-secret roles/secretmanager.secretAccessor"
      kind     = "secret"
      resource = "xero-app-client-secret"
      role     = "roles/secretmanager.secretAccessor"
    },
  ]

  jobs = {
    "ingest-acme" = {
      image           = "europe-west1-docker.pkg.dev/acme-ledgerlake-prod/ledgerlake/tenant-job:0123456789abcdef0123456789abcdef01234567"
      args            = ["ingest","--tenant","acme"]
      env             = {"LEDGERLAKE_CLOUD":"gcp","LEDGERLAKE_GCP_CELL_PROJECT":"acme-ledgerlake-cell-001","LEDGERLAKE_GCP_LOCATION":"EU","LEDGERLAKE_GCP_PLATFORM_PROJECT":"acme-ledgerlake-prod","LEDGERLAKE_GCP_REGION":"europe-west1","LEDGERLAKE_GCP_SERVICE_ACCOUNT":"client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com","LEDGERLAKE_GCP_TENANT_JOB_IMAGE":"europe-west1-docker.pkg.dev/acme-ledgerlake-prod/ledgerlake/tenant-job:0123456789abcdef0123456789abcdef01234567","LEDGERLAKE_TENANT":"acme","LEDGERLAKE_XERO_CLIENT_ID":"ABCDEF0123456789ABCDEF0123456789"}
      secret_env      = {"LEDGERLAKE_XERO_CLIENT_SECRET":"xero-app-client-secret"}
      timeout_seconds = 3600
    }
    "transform-acme" = {
      image           = "europe-west1-docker.pkg.dev/acme-ledgerlake-prod/ledgerlake/tenant-job:0123456789abcdef0123456789abcdef01234567"
      args            = ["transform","--tenant","acme"]
      env             = {"LEDGERLAKE_CLOUD":"gcp","LEDGERLAKE_GCP_CELL_PROJECT":"acme-ledgerlake-cell-001","LEDGERLAKE_GCP_LOCATION":"EU","LEDGERLAKE_GCP_PLATFORM_PROJECT":"acme-ledgerlake-prod","LEDGERLAKE_GCP_REGION":"europe-west1","LEDGERLAKE_GCP_SERVICE_ACCOUNT":"client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com","LEDGERLAKE_GCP_TENANT_JOB_IMAGE":"europe-west1-docker.pkg.dev/acme-ledgerlake-prod/ledgerlake/tenant-job:0123456789abcdef0123456789abcdef01234567","LEDGERLAKE_TENANT":"acme","LEDGERLAKE_XERO_CLIENT_ID":"ABCDEF0123456789ABCDEF0123456789"}
      secret_env      = {"LEDGERLAKE_XERO_CLIENT_SECRET":"xero-app-client-secret"}
      timeout_seconds = 3600
    }
  }
}

# ----- adopting what the reconciler made ---------------------------------------

import {
  to = module.tenant_acme.google_service_account.tenant
  id = "projects/acme-ledgerlake-cell-001/serviceAccounts/client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_storage_bucket.tenant
  id = "acme-ledgerlake-cell-001/client-acme-bucket"
}

import {
  to = module.tenant_acme.google_bigquery_dataset.raw
  id = "projects/acme-ledgerlake-cell-001/datasets/raw_acme"
}

import {
  to = module.tenant_acme.google_bigquery_dataset.transformed
  id = "projects/acme-ledgerlake-cell-001/datasets/transformed_acme"
}

import {
  to = module.tenant_acme.google_bigquery_dataset_iam_member.platform_owner["raw"]
  id = "projects/acme-ledgerlake-cell-001/datasets/raw_acme roles/bigquery.dataOwner serviceAccount:ledgerlake-control@acme-ledgerlake-prod.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_bigquery_dataset_iam_member.platform_owner["transformed"]
  id = "projects/acme-ledgerlake-cell-001/datasets/transformed_acme roles/bigquery.dataOwner serviceAccount:ledgerlake-control@acme-ledgerlake-prod.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_secret_manager_secret.token
  id = "projects/acme-ledgerlake-cell-001/secrets/xero_token_acme"
}

import {
  to = module.tenant_acme.google_storage_bucket_iam_member.grant["bucket/client-acme-bucket roles/storage.objectAdmin"]
  id = "b/client-acme-bucket roles/storage.objectAdmin serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_bigquery_dataset_iam_member.grant["dataset/raw_acme roles/bigquery.dataEditor"]
  id = "projects/acme-ledgerlake-cell-001/datasets/raw_acme roles/bigquery.dataEditor serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_bigquery_dataset_iam_member.grant["dataset/transformed_acme roles/bigquery.dataEditor"]
  id = "projects/acme-ledgerlake-cell-001/datasets/transformed_acme roles/bigquery.dataEditor serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_secret_manager_secret_iam_member.grant["secret/xero_token_acme roles/secretmanager.secretAccessor"]
  id = "projects/acme-ledgerlake-cell-001/secrets/xero_token_acme roles/secretmanager.secretAccessor serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_secret_manager_secret_iam_member.grant["secret/xero_token_acme roles/secretmanager.secretVersionAdder"]
  id = "projects/acme-ledgerlake-cell-001/secrets/xero_token_acme roles/secretmanager.secretVersionAdder serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_project_iam_member.grant["project roles/bigquery.jobUser"]
  id = "acme-ledgerlake-cell-001 roles/bigquery.jobUser serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_secret_manager_secret_iam_member.grant["secret/xero-app-client-secret roles/secretmanager.secretAccessor"]
  id = "projects/acme-ledgerlake-cell-001/secrets/xero-app-client-secret roles/secretmanager.secretAccessor serviceAccount:client-acme-sa@acme-ledgerlake-cell-001.iam.gserviceaccount.com"
}

import {
  to = module.tenant_acme.google_cloud_run_v2_job.job["ingest-acme"]
  id = "projects/acme-ledgerlake-cell-001/locations/europe-west1/jobs/ingest-acme"
}

import {
  to = module.tenant_acme.google_cloud_run_v2_job.job["transform-acme"]
  id = "projects/acme-ledgerlake-cell-001/locations/europe-west1/jobs/transform-acme"
}
