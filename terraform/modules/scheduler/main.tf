# The one Cloud Scheduler job of the platform: every minute it calls the
# control service's tick with an OIDC ID token of a dedicated account. No
# per-tenant jobs: the tick starts whichever tenants are due, within the
# app-wide Xero budget (see DESIGN: 10,000 tenants stay far from Scheduler's
# per-region quota).

resource "google_cloud_scheduler_job" "tick" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-tick"
  description      = "Starts due tenant syncs: POST /v1/scheduler/tick."
  schedule         = var.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = var.attempt_deadline

  # A missed tick is made up by the next one; retrying would only pile up.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = var.tick_url

    oidc_token {
      service_account_email = var.service_account_email
      audience              = var.tick_url
    }
  }
}

# The control service is public (Xero must reach it), but the tick's caller
# is granted invoke anyway, so that the tick keeps working if the service is
# ever made private.
resource "google_cloud_run_v2_service_iam_member" "tick_invoker" {
  project  = var.project_id
  location = var.region
  name     = var.control_service_name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.service_account_email}"
}
