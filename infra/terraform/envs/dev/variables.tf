variable "aws_account_id" {
  description = "AWS account the environment lives in; the provider refuses to touch any other."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be 12 digits."
  }
}

variable "region" {
  description = "AWS region of every resource."
  type        = string
}

variable "environment" {
  description = "Environment name, used in tags."
  type        = string
  default     = "dev"
}

variable "name" {
  description = "Base name of the environment's resources (cluster, IAM roles)."
  type        = string
  default     = "imgtag-dev"
}

variable "vpc_id" {
  description = "Existing VPC (not created here)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the existing VPC, one per availability zone (at least two), with NAT egress."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids needs at least two subnets in different availability zones."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the EKS cluster."
  type        = string
  default     = "1.34"
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API publicly (only to public_access_cidrs). Default: private endpoint only."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "CIDRs allowed on the public API endpoint when endpoint_public_access is true."
  type        = list(string)
  default     = []
}

variable "admin_principal_arns" {
  description = "IAM roles/users given cluster-admin through EKS access entries."
  type        = list(string)
}

variable "bucket_prefix" {
  description = "Globally unique prefix of the S3 bucket names (for example \"acme-imgtag-dev\")."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}
