output "cluster_name" {
  description = "EKS cluster name: aws eks update-kubeconfig --name <this> --region <region>."
  value       = module.cluster.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.cluster.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA bundle of the cluster."
  value       = module.cluster.cluster_certificate_authority_data
}

output "oidc_provider_arn" {
  description = "IRSA OIDC provider ARN."
  value       = module.cluster.oidc_provider_arn
}

output "bucket_names" {
  description = "Data bucket names by role (originals, models, mlflow, dvc)."
  value       = module.buckets.bucket_names
}

output "imgtag_config" {
  description = "Values of the ConfigMap imgtag-config in overlays/prod that come from this environment."
  value = {
    IMGTAG_STORAGE_URL           = "s3://${module.buckets.bucket_names["originals"]}"
    IMGTAG_DVC_REMOTE            = "s3://${module.buckets.bucket_names["dvc"]}"
    MLFLOW_ARTIFACTS_DESTINATION = "s3://${module.buckets.bucket_names["mlflow"]}"
  }
}

output "model_repository_url" {
  description = "S3 location of the TF Serving model repository (imgtag-tagger/<version>/), synced by the promote stage."
  value       = "s3://${module.buckets.bucket_names["models"]}"
}

output "irsa_role_arns" {
  description = "IRSA role ARN per service account in namespace imgtag (annotation eks.amazonaws.com/role-arn)."
  value       = module.workload_identity.role_arns
}

output "database_endpoint" {
  description = "PostgreSQL host (port 5432, database imgtag, sslmode=require)."
  value       = module.database.endpoint
}

output "database_secret_arn" {
  description = "RDS-managed secret with the database user and password (for External Secrets)."
  value       = module.database.secret_arn
}

output "broker_amqps_endpoint" {
  description = "Amazon MQ AMQPS endpoint (null without the managed broker)."
  value       = one(module.broker[*].amqps_endpoint)
}

output "broker_secret_name" {
  description = "Secret whose key url is the full IMGTAG_AMQP_URL, for External Secrets (null without the managed broker)."
  value       = var.enable_managed_broker ? "${var.secret_path}amqp" : null
}

output "external_secrets_role_arn" {
  description = "IRSA role of the External Secrets operator's service account (external-secrets/external-secrets, behind the ClusterSecretStore aws-secrets-manager): reads the database secret, the broker secret and everything under secret_path."
  value       = module.workload_identity.external_secrets_role_arn
}

output "efs_file_system_id" {
  description = "EFS file system of the StorageClass efs-sc (parameter fileSystemId)."
  value       = module.efs.file_system_id
}

output "vpc_cidr_block" {
  description = "CIDR of the VPC: the ipBlock of overlays/prod networkpolicy-database.yaml."
  value       = data.aws_vpc.this.cidr_block
}
