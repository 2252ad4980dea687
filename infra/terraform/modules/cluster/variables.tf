variable "name" {
  description = "Name of the EKS cluster; also the prefix of its IAM roles, KMS alias and node groups."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,37}$", var.name))
    error_message = "name must start with a letter, hold only letters, digits and '-', and be at most 38 characters (IAM role names get a suffix)."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane (for example \"1.34\"). Node groups follow it."
  type        = string
  default     = "1.34"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like \"1.34\"."
  }
}

variable "subnet_ids" {
  description = "Private subnet ids (at least two availability zones) for the control plane ENIs and the nodes."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Whether the Kubernetes API is also reachable from the internet (limited to public_access_cidrs). The private endpoint is always on."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public API endpoint when endpoint_public_access is true (office / VPN egress). Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.public_access_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "public_access_cidrs must be valid CIDR blocks and must not contain 0.0.0.0/0."
  }
}

variable "cluster_log_types" {
  description = "Control plane log types sent to CloudWatch Logs."
  type        = list(string)
  default     = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  validation {
    condition     = alltrue([for t in var.cluster_log_types : contains(["api", "audit", "authenticator", "controllerManager", "scheduler"], t)])
    error_message = "cluster_log_types may only hold api, audit, authenticator, controllerManager and scheduler."
  }
}

variable "log_retention_days" {
  description = "Retention of the control plane log group, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts."
  }
}

variable "admin_principal_arns" {
  description = "IAM role/user ARNs granted cluster-admin through EKS access entries (the cluster uses API authentication; nobody else gets access implicitly)."
  type        = list(string)

  validation {
    condition     = length(var.admin_principal_arns) > 0 && alltrue([for arn in var.admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", arn))])
    error_message = "admin_principal_arns needs at least one IAM role or user ARN."
  }
}

variable "general_node_group" {
  description = "The always-on node group running the imgtag services (catalog, worker, TF Serving, MLflow, RabbitMQ)."
  type = object({
    instance_types = optional(list(string), ["m6i.xlarge"])
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 2)
    max_size       = optional(number, 6)
    desired_size   = optional(number, 3)
    disk_size_gib  = optional(number, 50)
  })
  default = {}

  validation {
    condition     = var.general_node_group.min_size <= var.general_node_group.desired_size && var.general_node_group.desired_size <= var.general_node_group.max_size && var.general_node_group.max_size > 0
    error_message = "general_node_group needs min_size <= desired_size <= max_size and max_size > 0."
  }

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.general_node_group.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "training_node_group" {
  description = "Optional node group for the training stage pods. Its nodes carry the taint imgtag.io/training=true:NoSchedule and the label imgtag.io/node-pool=training, so only pods that tolerate it land there."
  type = object({
    enabled        = optional(bool, false)
    instance_types = optional(list(string), ["g5.xlarge"])
    ami_type       = optional(string, "AL2023_x86_64_NVIDIA")
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 0)
    max_size       = optional(number, 2)
    desired_size   = optional(number, 0)
    disk_size_gib  = optional(number, 200)
  })
  default = {}

  validation {
    condition     = var.training_node_group.min_size <= var.training_node_group.desired_size && var.training_node_group.desired_size <= var.training_node_group.max_size && var.training_node_group.max_size > 0
    error_message = "training_node_group needs min_size <= desired_size <= max_size and max_size > 0."
  }

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.training_node_group.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "enable_ebs_csi_driver" {
  description = "Install the aws-ebs-csi-driver add-on (ReadWriteOnce volumes, e.g. the in-cluster RabbitMQ) with its own IRSA role."
  type        = bool
  default     = true
}

variable "enable_efs_csi_driver" {
  description = "Install the aws-efs-csi-driver add-on (the ReadWriteMany volumes imgtag-data and imgtag-models, StorageClass efs-sc) with its own IRSA role."
  type        = bool
  default     = true
}
