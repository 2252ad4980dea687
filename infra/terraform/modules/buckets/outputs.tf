output "bucket_names" {
  description = "Data bucket names by role: originals, models, mlflow, dvc."
  value       = { for k, b in aws_s3_bucket.data : k => b.bucket }
}

output "bucket_arns" {
  description = "Data bucket ARNs by role: originals, models, mlflow, dvc."
  value       = { for k, b in aws_s3_bucket.data : k => b.arn }
}

output "log_bucket_name" {
  description = "Bucket receiving the S3 server access logs of the data buckets."
  value       = aws_s3_bucket.logs.bucket
}

output "log_bucket_arn" {
  description = "ARN of the access log bucket."
  value       = aws_s3_bucket.logs.arn
}

output "kms_key_arn" {
  description = "KMS key of the data buckets' SSE-KMS (readers need kms:Decrypt, writers kms:GenerateDataKey too)."
  value       = aws_kms_key.s3.arn
}
