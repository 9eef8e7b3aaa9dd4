# The control plane in the platform project: two Cloud Run services from one
# image (`serve --role control` and `serve --role query`), their service
# accounts, the state store (Cloud SQL for PostgreSQL on a private IP), the
# app's secrets, the network that reaches the database, and the alerts.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels = merge(var.labels, { "managed-by" = "ledgerlake" })
  # Cloud Run's deterministic URL, known before the service exists (the
  # service needs its own URL: Xero's redirect URI and the tick's audience).
  run_url    = "https://${var.name_prefix}-control-${data.google_project.this.number}.${var.region}.run.app"
  public_url = var.public_url != "" ? var.public_url : local.run_url
  tick_url   = "${local.public_url}/v1/scheduler/tick"
}

# ----- identities ----------------------------------------------------------------

# The control service: the reconciler, the runs and the operator API. Its
# rights are in each cell (modules/cell), none project-wide here: in this
# project it reads its own secrets only.
resource "google_service_account" "control" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-control"
  display_name = "ledgerlake control plane"
  description  = "Runs serve --role control: provisions tenants in the cells, starts their jobs."
}

# The query service: reads the state store and impersonates one tenant's
# account per question (granted per tenant account by the reconciler).
resource "google_service_account" "query" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-query"
  display_name = "ledgerlake query service"
  description  = "Runs serve --role query: answers questions as each tenant's own account."
}

# ----- network: the database's private IP ---------------------------------------------

resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = var.name_prefix
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "services" {
  project                  = var.project_id
  name                     = "${var.name_prefix}-services"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing enters the network: the services only leave through it (Direct VPC
# egress) to reach the database.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.name_prefix}-deny-ingress"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Private services access: the range Cloud SQL's private IP comes from.
resource "google_compute_global_address" "sql" {
  project       = var.project_id
  name          = "${var.name_prefix}-sql"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.this.id
}

resource "google_service_networking_connection" "sql" {
  network                 = google_compute_network.this.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.sql.name]
}

# ----- the state store --------------------------------------------------------------------

resource "google_sql_database_instance" "state" {
  # checkov:skip=CKV_GCP_6:Connections must be encrypted (ssl_mode ENCRYPTED_ONLY) and come over the private IP only; client certificates would have to be issued to every service instance, and the password is in Secret Manager.
  project             = var.project_id
  name                = "${var.name_prefix}-state"
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier              = var.database_tier
    edition           = "ENTERPRISE"
    availability_type = var.database_availability
    disk_autoresize   = true
    user_labels       = local.labels

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = var.backup_retention_days
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.this.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    maintenance_window {
      day  = 7
      hour = 3
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # What Cloud SQL's and checkov's PostgreSQL logging recommendations ask.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.sql]
}

resource "google_sql_database" "state" {
  project  = var.project_id
  instance = google_sql_database_instance.state.name
  name     = "ledgerlake"
}

# Letters and digits only, so the password needs no escaping in the URL.
resource "random_password" "database" {
  length  = 40
  special = false
}

resource "google_sql_user" "control_plane" {
  project  = var.project_id
  instance = google_sql_database_instance.state.name
  name     = "ledgerlake"
  password = random_password.database.result
}

# ----- secrets ------------------------------------------------------------------------------

locals {
  # Secrets whose value Terraform generates (and so keeps in its state: keep
  # the state bucket as private as the secrets, see terraform/README.md).
  generated_secrets = {
    "database-url"   = "postgres://${google_sql_user.control_plane.name}:${random_password.database.result}@${google_sql_database_instance.state.private_ip_address}:5432/${google_sql_database.state.name}?sslmode=require"
    "operator-token" = random_password.operator_token.result
    "metrics-token"  = random_password.metrics_token.result
    "master-key"     = random_id.master_key.hex
  }
  # Secrets an operator adds versions to by hand (their values never pass
  # through Terraform): the Xero app's.
  operator_secrets = ["xero-client-secret", "xero-webhook-key"]
  secret_names     = concat(keys(local.generated_secrets), local.operator_secrets)

  # Who reads which secret: the query service needs no Xero app and no key.
  control_secrets = concat(keys(local.generated_secrets), var.xero_secrets_ready ? local.operator_secrets : [])
  query_secrets   = ["database-url", "operator-token", "metrics-token"]
}

resource "random_password" "operator_token" {
  length  = 48
  special = false
}

resource "random_password" "metrics_token" {
  length  = 48
  special = false
}

# 32 bytes, written as 64 hex digits: LEDGERLAKE_MASTER_KEY.
resource "random_id" "master_key" {
  byte_length = 32
}

resource "google_secret_manager_secret" "app" {
  for_each  = toset(local.secret_names)
  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}"
  labels    = local.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "generated" {
  for_each    = local.generated_secrets
  secret      = google_secret_manager_secret.app[each.key].id
  secret_data = each.value
}

resource "google_secret_manager_secret_iam_member" "control" {
  for_each  = toset(local.secret_names)
  project   = var.project_id
  secret_id = google_secret_manager_secret.app[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.control.member
}

resource "google_secret_manager_secret_iam_member" "query" {
  for_each  = toset(local.query_secrets)
  project   = var.project_id
  secret_id = google_secret_manager_secret.app[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.query.member
}

# ----- the two services -----------------------------------------------------------------

locals {
  secret_env = {
    "database-url"       = "LEDGERLAKE_DATABASE_URL"
    "operator-token"     = "LEDGERLAKE_OPERATOR_TOKEN"
    "metrics-token"      = "LEDGERLAKE_METRICS_TOKEN"
    "master-key"         = "LEDGERLAKE_MASTER_KEY"
    "xero-client-secret" = "LEDGERLAKE_XERO_CLIENT_SECRET"
    "xero-webhook-key"   = "LEDGERLAKE_XERO_WEBHOOK_KEY"
  }
  common_env = {
    LEDGERLAKE_CLOUD         = "gcp"
    LEDGERLAKE_LOG_FORMAT    = "json"
    LEDGERLAKE_BUCKET_PREFIX = var.bucket_prefix
    GOOGLE_CLOUD_PROJECT     = var.project_id
    # Cloud Run's front end sets X-Forwarded-For: rate limits per client.
    LEDGERLAKE_TRUST_FORWARDED_FOR = "true"
    RUST_LOG                       = "info"
  }
  control_env = merge(local.common_env, {
    LEDGERLAKE_SERVE_ROLE                = "control"
    LEDGERLAKE_PUBLIC_URL                = local.public_url
    LEDGERLAKE_LOCAL_TICK_SECS           = "0"
    LEDGERLAKE_SCHEDULER_AUDIENCE        = local.tick_url
    LEDGERLAKE_SCHEDULER_SERVICE_ACCOUNT = var.scheduler_service_account_email
    LEDGERLAKE_XERO_CLIENT_ID            = var.xero_client_id
  })
  query_env = merge(local.common_env, {
    LEDGERLAKE_SERVE_ROLE = "query"
  })
}

resource "google_cloud_run_v2_service" "control" {
  project             = var.project_id
  name                = "${var.name_prefix}-control"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.control.email
    max_instance_request_concurrency = 80
    timeout                          = "60s"

    # One instance always runs, with its CPU always on: it hosts the
    # reconciler's workers and the token keep-alive.
    scaling {
      min_instance_count = 1
      max_instance_count = var.control_max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.this.id
        subnetwork = google_compute_subnetwork.services.id
      }
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = { for k, v in local.control_env : k => v if v != "" }
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = toset(local.control_secrets)
        content {
          name = local.secret_env[env.value]
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.app[env.value].secret_id
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        period_seconds    = 5
        failure_threshold = 24
        http_get {
          path = "/readyz"
        }
      }

      liveness_probe {
        period_seconds = 30
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.control,
    google_secret_manager_secret_version.generated,
  ]
}

resource "google_cloud_run_v2_service" "query" {
  project             = var.project_id
  name                = "${var.name_prefix}-query"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.query.email
    max_instance_request_concurrency = 40
    timeout                          = "60s"

    scaling {
      min_instance_count = var.query_min_instances
      max_instance_count = var.query_max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.this.id
        subnetwork = google_compute_subnetwork.services.id
      }
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = { for k, v in local.query_env : k => v if v != "" }
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = toset(local.query_secrets)
        content {
          name = local.secret_env[env.value]
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.app[env.value].secret_id
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        period_seconds    = 5
        failure_threshold = 24
        http_get {
          path = "/readyz"
        }
      }

      liveness_probe {
        period_seconds = 30
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.query,
    google_secret_manager_secret_version.generated,
  ]
}

# Both services are reached without a Google identity: Xero's browser
# redirects and webhooks, tenants' API clients. The service authenticates
# every route that needs it itself (operator, tenant and scrape tokens,
# Xero's signature, Cloud Scheduler's ID token).
resource "google_cloud_run_v2_service_iam_member" "control_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.control.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "query_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.query.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
