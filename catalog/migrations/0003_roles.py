"""The two roles as groups: content_manager (view, add, review assets) and end_user (view).

Kept in sync with :data:`catalog.roles.ROLE_PERMISSIONS` by hand: a migration must not change
when that module does.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "content_manager": ("view_asset", "add_asset", "review_asset"),
    "end_user": ("view_asset",),
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); create the
    # catalog's now so the groups can hold them.
    config = apps.get_app_config("catalog")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="catalog", codename__in=codenames)
        )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_asset_review_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
