output "amqps_endpoint" {
  description = "AMQPS endpoint of the broker (amqps://<host>:5671), without credentials."
  value       = local.amqps_endpoint
}

output "console_url" {
  description = "RabbitMQ management console URL (reachable from inside the VPC only)."
  value       = aws_mq_broker.broker.instances[0].console_url
}

output "secret_arn" {
  description = "Secrets Manager secret with keys username, password, host, port and url (the full IMGTAG_AMQP_URL); read by External Secrets."
  value       = aws_secretsmanager_secret.broker.arn
}

output "kms_key_arn" {
  description = "KMS key of the credentials secret (secret readers need kms:Decrypt on it)."
  value       = aws_kms_key.broker.arn
}

output "security_group_id" {
  description = "Security group of the broker."
  value       = aws_security_group.broker.id
}

output "broker_id" {
  description = "Amazon MQ broker id (its logs are in /aws/amazonmq/broker/<id>/general)."
  value       = aws_mq_broker.broker.id
}
