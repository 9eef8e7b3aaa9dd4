variable "project_id" {
  description = "The platform project the Scheduler job lives in."
  type        = string
}

variable "region" {
  description = "The Scheduler job's region (the control service's)."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the job's name."
  type        = string
  default     = "ledgerlake"
}

variable "tick_url" {
  description = "The URL of the control service's POST /v1/scheduler/tick; also the ID token's audience."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+/v1/scheduler/tick$", var.tick_url))
    error_message = "tick_url: https://host/v1/scheduler/tick."
  }
}

variable "service_account_email" {
  description = "The dedicated account the job calls as: Cloud Scheduler signs an OIDC ID token for it, which the control service checks."
  type        = string
}

variable "control_service_name" {
  description = "The control service's Cloud Run name: the job's account may invoke it."
  type        = string
}

variable "schedule" {
  description = "How often the tick runs (cron, UTC). Every minute: the tick itself decides which tenants are due."
  type        = string
  default     = "* * * * *"
}

variable "attempt_deadline" {
  description = "How long one tick may take before Scheduler counts it failed."
  type        = string
  default     = "120s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.attempt_deadline))
    error_message = "attempt_deadline: seconds, such as 120s."
  }
}
