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

  # State in a GCS bucket of the platform team's, named at init time; the
  # prefix is this environment's own:
  #   terraform init -backend-config="bucket=<state bucket>"
  # Nothing of the state is in this repository.
  backend "gcs" {
    prefix = "ledgerlake/dev"
  }
}

# Credentials come from the environment (the deployer's gcloud login or the
# pipeline's identity), never from this configuration.
provider "google" {
  project = var.project_id
  region  = var.region
}
