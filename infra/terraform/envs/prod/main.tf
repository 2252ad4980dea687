# imgtag production: EKS (with the EBS and EFS CSI drivers), EFS for the ReadWriteMany volumes,
# S3, RDS PostgreSQL, Amazon MQ (RabbitMQ, optional) and the IRSA roles of the workloads in
# namespace imgtag. The VPC and the state bucket exist beforehand (see ../../README.md).

data "aws_vpc" "this" {
  id = var.vpc_id
}

module "cluster" {
  source = "../../modules/cluster"

  name                   = var.name
  kubernetes_version     = var.kubernetes_version
  subnet_ids             = var.private_subnet_ids
  endpoint_public_access = var.endpoint_public_access
  public_access_cidrs    = var.public_access_cidrs
  admin_principal_arns   = var.admin_principal_arns
  general_node_group     = var.general_node_group
  training_node_group    = var.training_node_group
  tags                   = { "imgtag.io/component" = "cluster" }
}

module "buckets" {
  source = "../../modules/buckets"

  bucket_prefix                      = var.bucket_prefix
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  force_destroy                      = false
  tags                               = { "imgtag.io/component" = "storage" }
}

module "efs" {
  source = "../../modules/efs"

  name                   = var.name
  vpc_id                 = var.vpc_id
  subnet_ids             = var.private_subnet_ids
  node_security_group_id = module.cluster.node_security_group_id
  tags                   = { "imgtag.io/component" = "storage" }
}

module "database" {
  source = "../../modules/database"

  identifier                = var.name
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  node_security_group_id    = module.cluster.node_security_group_id
  instance_class            = var.db_instance_class
  allocated_storage_gib     = var.db_allocated_storage_gib
  max_allocated_storage_gib = var.db_max_allocated_storage_gib
  multi_az                  = var.db_multi_az
  backup_retention_days     = var.db_backup_retention_days
  db_name                   = "imgtag"
  master_username           = "imgtag"
  tags                      = { "imgtag.io/component" = "database" }
}

module "broker" {
  source = "../../modules/broker"
  count  = var.enable_managed_broker ? 1 : 0

  secret_name            = "${var.secret_path}amqp"
  name                   = var.name
  vpc_id                 = var.vpc_id
  subnet_ids             = var.private_subnet_ids
  node_security_group_id = module.cluster.node_security_group_id
  host_instance_type     = var.broker_instance_type
  deployment_mode        = var.broker_deployment_mode
  tags                   = { "imgtag.io/component" = "broker" }
}

module "workload_identity" {
  source = "../../modules/workload_identity"

  name_prefix          = var.name
  namespace            = "imgtag"
  oidc_provider_arn    = module.cluster.oidc_provider_arn
  oidc_provider_url    = module.cluster.oidc_provider_url
  bucket_arns          = module.buckets.bucket_arns
  bucket_kms_key_arn   = module.buckets.kms_key_arn
  secret_arns          = concat([module.database.secret_arn], module.broker[*].secret_arn)
  secret_kms_key_arns  = concat([module.database.kms_key_arn], module.broker[*].kms_key_arn)
  secret_name_prefixes = [var.secret_path]
  tags                 = { "imgtag.io/component" = "workload-identity" }
}
