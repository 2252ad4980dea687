variable "name_prefix" {
  description = "Prefix of the IAM role names (<prefix>-<service account>)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,38}$", var.name_prefix))
    error_message = "name_prefix must start with a letter, hold letters, digits or '-', and be at most 39 characters."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (cluster module output oidc_provider_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_provider_url" {
  description = "Issuer URL of the cluster's OIDC provider (cluster module output oidc_provider_url), with or without https://."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the service accounts (the imgtag contract: imgtag)."
  type        = string
  default     = "imgtag"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "bucket_arns" {
  description = "Data bucket ARNs by role (buckets module output bucket_arns): originals, models, mlflow, dvc."
  type        = map(string)

  validation {
    condition     = alltrue([for k in ["originals", "models", "mlflow", "dvc"] : contains(keys(var.bucket_arns), k)])
    error_message = "bucket_arns needs the keys originals, models, mlflow and dvc."
  }
}

variable "bucket_kms_key_arn" {
  description = "KMS key of the data buckets (buckets module output kms_key_arn)."
  type        = string
}

variable "secret_arns" {
  description = "Secrets Manager secrets (full ARNs) the External Secrets operator may read: the RDS-managed database secret, the broker secret."
  type        = list(string)
  default     = []
}

variable "secret_name_prefixes" {
  description = "Name prefixes of further secrets the External Secrets operator may read (for example \"imgtag/prod/\" for imgtag-secrets and rabbitmq-auth created by hand)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.secret_name_prefixes : length(p) >= 3 && !strcontains(p, "*")])
    error_message = "secret_name_prefixes must be literal prefixes of at least 3 characters (no wildcards)."
  }
}

variable "secret_kms_key_arns" {
  description = "Customer managed KMS keys encrypting those secrets (kms:Decrypt through Secrets Manager only). Secrets under the AWS managed key need none."
  type        = list(string)
  default     = []
}

variable "external_secrets_service_account" {
  description = "Namespace and name of the External Secrets operator's service account (the ClusterSecretStore authenticates as it). The role exists only when secret_arns or secret_name_prefixes is set."
  type = object({
    namespace = string
    name      = string
  })
  default = {
    namespace = "external-secrets"
    name      = "external-secrets"
  }
}

variable "permissions_boundary_arn" {
  description = "Optional IAM permissions boundary set on every role (null: none)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
