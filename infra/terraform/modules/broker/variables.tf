variable "name" {
  description = "Broker name; also the prefix of its secret, security group and KMS alias."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,50}$", var.name))
    error_message = "name must be 1-50 letters, digits, '-' or '_'."
  }
}

variable "vpc_id" {
  description = "VPC of the broker security group (the cluster's VPC)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnet ids. SINGLE_INSTANCE uses the first one; CLUSTER_MULTI_AZ needs at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "node_security_group_id" {
  description = "Security group of the EKS nodes (the cluster module's node_security_group_id): the only source allowed on AMQPS 5671 and the management console 443."
  type        = string
}

variable "engine_version" {
  description = "RabbitMQ engine version (Amazon MQ major.minor; patch releases are applied automatically)."
  type        = string
  default     = "3.13"

  validation {
    condition     = can(regex("^[34]\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must be a RabbitMQ major.minor such as \"3.13\"."
  }
}

variable "host_instance_type" {
  description = "Broker instance type (CLUSTER_MULTI_AZ needs mq.m5.large / mq.m7g.large or bigger)."
  type        = string
  default     = "mq.m7g.large"
}

variable "deployment_mode" {
  description = "SINGLE_INSTANCE or CLUSTER_MULTI_AZ (three nodes over the given subnets)."
  type        = string
  default     = "CLUSTER_MULTI_AZ"

  validation {
    condition     = contains(["SINGLE_INSTANCE", "CLUSTER_MULTI_AZ"], var.deployment_mode)
    error_message = "deployment_mode must be SINGLE_INSTANCE or CLUSTER_MULTI_AZ."
  }
}

variable "username" {
  description = "The application's RabbitMQ user (password generated, stored in Secrets Manager)."
  type        = string
  default     = "imgtag"

  validation {
    condition     = can(regex("^[a-zA-Z0-9._~-]{2,100}$", var.username)) && !startswith(var.username, "guest")
    error_message = "username must be 2-100 characters of letters, digits, '.', '_', '~' or '-', and not start with guest."
  }
}

variable "secret_name" {
  description = "Name of the Secrets Manager secret holding the credentials and the AMQPS URL (for example \"imgtag/prod/amqp\")."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.secret_name))
    error_message = "secret_name may hold letters, digits and /_+=.@- only."
  }
}

variable "maintenance_window" {
  description = "Weekly maintenance window start (UTC) for minor version upgrades."
  type = object({
    day_of_week = string
    time_of_day = string
  })
  default = {
    day_of_week = "SUNDAY"
    time_of_day = "05:00"
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted credentials secret can still be restored (0 deletes at once)."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
