# The platform: the APIs it uses, the image registry, the control plane
# (modules/control_plane), the one Scheduler job (modules/scheduler) and the
# cells (modules/cell). Each environment is a root that calls this module
# with its own backend, provider and choices (infra/environments/dev, prod).
# See terraform/README.md for the order of a first deployment and
# infra/RUNBOOK.md for operating it.

locals {
  services = [
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ]
  registry = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

resource "google_project_service" "platform" {
  for_each           = toset(local.services)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Images hold no secret or tenant data (see infra/docker); Google-managed encryption is enough, and a customer key would add a KMS key ring to run for no gain.
  project       = var.project_id
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "control-plane and tenant-job images, tagged by commit SHA"
  labels        = merge(var.labels, { "managed-by" = "ledgerlake" })

  # A tag names one build forever: deployments pin a commit's image.
  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.platform]
}

# The account Cloud Scheduler calls the tick as, and nothing else.
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "ledgerlake scheduler tick"
  description  = "Cloud Scheduler's identity for POST /v1/scheduler/tick (an OIDC ID token)."

  depends_on = [google_project_service.platform]
}

module "control_plane" {
  source = "../control_plane"

  project_id                      = var.project_id
  region                          = var.region
  name_prefix                     = var.name_prefix
  image                           = "${local.registry}/control-plane:${var.image_tag}"
  public_url                      = var.public_url
  bucket_prefix                   = var.bucket_prefix
  scheduler_service_account_email = google_service_account.scheduler.email
  xero_client_id                  = var.xero_client_id
  xero_secrets_ready              = var.xero_secrets_ready
  deletion_protection             = var.deletion_protection
  database_tier                   = var.database_tier
  database_availability           = var.database_availability
  alert_notification_channels     = var.alert_notification_channels
  labels                          = var.labels

  depends_on = [google_project_service.platform]
}

module "scheduler" {
  source = "../scheduler"

  project_id            = var.project_id
  region                = var.region
  name_prefix           = var.name_prefix
  tick_url              = module.control_plane.tick_url
  service_account_email = google_service_account.scheduler.email
  control_service_name  = module.control_plane.control_service_name
}

module "cell" {
  source   = "../cell"
  for_each = var.cells

  project_id                    = each.value.project_id
  cell_id                       = each.key
  region                        = each.value.region
  capacity                      = each.value.capacity
  control_service_account_email = module.control_plane.control_service_account_email
  query_service_account_email   = module.control_plane.query_service_account_email
  labels                        = var.labels
  artifact_registry = {
    project    = var.project_id
    location   = var.region
    repository = google_artifact_registry_repository.images.repository_id
  }
}
