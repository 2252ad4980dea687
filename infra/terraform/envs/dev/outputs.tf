output "cluster_name" {
  description = "EKS cluster name: aws eks update-kubeconfig --name <this> --region <region>."
  value       = module.cluster.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.cluster.cluster_endpoint
}

output "bucket_names" {
  description = "Data bucket names by role (originals, models, mlflow, dvc)."
  value       = module.buckets.bucket_names
}

output "imgtag_config" {
  description = "ConfigMap values for an S3-backed dev overlay (the default dev overlay keeps everything on the PVC)."
  value = {
    IMGTAG_STORAGE_URL           = "s3://${module.buckets.bucket_names["originals"]}"
    IMGTAG_DVC_REMOTE            = "s3://${module.buckets.bucket_names["dvc"]}"
    MLFLOW_ARTIFACTS_DESTINATION = "s3://${module.buckets.bucket_names["mlflow"]}"
  }
}

output "irsa_role_arns" {
  description = "IRSA role ARN per service account in namespace imgtag."
  value       = module.workload_identity.role_arns
}

output "efs_file_system_id" {
  description = "EFS file system of the StorageClass efs-sc (parameter fileSystemId)."
  value       = module.efs.file_system_id
}
