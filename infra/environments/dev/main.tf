# The dev environment: the whole platform (terraform/modules/platform) in its
# own project, with one cell, a small single-zone database and no deletion
# protection, so that it can be torn down and stood up again. Tenants'
# buckets carry the prefix "dev" unless told otherwise: bucket names are
# global, and dev must never take a name prod's tenants need.

module "platform" {
  source = "../../../terraform/modules/platform"

  project_id                  = var.project_id
  region                      = var.region
  image_tag                   = var.image_tag
  public_url                  = var.public_url
  bucket_prefix               = var.bucket_prefix
  xero_client_id              = var.xero_client_id
  xero_secrets_ready          = var.xero_secrets_ready
  alert_notification_channels = var.alert_notification_channels
  labels                      = merge(var.labels, { environment = "dev" })

  # What makes it dev.
  database_tier         = "db-custom-1-3840"
  database_availability = "ZONAL"
  deletion_protection   = false
  cells = {
    (var.cell_id) = {
      project_id = var.cell_project_id
      region     = var.region
      capacity   = var.cell_capacity
    }
  }
}
