data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  partition   = data.aws_partition.current.partition
  account_id  = data.aws_caller_identity.current.account_id
  region      = data.aws_region.current.region
  oidc_issuer = replace(var.oidc_provider_url, "https://", "")

  # Service account => which data buckets it reads and which it reads and writes.
  # Least privilege per workload; the names are the service accounts of infra/k8s.
  s3_access = {
    "catalog"        = { read = [], write = ["originals"] }
    "tagging-worker" = { read = ["originals"], write = [] }
    "imgtag-stage"   = { read = ["originals"], write = ["dvc", "models", "mlflow"] }
    "tfserving"      = { read = ["models"], write = [] }
    "mlflow"         = { read = [], write = ["mlflow"] }
  }

  s3_roles = {
    for sa, access in local.s3_access : sa => {
      all_arns   = [for b in distinct(concat(access.read, access.write)) : var.bucket_arns[b]]
      write_arns = [for b in access.write : var.bucket_arns[b]]
    }
  }

  # Role key => the service account it trusts and the suffix of its name (<prefix>-<suffix>).
  roles = merge(
    {
      for sa in keys(local.s3_access) : sa => {
        namespace = var.namespace
        name      = sa
        suffix    = trimprefix(sa, "imgtag-")
      }
    },
    {
      for k, v in {
        "external-secrets" = {
          namespace = var.external_secrets_service_account.namespace
          name      = var.external_secrets_service_account.name
          suffix    = "external-secrets"
        }
      } : k => v if length(var.secret_arns) + length(var.secret_name_prefixes) > 0
    },
  )

  secret_resources = concat(
    var.secret_arns,
    [for p in var.secret_name_prefixes : "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${p}*"],
  )
  secret_roles = { for k, v in local.roles : k => v if k == "external-secrets" }
}

# --- trust: only <namespace>/<service account> tokens of this cluster, audience sts ---

data "aws_iam_policy_document" "trust" {
  for_each = local.roles

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${each.value.namespace}:${each.value.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "sa" {
  for_each             = local.roles
  name                 = "${var.name_prefix}-${each.value.suffix}"
  description          = "IRSA role of service account ${each.value.namespace}/${each.value.name}"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = merge(var.tags, { "imgtag.io/service-account" = "${each.value.namespace}/${each.value.name}" })
}

# --- S3 access per workload ---

data "aws_iam_policy_document" "s3" {
  for_each = local.s3_roles

  statement {
    sid       = "ListBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = each.value.all_arns
  }

  statement {
    sid       = "ReadObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [for arn in each.value.all_arns : "${arn}/*"]
  }

  dynamic "statement" {
    for_each = length(each.value.write_arns) > 0 ? [1] : []
    content {
      sid       = "WriteObjects"
      actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
      resources = [for arn in each.value.write_arns : "${arn}/*"]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.write_arns) > 0 ? [1] : []
    content {
      sid       = "ListMultipartUploads"
      actions   = ["s3:ListBucketMultipartUploads"]
      resources = each.value.write_arns
    }
  }

  statement {
    sid       = "BucketKey"
    actions   = length(each.value.write_arns) > 0 ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
    resources = [var.bucket_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "s3" {
  for_each = local.s3_roles
  name     = "s3-access"
  role     = aws_iam_role.sa[each.key].id
  policy   = data.aws_iam_policy_document.s3[each.key].json
}

# --- External Secrets: read the database and broker credentials ---

data "aws_iam_policy_document" "secrets" {
  for_each = local.secret_roles

  statement {
    sid       = "ReadSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = local.secret_resources
  }

  dynamic "statement" {
    for_each = length(var.secret_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.secret_kms_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "secrets" {
  for_each = local.secret_roles
  name     = "secrets-read"
  role     = aws_iam_role.sa[each.key].id
  policy   = data.aws_iam_policy_document.secrets[each.key].json
}
