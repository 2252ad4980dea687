output "role_arns" {
  description = "IRSA role ARN per service account (catalog, tagging-worker, imgtag-stage, tfserving, mlflow; external-secrets when secrets are given): annotate the service account with eks.amazonaws.com/role-arn."
  value       = { for sa, role in aws_iam_role.sa : sa => role.arn }
}

output "service_account_annotations" {
  description = "Per service account, the annotations to put on it in the Kubernetes overlay."
  value       = { for sa, role in aws_iam_role.sa : sa => { "eks.amazonaws.com/role-arn" = role.arn } }
}

output "namespace" {
  description = "Namespace of the imgtag service accounts the roles trust."
  value       = var.namespace
}

output "external_secrets_role_arn" {
  description = "IRSA role of the External Secrets operator (null when no secrets were given)."
  value       = try(aws_iam_role.sa["external-secrets"].arn, null)
}
