"""Content managers may set tag thresholds: ``add_tagthreshold`` and ``change_tagthreshold``.

Kept in sync with :data:`catalog.roles.ROLE_PERMISSIONS` by hand, as ``0003_roles`` is: a
migration must not change when that module does. Adds to the group (creating it when a
database lost it) and leaves its other permissions as they are.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE = "content_manager"
CODENAMES = ("add_tagthreshold", "change_tagthreshold")


def _permissions(apps):
    # Permissions are normally created after all migrations (post_migrate); create the
    # catalog's now (the new model's included) so the group can hold them.
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
        ("catalog", "0004_tagthreshold"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
