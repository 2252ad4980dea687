# imgtag dev: a small EKS cluster, EFS, the S3 buckets and the IRSA roles. The dev overlay
# (infra/k8s/overlays/dev) runs PostgreSQL and RabbitMQ inside the cluster, so no RDS or
# Amazon MQ here; envs/prod wires those modules.

module "cluster" {
  source = "../../modules/cluster"

  name                   = var.name
  kubernetes_version     = var.kubernetes_version
  subnet_ids             = var.private_subnet_ids
  endpoint_public_access = var.endpoint_public_access
  public_access_cidrs    = var.public_access_cidrs
  admin_principal_arns   = var.admin_principal_arns
  general_node_group = {
    instance_types = ["m6i.large"]
    capacity_type  = "SPOT"
    min_size       = 1
    desired_size   = 2
    max_size       = 3
  }
  training_node_group = { enabled = false }
  tags                = { "imgtag.io/component" = "cluster" }
}

module "buckets" {
  source = "../../modules/buckets"

  bucket_prefix                      = var.bucket_prefix
  noncurrent_version_expiration_days = 14
  force_destroy                      = true
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

module "workload_identity" {
  source = "../../modules/workload_identity"

  name_prefix        = var.name
  namespace          = "imgtag"
  oidc_provider_arn  = module.cluster.oidc_provider_arn
  oidc_provider_url  = module.cluster.oidc_provider_url
  bucket_arns        = module.buckets.bucket_arns
  bucket_kms_key_arn = module.buckets.kms_key_arn
  tags               = { "imgtag.io/component" = "workload-identity" }
}
