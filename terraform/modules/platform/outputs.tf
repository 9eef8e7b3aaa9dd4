output "control_url" {
  description = "The control service's URL: Xero's redirect URI is this + /oauth/xero/callback, its webhook URL this + /webhooks/xero."
  value       = module.control_plane.control_url
}

output "query_url" {
  description = "The query service's URL."
  value       = module.control_plane.query_url
}

output "image_registry" {
  description = "Where infra/cloudbuild.yaml pushes the images (_REGION and _REPOSITORY)."
  value       = local.registry
}

output "tenant_job_image" {
  description = "The tenant-job image the control plane puts in tenants' job definitions."
  value       = "${local.registry}/tenant-job:${var.image_tag}"
}

output "secret_ids" {
  description = "The app's secrets; add versions of the Xero ones by hand (infra/RUNBOOK.md)."
  value       = module.control_plane.secret_ids
}

output "database_instance" {
  description = "The state store's Cloud SQL instance."
  value       = module.control_plane.database_instance
}

output "scheduler_job" {
  description = "The tick's Scheduler job."
  value       = module.scheduler.job_name
}

output "cell_register_commands" {
  description = "Run each once its cell is applied, to let the control plane place tenants there."
  value       = { for id, cell in module.cell : id => cell.register_command }
}
