output "control_url" {
  description = "The URL the control service is reached at (LEDGERLAKE_PUBLIC_URL)."
  value       = local.public_url
}

output "tick_url" {
  description = "The scheduler tick's URL, also the audience of Cloud Scheduler's ID tokens."
  value       = local.tick_url
}

output "control_service_name" {
  description = "The control service's Cloud Run name."
  value       = google_cloud_run_v2_service.control.name
}

output "query_url" {
  description = "The query service's URL (tenants' API clients call /v1/query here)."
  value       = google_cloud_run_v2_service.query.uri
}

output "control_service_account_email" {
  description = "The control service's account: what each cell grants."
  value       = google_service_account.control.email
}

output "query_service_account_email" {
  description = "The query service's account: the reconciler lets it impersonate each tenant's account."
  value       = google_service_account.query.email
}

output "database_instance" {
  description = "The state store's Cloud SQL instance (for backups and restores)."
  value       = google_sql_database_instance.state.name
}

output "secret_ids" {
  description = "The app's Secret Manager secrets by purpose; add versions of xero-client-secret and xero-webhook-key by hand."
  value       = { for k, s in google_secret_manager_secret.app : k => s.secret_id }
}
