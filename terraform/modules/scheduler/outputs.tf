output "job_name" {
  description = "The Scheduler job's name (pause it to stop every scheduled sync)."
  value       = google_cloud_scheduler_job.tick.name
}
