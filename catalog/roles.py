"""Who may do what: two roles, kept as Django groups, over permissions on assets and thresholds.

| role | may | permissions |
|---|---|---|
| ``content_manager`` | upload, review tags, tune thresholds, and everything an end user may | ``catalog.add_asset``, ``catalog.review_asset``, ``catalog.view_asset``, ``catalog.add_tagthreshold``, ``catalog.change_tagthreshold`` |
| ``end_user`` | search, view and download | ``catalog.view_asset`` |

Superusers hold every permission. The groups are created by the migrations ``0003_roles``
and ``0005_tagthreshold_roles``; :func:`ensure_roles` creates them again where they are
missing (a database flushed by the tests, one restored without them), so :func:`assign_role`
always works.
"""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction

VIEW = "catalog.view_asset"
UPLOAD = "catalog.add_asset"
REVIEW = "catalog.review_asset"
ADD_THRESHOLD = "catalog.add_tagthreshold"
CHANGE_THRESHOLD = "catalog.change_tagthreshold"  # apply or reset a tag's threshold
DELETE = "catalog.delete_asset"  # delete near-duplicates on the Duplicates page

CONTENT_MANAGER = "content_manager"
END_USER = "end_user"
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    CONTENT_MANAGER: (VIEW, UPLOAD, REVIEW, ADD_THRESHOLD, CHANGE_THRESHOLD, DELETE),
    END_USER: (VIEW,),
}
ROLES = tuple(ROLE_PERMISSIONS)


def ensure_roles() -> dict[str, Group]:
    """The role groups with exactly their permissions, created or repaired as needed.

    Returns:
        ``{role name: group}``.
    """
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    codenames = {perm.split(".", 1)[1] for perms in ROLE_PERMISSIONS.values() for perm in perms}
    found = {
        p.codename: p
        for p in Permission.objects.filter(content_type__app_label="catalog", codename__in=codenames)
    }
    if len(found) < len(codenames):  # after a flush, before post_migrate recreated them
        create_permissions(apps.get_app_config("catalog"), verbosity=0)
        found = {
            p.codename: p
            for p in Permission.objects.filter(content_type__app_label="catalog", codename__in=codenames)
        }
    groups = {}
    with transaction.atomic():
        for role, perms in ROLE_PERMISSIONS.items():
            group, _ = Group.objects.get_or_create(name=role)
            wanted = {found[perm.split(".", 1)[1]] for perm in perms}
            if set(group.permissions.all()) != wanted:
                group.permissions.set(wanted)
            groups[role] = group
    return groups


def assign_role(user, role: str) -> None:
    """Put ``user`` in the group of ``role`` (other role groups are left as they are).

    Raises:
        ValueError: an unknown role.
    """
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    user.groups.add(ensure_roles()[role])
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)


class PermissionBackend(ModelBackend):
    """Django's ``ModelBackend`` (sign-in, ``has_perm``), reading a user's own permissions and
    their groups' together in one query: ``ModelBackend`` reads them in two, which every API
    request paid as two of its round trips to the database. Kept for the request on the user
    object, as Django keeps them (``_perm_cache``)."""

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                pairs = Permission.objects.values_list("content_type__app_label", "codename")
            else:
                with connection.cursor() as cursor:
                    cursor.execute(_held_sql(), [user_obj.pk, user_obj.pk])
                    pairs = cursor.fetchall()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in pairs}
        return user_obj._perm_cache


@functools.cache
def _held_sql() -> str:
    """A user's own permissions and their groups' as ``(app label, codename)``: the query of
    Django's ``ModelBackend`` in one statement, its tables and columns taken from Django's
    models. Every API request reads it; built by the ORM it cost 0.4 ms of CPU a request, about
    five times what it costs as SQL (``tests/bench/bench_scale.py``, a search request's CPU)."""
    user = get_user_model()
    own, member, granted = user.user_permissions.field, user.groups.field, Group.permissions.field
    permission, content_type = Permission._meta, ContentType._meta
    return f"""
SELECT content_type.app_label, permission.codename
FROM {permission.db_table} AS permission
JOIN {content_type.db_table} AS content_type
  ON content_type.{content_type.pk.column} = permission.{permission.get_field("content_type").column}
WHERE permission.{permission.pk.column} IN (
    SELECT {own.m2m_reverse_name()} FROM {own.m2m_db_table()} WHERE {own.m2m_column_name()} = %s
    UNION ALL
    SELECT granted.{granted.m2m_reverse_name()} FROM {granted.m2m_db_table()} AS granted
    JOIN {member.m2m_db_table()} AS member
      ON member.{member.m2m_reverse_name()} = granted.{granted.m2m_column_name()}
    WHERE member.{member.m2m_column_name()} = %s
)"""


def capabilities(user) -> dict[str, bool]:
    """What the pages offer ``user``: ``view``, ``upload``, ``review``, ``thresholds`` (setting
    them), ``duplicates`` (deleting near-duplicates); for templates."""
    return {
        "view": user.has_perm(VIEW),
        "upload": user.has_perm(UPLOAD),
        "review": user.has_perm(REVIEW),
        "thresholds": user.has_perm(CHANGE_THRESHOLD),
        "duplicates": user.has_perm(DELETE),
    }
