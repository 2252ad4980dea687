output "endpoint" {
  description = "Hostname of the database (port in `port`)."
  value       = aws_db_instance.db.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.db.port
}

output "db_name" {
  description = "Name of the application database."
  value       = aws_db_instance.db.db_name
}

output "master_username" {
  description = "Master user name (also in the secret)."
  value       = aws_db_instance.db.username
}

output "secret_arn" {
  description = "Secrets Manager secret managed by RDS holding the master credentials (JSON keys username, password); read by External Secrets."
  value       = aws_db_instance.db.master_user_secret[0].secret_arn
}

output "kms_key_arn" {
  description = "KMS key of the instance and of its master secret (secret readers need kms:Decrypt on it)."
  value       = aws_kms_key.db.arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}

output "resource_id" {
  description = "RDS resource id (dbi-resource-id), the resource of rds-db:connect for IAM database authentication."
  value       = aws_db_instance.db.resource_id
}
