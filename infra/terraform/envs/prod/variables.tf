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
  description = "Environment name, used in resource names and tags."
  type        = string
  default     = "prod"
}

variable "name" {
  description = "Base name of the environment's resources (cluster, database, broker, IAM roles)."
  type        = string
  default     = "imgtag-prod"
}

variable "vpc_id" {
  description = "Existing VPC (not created here)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the VPC, one per availability zone (at least two; three for the multi-AZ broker), with NAT egress."
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
  description = "IAM roles/users given cluster-admin through EKS access entries (CI deploy role, SSO admin role)."
  type        = list(string)
}

variable "general_node_group" {
  description = "Sizing of the general node group (see modules/cluster)."
  type = object({
    instance_types = optional(list(string), ["m6i.xlarge"])
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 2)
    max_size       = optional(number, 6)
    desired_size   = optional(number, 3)
    disk_size_gib  = optional(number, 50)
  })
  default = {}
}

variable "training_node_group" {
  description = "The optional tainted training node group (see modules/cluster)."
  type = object({
    enabled        = optional(bool, true)
    instance_types = optional(list(string), ["g5.xlarge"])
    ami_type       = optional(string, "AL2023_x86_64_NVIDIA")
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 0)
    max_size       = optional(number, 2)
    desired_size   = optional(number, 0)
    disk_size_gib  = optional(number, 200)
  })
  default = {}
}

variable "bucket_prefix" {
  description = "Globally unique prefix of the S3 bucket names (for example \"acme-imgtag-prod\")."
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days noncurrent object versions are kept in the data buckets."
  type        = number
  default     = 90
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m7g.large"
}

variable "db_allocated_storage_gib" {
  description = "Initial database storage, in GiB."
  type        = number
  default     = 100
}

variable "db_max_allocated_storage_gib" {
  description = "Upper bound of database storage autoscaling, in GiB."
  type        = number
  default     = 1000
}

variable "db_multi_az" {
  description = "Run the database with a multi-AZ standby."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups."
  type        = number
  default     = 14
}

variable "enable_managed_broker" {
  description = "Create an Amazon MQ (RabbitMQ) broker instead of the in-cluster RabbitMQ StatefulSet of infra/k8s (which the prod overlay runs). See README.md before switching."
  type        = bool
  default     = false
}

variable "broker_instance_type" {
  description = "Amazon MQ instance type."
  type        = string
  default     = "mq.m7g.large"
}

variable "broker_deployment_mode" {
  description = "Amazon MQ deployment mode: CLUSTER_MULTI_AZ or SINGLE_INSTANCE."
  type        = string
  default     = "CLUSTER_MULTI_AZ"
}

variable "secret_path" {
  description = "Secrets Manager name prefix of this environment's secrets: the broker secret is <secret_path>amqp; the External Secrets role may read everything under it (imgtag-secrets, rabbitmq-auth)."
  type        = string
  default     = "imgtag/prod/"

  validation {
    condition     = endswith(var.secret_path, "/")
    error_message = "secret_path must end with '/'."
  }
}

variable "tags" {
  description = "Tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}
