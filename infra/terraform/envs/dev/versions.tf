terraform {
  # use_lockfile (S3 native state locking) needs Terraform 1.10 or later.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Partial configuration: bucket and region come from -backend-config=backend.hcl
  # (see backend.hcl.example). The lock is a <key>.tflock object next to the state.
  backend "s3" {
    key          = "imgtag/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = merge(var.tags, {
      "app.kubernetes.io/part-of" = "imgtag"
      "imgtag.io/environment"     = var.environment
      "imgtag.io/managed-by"      = "terraform"
    })
  }
}
