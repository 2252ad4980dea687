"""``catalog_nearduplicate``: assets flagged as near-duplicates of older ones when they were
embedded; and content managers may delete assets (``delete_asset``), from the Duplicates page.

The role change is kept in sync with :data:`catalog.roles.ROLE_PERMISSIONS` by hand, as
``0005_tagthreshold_roles`` is.
"""

import django.db.models.deletion
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

ROLE = "content_manager"
CODENAMES = ("delete_asset",)


def _permissions(apps):
    # Permissions are normally created after all migrations (post_migrate): create them now
    config = apps.get_app_config("catalog")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.filter(content_type__app_label="catalog", codename__in=CODENAMES)


def grant(apps, schema_editor):
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=ROLE)
    group.permissions.add(*_permissions(apps))


def revoke(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=ROLE).first()
    if group is not None:
        group.permissions.remove(*_permissions(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0009_asset_embedding"),
    ]

    operations = [
        migrations.CreateModel(
            name="NearDuplicate",
            fields=[
                (
                    "asset",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="near_duplicate",
                        serialize=False,
                        to="catalog.asset",
                    ),
                ),
                ("distance", models.FloatField(help_text="cosine distance of the embeddings")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "of",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="near_duplicates",
                        to="catalog.asset",
                    ),
                ),
            ],
        ),
        migrations.RunPython(grant, revoke),
    ]
