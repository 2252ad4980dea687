data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  subnet_ids = var.deployment_mode == "SINGLE_INSTANCE" ? [var.subnet_ids[0]] : var.subnet_ids
  amqps_port = 5671
}

# --- KMS key of the credentials secret ---
# (Amazon MQ for RabbitMQ encrypts its storage with an AWS owned key only.)

resource "aws_kms_key" "broker" {
  description             = "${var.name}: Amazon MQ credentials secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
    ]
  })
  tags = var.tags
}

resource "aws_kms_alias" "broker" {
  name          = "alias/${var.name}-mq"
  target_key_id = aws_kms_key.broker.key_id
}

# --- credentials ---
# Letters and digits only: Amazon MQ rejects , : = and the URL stays valid without escaping.

resource "random_password" "broker" {
  length      = 32
  special     = false
  min_upper   = 4
  min_lower   = 4
  min_numeric = 4
}

resource "aws_secretsmanager_secret" "broker" {
  #checkov:skip=CKV2_AWS_57:Amazon MQ has no managed rotation; rotate by changing the broker user and the secret together (terraform apply -replace=module.broker[0].random_password.broker).
  name                    = var.secret_name
  description             = "Amazon MQ (RabbitMQ) ${var.name}: application user and AMQPS URL (IMGTAG_AMQP_URL)"
  kms_key_id              = aws_kms_key.broker.arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

locals {
  amqps_endpoint = aws_mq_broker.broker.instances[0].endpoints[0]
  amqps_host     = regex("^amqps://([^:/]+)", local.amqps_endpoint)[0]
}

resource "aws_secretsmanager_secret_version" "broker" {
  secret_id = aws_secretsmanager_secret.broker.id
  secret_string = jsonencode({
    username = var.username
    password = random_password.broker.result
    host     = local.amqps_host
    port     = local.amqps_port
    url      = "amqps://${var.username}:${random_password.broker.result}@${local.amqps_host}:${local.amqps_port}/%2F"
  })
}

# --- network: AMQPS and the management console from the cluster nodes only ---

resource "aws_security_group" "broker" {
  name        = "${var.name}-mq"
  description = "Amazon MQ ${var.name}: AMQPS and console from the EKS nodes only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-mq" })
}

resource "aws_vpc_security_group_ingress_rule" "amqps_from_nodes" {
  security_group_id            = aws_security_group.broker.id
  description                  = "AMQPS from the EKS node security group"
  referenced_security_group_id = var.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.amqps_port
  to_port                      = local.amqps_port
  tags                         = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "console_from_nodes" {
  security_group_id            = aws_security_group.broker.id
  description                  = "RabbitMQ management API/console (HTTPS) from the EKS node security group"
  referenced_security_group_id = var.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  tags                         = var.tags
}

# --- the broker ---

resource "aws_mq_broker" "broker" {
  #checkov:skip=CKV_AWS_209:Customer managed KMS keys do not apply to RabbitMQ brokers (Amazon MQ encrypts them with an AWS owned key).
  broker_name                = var.name
  engine_type                = "RabbitMQ"
  engine_version             = var.engine_version
  host_instance_type         = var.host_instance_type
  deployment_mode            = var.deployment_mode
  authentication_strategy    = "simple"
  publicly_accessible        = false
  auto_minor_version_upgrade = true
  apply_immediately          = false
  subnet_ids                 = local.subnet_ids
  security_groups            = [aws_security_group.broker.id]

  encryption_options {
    use_aws_owned_key = true
  }

  logs {
    general = true
  }

  maintenance_window_start_time {
    day_of_week = var.maintenance_window.day_of_week
    time_of_day = var.maintenance_window.time_of_day
    time_zone   = "UTC"
  }

  user {
    username = var.username
    password = random_password.broker.result
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.deployment_mode == "SINGLE_INSTANCE" || length(var.subnet_ids) >= 2
      error_message = "CLUSTER_MULTI_AZ needs subnets in at least two availability zones."
    }
  }
}
