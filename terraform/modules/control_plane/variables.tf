variable "project_id" {
  description = "The platform project: the control plane's services, database and secrets live here."
  type        = string
}

variable "region" {
  description = "The region of the Cloud Run services, the database and the subnet (e.g. europe-west1)."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource's name (services, accounts, secrets, database)."
  type        = string
  default     = "ledgerlake"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 3-20 of a-z, 0-9 and -, starting with a letter (service account ids are at most 30 characters)."
  }
}

variable "image" {
  description = "The control-plane image, by commit tag or digest: REGION-docker.pkg.dev/PROJECT/REPO/control-plane:SHA (never :latest)."
  type        = string

  validation {
    condition     = !endswith(var.image, ":latest") && length(regexall(":[^/]+$|@sha256:[0-9a-f]{64}$", var.image)) > 0
    error_message = "image: name an exact tag (the commit SHA) or a digest, not :latest or no tag."
  }
}

variable "public_url" {
  description = "The URL browsers, Xero and Cloud Scheduler reach the control service at (a custom domain). Empty: the service's own run.app URL."
  type        = string
  default     = ""

  validation {
    condition     = var.public_url == "" || can(regex("^https://[^/]+$", var.public_url))
    error_message = "public_url: https://host, without a path or a trailing slash."
  }
}

variable "bucket_prefix" {
  description = "Prefix of every tenant bucket's name (bucket names are global); LEDGERLAKE_BUCKET_PREFIX."
  type        = string
  default     = ""
}

variable "scheduler_service_account_email" {
  description = "The service account Cloud Scheduler calls the tick as: the control service accepts its ID tokens."
  type        = string
}

variable "xero_client_id" {
  description = "The Xero app's client id (not a secret). Empty: no Xero app; /connect/xero answers 503."
  type        = string
  default     = ""
}

variable "xero_secrets_ready" {
  description = "Whether the Xero client secret and webhook key secrets have a version (added by an operator, see infra/RUNBOOK.md); only then does the control service read them."
  type        = bool
  default     = false
}

variable "control_max_instances" {
  description = "Most instances of the control service (one is always running: it hosts the reconciler's workers)."
  type        = number
  default     = 3

  validation {
    condition     = var.control_max_instances >= 1 && var.control_max_instances <= 100
    error_message = "control_max_instances: 1 to 100."
  }
}

variable "query_min_instances" {
  description = "Fewest instances of the query service (0 scales it to zero when nobody asks)."
  type        = number
  default     = 0

  validation {
    condition     = var.query_min_instances >= 0
    error_message = "query_min_instances: 0 or more."
  }
}

variable "query_max_instances" {
  description = "Most instances of the query service."
  type        = number
  default     = 10

  validation {
    condition     = var.query_max_instances >= 1 && var.query_max_instances <= 1000
    error_message = "query_max_instances: 1 to 1000."
  }
}

variable "subnet_cidr" {
  description = "The range of the subnet the services' Direct VPC egress uses to reach the database's private IP."
  type        = string
  default     = "10.8.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr: an IPv4 CIDR range."
  }
}

variable "database_tier" {
  description = "The Cloud SQL machine tier of the state store."
  type        = string
  default     = "db-custom-2-7680"
}

variable "database_version" {
  description = "The PostgreSQL major version of the state store."
  type        = string
  default     = "POSTGRES_18"

  validation {
    condition     = can(regex("^POSTGRES_(1[5-9]|[2-9][0-9])$", var.database_version))
    error_message = "database_version: POSTGRES_15 or later."
  }
}

variable "database_availability" {
  description = "REGIONAL (a standby in another zone, for production) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.database_availability)
    error_message = "database_availability: REGIONAL or ZONAL."
  }
}

variable "backup_retention_days" {
  description = "Daily backups of the state store kept (point-in-time recovery covers the last 7 days)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 365
    error_message = "backup_retention_days: 7 to 365."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the database and the services (turn off only to tear a platform down on purpose)."
  type        = bool
  default     = true
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids the alert policies notify (empty: the alerts fire without notifying)."
  type        = list(string)
  default     = []
}

variable "labels" {
  description = "Labels on every resource that takes them (managed-by=ledgerlake is always added)."
  type        = map(string)
  default     = {}
}
