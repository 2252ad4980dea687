output "file_system_id" {
  description = "EFS file system id: the fileSystemId parameter of the StorageClass efs-sc."
  value       = aws_efs_file_system.this.id
}

output "file_system_arn" {
  description = "ARN of the EFS file system."
  value       = aws_efs_file_system.this.arn
}

output "security_group_id" {
  description = "Security group of the mount targets."
  value       = aws_security_group.efs.id
}
