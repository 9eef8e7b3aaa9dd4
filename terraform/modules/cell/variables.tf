variable "project_id" {
  description = "The cell's project: it holds up to capacity tenants' buckets, datasets, accounts, secrets and jobs."
  type        = string
}

variable "cell_id" {
  description = "The cell's id in the control plane's registry (control-plane cells add ID --project ... --region ...)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,39}$", var.cell_id))
    error_message = "cell_id: 3-40 of a-z, 0-9 and -, starting with a letter."
  }
}

variable "region" {
  description = "The cell's region: its tenants' jobs and data live here."
  type        = string
}

variable "capacity" {
  description = "Tenants the cell takes at most. Google's default quotas: 100 service accounts a project, about 1,000 Cloud Run jobs a region (two per tenant)."
  type        = number
  default     = 100

  validation {
    condition     = var.capacity >= 1 && var.capacity <= 100
    error_message = "capacity: 1 to 100 (each tenant has a service account; a project's default quota is 100; raise the quota before the capacity)."
  }
}

variable "control_service_account_email" {
  description = "The control service's account, which provisions tenants here."
  type        = string
}

variable "query_service_account_email" {
  description = "The query service's account, which runs each tenant's questions as that tenant (impersonating its account)."
  type        = string
}

variable "artifact_registry" {
  description = "The platform's Artifact Registry repository holding the tenant-job image: project, location and repository id."
  type = object({
    project    = string
    location   = string
    repository = string
  })
}

variable "labels" {
  description = "Labels on the cell's resources (managed-by=ledgerlake and cell=<id> are always added)."
  type        = map(string)
  default     = {}
}
