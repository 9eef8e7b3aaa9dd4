output "service_account_email" {
  description = "The tenant's service account: its jobs run as it, and the query service impersonates it."
  value       = google_service_account.tenant.email
}

output "bucket_name" {
  description = "The tenant's bucket."
  value       = google_storage_bucket.tenant.name
}

output "dataset_ids" {
  description = "The tenant's datasets: raw and transformed."
  value = {
    raw         = google_bigquery_dataset.raw.dataset_id
    transformed = google_bigquery_dataset.transformed.dataset_id
  }
}

output "token_secret_id" {
  description = "The secret of the tenant's Xero token set (its versions are never Terraform's)."
  value       = google_secret_manager_secret.token.secret_id
}

output "job_names" {
  description = "The tenant's Cloud Run jobs, by name."
  value       = sort([for job in google_cloud_run_v2_job.job : job.name])
}
