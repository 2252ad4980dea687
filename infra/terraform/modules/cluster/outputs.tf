output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 PEM of the cluster CA."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_version" {
  description = "Kubernetes version of the control plane."
  value       = aws_eks_cluster.this.version
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider of the cluster (the Federated principal of IRSA trust policies)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_provider_url" {
  description = "Issuer URL of the cluster's OIDC provider (https://oidc.eks.<region>.amazonaws.com/id/<id>)."
  value       = aws_iam_openid_connect_provider.this.url
}

output "node_security_group_id" {
  description = "The EKS cluster security group, attached to the control plane ENIs and to every managed node: the source the database and broker accept."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "node_role_arn" {
  description = "IAM role of the managed nodes."
  value       = aws_iam_role.node.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting Kubernetes secrets and the control plane logs."
  value       = aws_kms_key.cluster.arn
}

output "node_group_names" {
  description = "Managed node groups by pool (general, and training when enabled)."
  value       = { for k, ng in aws_eks_node_group.this : k => ng.node_group_name }
}
