output "control_url" {
  description = "The control service's URL: Xero's redirect URI is this + /oauth/xero/callback, its webhook URL this + /webhooks/xero."
  value       = module.platform.control_url
}

output "query_url" {
  description = "The query service's URL."
  value       = module.platform.query_url
}

output "image_registry" {
  description = "Where infra/cloudbuild.yaml pushes the images (_REGION and _REPOSITORY)."
  value       = module.platform.image_registry
}

output "tenant_job_image" {
  description = "The tenant-job image the control plane puts in tenants' job definitions."
  value       = module.platform.tenant_job_image
}

output "secret_ids" {
  description = "The app's secrets; add versions of the Xero ones by hand (infra/RUNBOOK.md)."
  value       = module.platform.secret_ids
}

output "database_instance" {
  description = "The state store's Cloud SQL instance."
  value       = module.platform.database_instance
}

output "scheduler_job" {
  description = "The tick's Scheduler job."
  value       = module.platform.scheduler_job
}

output "cell_register_commands" {
  description = "Run each once its cell is applied, to let the control plane place tenants there."
  value       = module.platform.cell_register_commands
}
