variable "name" {
  description = "Name of the file system (tag Name) and prefix of its security group and KMS alias."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,62}$", var.name))
    error_message = "name must start with a letter and hold letters, digits or '-'."
  }
}

variable "vpc_id" {
  description = "VPC of the mount targets' security group (the cluster's VPC)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets that get a mount target (one per availability zone the nodes run in)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "node_security_group_id" {
  description = "Security group of the EKS nodes (cluster module output node_security_group_id): the only source allowed on NFS 2049."
  type        = string
}

variable "transition_to_ia" {
  description = "When files not read move to EFS Infrequent Access (AFTER_7_DAYS ... AFTER_365_DAYS), or null to keep everything in Standard."
  type        = string
  default     = "AFTER_30_DAYS"

  validation {
    condition     = var.transition_to_ia == null || contains(["AFTER_1_DAY", "AFTER_7_DAYS", "AFTER_14_DAYS", "AFTER_30_DAYS", "AFTER_60_DAYS", "AFTER_90_DAYS", "AFTER_180_DAYS", "AFTER_270_DAYS", "AFTER_365_DAYS"], var.transition_to_ia)
    error_message = "transition_to_ia must be one of EFS's AFTER_<n>_DAY(S) values, or null."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
