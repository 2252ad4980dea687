"""Catalog users: create one with a role, a password checked as the admin checks it, and an API token.

``imgtag createuser`` calls this; the admin site and the sign-in pages use Django's own forms.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from catalog.roles import assign_role
from core.errors import UsageError


class AccountError(UsageError, ValueError):
    """A user that cannot be created as asked (the name is taken, the password is refused)."""


def check_new_username(username: str) -> None:
    """Refuse a name that is taken, before anyone is asked for a password.

    Raises:
        AccountError: a user with this name exists.
    """
    if get_user_model().objects.filter(username=username).exists():
        raise AccountError(f"user {username!r} already exists")


def create_user(username: str, *, role: str, password: str | None = None, superuser: bool = False) -> str:
    """Create a user with a role (:mod:`catalog.roles`) and an API token; return the token.

    Args:
        password: checked by ``AUTH_PASSWORD_VALIDATORS``, as the admin checks it; None or empty:
            no usable password, so the user has only the API token.
        superuser: every permission, and the admin site.

    Raises:
        AccountError: the name is taken, or the validators refuse the password (the message
            quotes them).
    """
    users = get_user_model()
    check_new_username(username)
    if password:
        try:
            validate_password(password, users(username=username))
        except ValidationError as exc:
            raise AccountError("password refused: " + " ".join(exc.messages)) from None
    create = users.objects.create_superuser if superuser else users.objects.create_user
    with transaction.atomic():
        user = create(username=username, password=password)
        assign_role(user, role)
        token, _ = Token.objects.get_or_create(user=user)
    return token.key
