# Log-based metrics over the services' JSON logs (Cloud Logging's shape, see
# control-plane/src/logging.rs) and the alerts infra/RUNBOOK.md explains.
# /metrics carries the same facts for a Prometheus scraper; these need none.

locals {
  services_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${google_cloud_run_v2_service.control.name}\" OR \"${google_cloud_run_v2_service.query.name}\")"

  log_metrics = {
    "failed-runs" = {
      description = "Runs of the tenant job that ended failed."
      filter      = "jsonPayload.message=\"run ended\" AND jsonPayload.status=\"failed\""
    }
    "tenants-needing-consent" = {
      description = "Refresh tokens Xero refused: the tenant must consent again."
      filter      = "jsonPayload.message=\"Xero refused the refresh token; the tenant must consent again\""
    }
    "provisioning-failures" = {
      description = "Reconcile passes that left a tenant unsettled or could not run."
      filter      = "jsonPayload.message=(\"tenant not settled; retrying after a backoff\" OR \"reconcile failed; retrying after a backoff\")"
    }
    "internal-errors" = {
      description = "Lines logged at ERROR (internal failures carry an error_id)."
      filter      = "severity>=ERROR"
    }
  }

  # Each alert: the metric, how many in the window fire it, and the window.
  alerts = {
    "failed-runs" = {
      display   = "ledgerlake: tenant runs failing"
      threshold = 3
      window    = "3600s"
    }
    "tenants-needing-consent" = {
      display   = "ledgerlake: a tenant must reconnect Xero"
      threshold = 0
      window    = "300s"
    }
    "provisioning-failures" = {
      display   = "ledgerlake: provisioning failing"
      threshold = 5
      window    = "1800s"
    }
    "internal-errors" = {
      display   = "ledgerlake: internal errors"
      threshold = 10
      window    = "600s"
    }
  }
}

resource "google_logging_metric" "this" {
  for_each    = local.log_metrics
  project     = var.project_id
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = "${local.services_filter} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "this" {
  for_each              = local.alerts
  project               = var.project_id
  display_name          = each.value.display
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  documentation {
    content   = "See infra/RUNBOOK.md, \"Alerts\": ${each.key}."
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.display

    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.this[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"

      aggregations {
        alignment_period     = each.value.window
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }
}
