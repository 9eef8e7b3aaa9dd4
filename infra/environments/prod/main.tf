# The prod environment: the whole platform (terraform/modules/platform) with
# a highly available database (a standby in another zone), deletion
# protection on the database and the services, and as many cells as its
# tenants need (infra/RUNBOOK.md, "Adding a cell").

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
  labels                      = merge(var.labels, { environment = "prod" })
  cells                       = var.cells

  # What makes it prod.
  database_tier         = var.database_tier
  database_availability = "REGIONAL"
  deletion_protection   = true
}
