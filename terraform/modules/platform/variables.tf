variable "project_id" {
  description = "The platform project: the control plane's services, database, secrets, image registry and scheduler."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id: a Google Cloud project id (6-30 of a-z, 0-9 and -)."
  }
}

variable "region" {
  description = "The platform's region (services, database, registry, scheduler)."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of the platform's resource names."
  type        = string
  default     = "ledgerlake"
}

variable "image_tag" {
  description = "The images' tag: the commit SHA infra/cloudbuild.yaml built and pushed."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{7,40}$", var.image_tag))
    error_message = "image_tag: a commit SHA (7-40 hex digits), never latest."
  }
}

variable "public_url" {
  description = "The control service's public URL (a custom domain, https://host); empty for its run.app URL."
  type        = string
  default     = ""
}

variable "bucket_prefix" {
  description = "Prefix of tenants' bucket names (bucket names are global)."
  type        = string
  default     = ""
}

variable "xero_client_id" {
  description = "The Xero app's client id (public); empty until the app exists."
  type        = string
  default     = ""
}

variable "xero_secrets_ready" {
  description = "Set true once the Xero client secret and webhook key secrets have versions (infra/RUNBOOK.md, first deployment)."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect the database and the services from terraform destroy."
  type        = bool
  default     = true
}

variable "database_tier" {
  description = "The Cloud SQL machine tier of the state store."
  type        = string
  default     = "db-custom-2-7680"
}

variable "database_availability" {
  description = "The state store's availability: REGIONAL (a standby in another zone) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.database_availability)
    error_message = "database_availability: REGIONAL or ZONAL."
  }
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids for the alerts."
  type        = list(string)
  default     = []
}

variable "cells" {
  description = "The cells: cell id => its project, region and capacity. Each is registered with `control-plane cells add` after apply."
  type = map(object({
    project_id = string
    region     = string
    capacity   = optional(number, 100)
  }))
  default = {}
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}
