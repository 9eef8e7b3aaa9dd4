terraform {
  # import blocks: Terraform 1.5; the module: 1.6.
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }
}

# Credentials come from the environment (gcloud auth application-default
# login, or the runner's identity); every resource names its project.
provider "google" {}
