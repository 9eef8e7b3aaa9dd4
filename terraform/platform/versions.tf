terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State in a GCS bucket of the platform team's, named at init time:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=ledgerlake/platform"
  # Nothing of the state is in this repository.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
