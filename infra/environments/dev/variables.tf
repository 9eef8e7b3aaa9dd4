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
  description = "Prefix of tenants' bucket names (bucket names are global: dev's must differ from prod's)."
  type        = string
  default     = "dev"
}

variable "cell_id" {
  description = "The id of dev's one cell in the control plane's registry."
  type        = string
  default     = "cell-dev-001"
}

variable "cell_project_id" {
  description = "The project of dev's one cell (created outside this repository, with billing)."
  type        = string
}

variable "cell_capacity" {
  description = "Tenants dev's cell takes at most."
  type        = number
  default     = 20
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
