"""The API's permission check (its own module: DRF imports it with its settings).

Every API view names the permission each HTTP method needs in ``required_permissions``
(``{"GET": roles.VIEW, "POST": roles.UPLOAD}``); a method it does not name is refused. Reads
default to ``catalog.view_asset``. Anonymous requests get 401; a signed-in user without the
permission gets 403 with a JSON body that says which permission (and role) is missing.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from catalog import roles

WHAT = {
    roles.VIEW: "search and view assets",
    roles.UPLOAD: "upload images",
    roles.REVIEW: "review tags",
    roles.CHANGE_THRESHOLD: "set tag thresholds",
}
ROLE_FOR = {
    roles.VIEW: f"{roles.END_USER} or {roles.CONTENT_MANAGER}",
    roles.UPLOAD: roles.CONTENT_MANAGER,
    roles.REVIEW: roles.CONTENT_MANAGER,
    roles.CHANGE_THRESHOLD: roles.CONTENT_MANAGER,
}


def required_permission(view, method: str) -> str | None:
    """The permission ``view`` needs for ``method``; None when the method is not allowed at all."""
    declared = getattr(view, "required_permissions", None) or {}
    if method in declared:
        return declared[method]
    if method in SAFE_METHODS:
        return declared.get("GET", roles.VIEW)
    return None


class HasCatalogPermission(BasePermission):
    """Signed in (token or session) and holding the permission the view names for the method."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401 (NotAuthenticated) for an anonymous request
        permission = required_permission(view, request.method)
        if permission is None:
            self.message = {"detail": f"{request.method} is not allowed here", "reason": "forbidden"}
            return False
        if request.user.has_perm(permission):
            return True
        self.message = {
            "detail": (
                f"{request.user.get_username()} may not {WHAT.get(permission, permission)}: "
                f"that needs the permission {permission} (role {ROLE_FOR.get(permission, 'superuser')})"
            ),
            "reason": "forbidden",
            "permission": permission,
        }
        return False
