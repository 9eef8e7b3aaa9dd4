variable "project_id" {
  description = "The platform project: the control plane's services, database, secrets, image registry and scheduler."
  type        = string
}

variable "region" {
  description = "The platform's region (services, database, registry, scheduler)."
  type        = string
  default     = "europe-west1"
}

variable "image_tag" {
  description = "The images' tag: the commit SHA infra/cloudbuild.yaml built and pushed."
  type        = string
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

variable "database_tier" {
  description = "The Cloud SQL machine tier of the state store (raise it with the tenants)."
  type        = string
  default     = "db-custom-2-7680"
}

variable "cells" {
  description = "The cells: cell id => its project, region and capacity. Each is registered with `control-plane cells add` after apply."
  type = map(object({
    project_id = string
    region     = string
    capacity   = optional(number, 100)
  }))

  validation {
    condition     = length(var.cells) >= 1
    error_message = "cells: prod needs at least one cell for its tenants."
  }
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

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids for the alerts."
  type        = list(string)
  default     = []
}

variable "labels" {
  description = "Labels on every resource that takes them (environment is always added)."
  type        = map(string)
  default     = {}
}
