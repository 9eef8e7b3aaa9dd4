# Every name is an input: the control plane's plan computes them
# (cloud::naming, job_contract::plan), and `control-plane tenants
# export-terraform` renders this module's call from that plan
# (templates/terraform/tenant.tf.tera), so HCL never derives a name itself.

variable "project" {
  description = "The cell's project id: every resource of the tenant lives in it."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project: a Google Cloud project id (6-30 of a-z, 0-9 and -)."
  }
}

variable "region" {
  description = "The cell's Cloud Run region: where the tenant's jobs are defined (e.g. europe-west1)."
  type        = string
}

variable "location" {
  description = "The location of the tenant's bucket and datasets (e.g. EU), the cell's LEDGERLAKE_GCP_LOCATION."
  type        = string
}

variable "labels" {
  description = "The tenant's labels, on every resource that takes labels and in the service account's description: { managed-by = ledgerlake, tenant = <id> }."
  type        = map(string)

  validation {
    condition     = lookup(var.labels, "managed-by", "") == "ledgerlake" && can(regex("^[a-z][a-z0-9-]{2,19}$", lookup(var.labels, "tenant", "")))
    error_message = "labels: must hold managed-by = \"ledgerlake\" and tenant = the tenant's id (the reconciler adopts only what carries both)."
  }
}

variable "service_account_id" {
  description = "The tenant's service account id, the part of its email before @ (client-<id>-sa)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "service_account_id: 6-30 of a-z, 0-9 and -, starting with a letter."
  }
}

variable "bucket_name" {
  description = "The tenant's bucket (client-<id>-bucket, or <prefix>-client-<id>-bucket)."
  type        = string
}

variable "raw_dataset_id" {
  description = "The dataset ingest loads Xero's pages into (raw_<id>)."
  type        = string
}

variable "transformed_dataset_id" {
  description = "The dataset transform builds the tenant's models in (transformed_<id>)."
  type        = string
}

variable "token_secret_id" {
  description = "The Secret Manager secret holding the tenant's Xero token set (xero_token_<id>); its versions are written by the control plane and the ingest job, never by Terraform."
  type        = string
}

variable "secret_replica_location" {
  description = "Where the token secret is replicated: null for automatic replication (what the reconciler creates), else user-managed replication in this one location."
  type        = string
  default     = null

  validation {
    condition     = var.secret_replica_location == null || try(length(var.secret_replica_location) > 0, false)
    error_message = "secret_replica_location: null (automatic) or a location such as europe-west1."
  }
}

variable "platform_member" {
  description = "The control plane's IAM member (serviceAccount:<control service account>), given OWNER (roles/bigquery.dataOwner) on both datasets as the reconciler, their creator, is."
  type        = string

  validation {
    condition     = can(regex("^(serviceAccount|user|group):.+@.+$", var.platform_member))
    error_message = "platform_member: an IAM member such as serviceAccount:ledgerlake-control@PROJECT.iam.gserviceaccount.com."
  }
}

variable "grants" {
  description = "The tenant account's grants (job_contract::grants): kind is bucket, dataset, secret or project; resource is the bucket name, dataset id or secret id (which may be the cell's shared xero-app-client-secret, not created here), \"\" for project; key is the plan's name of the grant and the for_each key, e.g. \"dataset/raw_acme roles/bigquery.dataEditor\"."
  type = list(object({
    key      = string
    kind     = string
    resource = string
    role     = string
  }))

  validation {
    condition     = alltrue([for g in var.grants : contains(["bucket", "dataset", "secret", "project"], g.kind)])
    error_message = "grants: kind is one of bucket, dataset, secret, project."
  }

  validation {
    condition     = alltrue([for g in var.grants : (g.kind == "project") == (g.resource == "")])
    error_message = "grants: resource is \"\" for a project grant and names the resource for every other kind."
  }

  validation {
    condition     = length(distinct([for g in var.grants : g.key])) == length(var.grants)
    error_message = "grants: every key is distinct (it is the for_each key)."
  }

  validation {
    condition     = alltrue([for g in var.grants : can(regex("^roles/", g.role))])
    error_message = "grants: role is a predefined role, roles/...."
  }
}

variable "jobs" {
  description = "The tenant's Cloud Run jobs by name (ingest-<id>, transform-<id>): image, args, plain env (the whole definition's, the adapter's LEDGERLAKE_CLOUD and LEDGERLAKE_GCP_* included), secret_env (variable => secret id in the project, read at version latest) and the task timeout."
  type = map(object({
    image           = string
    args            = list(string)
    env             = map(string)
    secret_env      = map(string)
    timeout_seconds = number
  }))

  validation {
    condition     = alltrue([for j in values(var.jobs) : j.timeout_seconds >= 1 && j.timeout_seconds <= 604800 && floor(j.timeout_seconds) == j.timeout_seconds])
    error_message = "jobs: timeout_seconds is a whole number of seconds, 1 to 604800 (Cloud Run's limit for a task: 7 days)."
  }
}
