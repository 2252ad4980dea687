"""``imgtag createuser``: a user with a role (content manager by default), a password, a token."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from typer.testing import CliRunner

from catalog import roles
from pipelines.cli import app

pytestmark = pytest.mark.django_db


def createuser(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["createuser", *args], input=stdin)


def test_the_default_role_is_content_manager_and_the_token_is_printed():
    done = createuser("robot")
    assert done.exit_code == 0, done.output
    user = get_user_model().objects.get(username="robot")
    assert done.output.strip().endswith(f"API token: {Token.objects.get(user=user).key}")
    assert "role content_manager" in done.output and "API only" in done.output
    assert user.has_perm(roles.UPLOAD) and user.has_perm(roles.REVIEW) and user.has_perm(roles.VIEW)
    assert not user.has_usable_password()


def test_an_end_user_with_a_password_from_stdin():
    done = createuser("bob", "--role", "end_user", "--password-stdin", stdin="s3cret pass\n")
    assert done.exit_code == 0, done.output
    user = get_user_model().objects.get(username="bob")
    assert user.check_password("s3cret pass") and [g.name for g in user.groups.all()] == ["end_user"]
    assert user.has_perm(roles.VIEW) and not user.has_perm(roles.UPLOAD) and not user.has_perm(roles.REVIEW)


def test_a_superuser_with_a_password():
    done = createuser("root", "--superuser", "--password", "pw-42-lantern")
    assert done.exit_code == 0, done.output
    user = get_user_model().objects.get(username="root")
    assert user.is_superuser and user.check_password("pw-42-lantern") and "superuser" in done.output


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["--role", "admin"], None, "Invalid value for '--role'"),
        (["--password", "a", "--password-stdin"], "b\n", "not both"),
        (["--password-stdin"], "\n", "standard input is empty"),
    ],
)
def test_bad_options_are_refused(args, stdin, message):
    done = createuser("eve", *args, stdin=stdin)
    assert done.exit_code == 2 and message in done.output
    assert not get_user_model().objects.filter(username="eve").exists()


def test_an_existing_user_is_refused():
    assert createuser("twice").exit_code == 0
    again = createuser("twice", "--role", "end_user")
    assert again.exit_code == 2 and "already exists" in again.output
