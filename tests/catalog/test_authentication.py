"""Sign-in and token throttling (django-axes), password rules, the secret key and ``check --deploy``.

Failed sign-ins on ``/accounts/login/`` and ``/admin/login/``, and bad API tokens, are counted
per account and per client address; ``AXES_FAILURE_LIMIT`` (5) of them within
``AXES_COOLOFF_TIME`` (15 minutes) lock the account and the address out: 429 with a page (or,
on the API, a JSON ``detail``) saying when to try again, and ``Retry-After``. Every test runs in
its own database transaction, so the counts start at zero in each.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client, override_settings
from rest_framework.test import APIClient
from typer.testing import CliRunner

from catalog.authentication import ACCOUNT_FAILURE_LIMIT
from pipelines.cli import app
from tests.catalog.conftest import PASSWORD, make_user, token_client

ROOT = Path(__file__).resolve().parents[2]
LIMIT = settings.AXES_FAILURE_LIMIT
ACCOUNT_LIMIT = ACCOUNT_FAILURE_LIMIT
COOL_OFF = int(settings.AXES_COOLOFF_TIME.total_seconds())
ATTACKER, ELSEWHERE = "203.0.113.7", "198.51.100.20"  # documentation addresses (RFC 5737)


def sign_in(client: Client, username: str, password: str, url: str = "/accounts/login/"):
    return client.post(url, {"username": username, "password": password, "next": "/"})


def signed_in(response) -> bool:
    return response.status_code == 302


def assert_locked_page(response) -> None:
    assert response.status_code == 429, response.content[:300]
    text = response.content.decode()
    assert 'data-testid="lockout-message"' in text
    assert "Too many failed sign-ins" in text and "locked for 15 minutes" in text
    assert "Try again after" in text and " UTC" in text
    assert response["Retry-After"] == str(COOL_OFF)


# ---------------------------------------------------------------------------- sign-in pages


@pytest.mark.django_db
def test_wrong_passwords_lock_that_account_from_that_address_for_a_while(django_user_model):
    make_user(django_user_model, "alice", "content_manager")
    make_user(django_user_model, "bob", "end_user")
    attacker = Client(REMOTE_ADDR=ATTACKER)

    answers = [sign_in(attacker, "alice", f"guess-{n}") for n in range(LIMIT)]
    assert [a.status_code for a in answers[:-1]] == [200] * (LIMIT - 1)  # the form says "wrong"
    assert all(b'data-testid="login-error"' in a.content for a in answers[:-1])
    assert_locked_page(answers[-1])

    # locked: the right password is refused from this address
    assert_locked_page(sign_in(attacker, "alice", PASSWORD))
    # a stranger cannot lock alice out of her own network, nor bob out of the stranger's
    assert signed_in(sign_in(Client(REMOTE_ADDR=ELSEWHERE), "alice", PASSWORD))
    assert signed_in(sign_in(Client(REMOTE_ADDR=ATTACKER), "bob", PASSWORD))

    # after the cool-off (counted from the last attempt) alice signs in from there again
    AccessAttempt.objects.update(attempt_time=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=COOL_OFF + 1))
    assert signed_in(sign_in(attacker, "alice", PASSWORD))


@pytest.mark.django_db
def test_slow_distributed_guessing_locks_the_account_everywhere_at_a_higher_limit(django_user_model):
    """Guesses at one account from many addresses, each staying under the pair's limit: the
    account-wide count locks the account at ACCOUNT_FAILURE_LIMIT, from every address."""
    make_user(django_user_model, "alice", "content_manager")
    guesses = 0
    for address in range(ACCOUNT_LIMIT):
        client = Client(REMOTE_ADDR=f"192.0.2.{address + 1}")
        for n in range(min(LIMIT - 1, ACCOUNT_LIMIT - 1 - guesses)):
            assert sign_in(client, "alice", f"guess-{address}-{n}").status_code == 200
            guesses += 1
        if guesses == ACCOUNT_LIMIT - 1:
            break
    home = Client(REMOTE_ADDR=ELSEWHERE)
    assert signed_in(sign_in(home, "alice", PASSWORD))  # one short of the account's limit
    home.logout()
    assert_locked_page(sign_in(Client(REMOTE_ADDR="198.51.100.99"), "alice", "one-guess-too-many"))
    assert_locked_page(sign_in(home, "alice", PASSWORD))  # now everywhere, the right password too
    assert LIMIT < ACCOUNT_LIMIT


@pytest.mark.django_db
def test_failures_below_the_limit_do_not_lock(django_user_model):
    make_user(django_user_model, "alice", "content_manager")
    client = Client(REMOTE_ADDR=ATTACKER)
    for n in range(LIMIT - 1):
        assert sign_in(client, "alice", f"typo-{n}").status_code == 200
    assert signed_in(sign_in(client, "alice", PASSWORD))


@pytest.mark.django_db
def test_one_address_trying_many_accounts_locks_each_pair_not_the_address(django_user_model):
    make_user(django_user_model, "alice", "content_manager")
    client = Client(REMOTE_ADDR=ATTACKER)
    for n in range(LIMIT):
        assert sign_in(client, f"user{n}", "password").status_code == 200  # a different pair each time
    answers = [sign_in(client, "user0", "password") for _ in range(LIMIT)]
    assert answers[-1].status_code == 429  # that pair has had its five
    assert signed_in(sign_in(client, "alice", PASSWORD))  # the address itself is not locked


@pytest.mark.django_db
def test_the_admin_sign_in_is_locked_too(django_user_model):
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    client = Client(REMOTE_ADDR=ATTACKER)
    url = "/admin/login/?next=/admin/"
    answers = [sign_in(client, "root", f"guess-{n}", url) for n in range(LIMIT)]
    assert [a.status_code for a in answers[:-1]] == [200] * (LIMIT - 1)
    assert_locked_page(answers[-1])
    assert 'href="/admin/login/"' in answers[-1].content.decode()
    assert_locked_page(sign_in(client, "root", PASSWORD, url))
    # the pair is locked on the web pages too (one count per account and address)
    assert_locked_page(sign_in(client, "root", PASSWORD))
    assert signed_in(sign_in(Client(REMOTE_ADDR=ELSEWHERE), "root", PASSWORD))


# ---------------------------------------------------------------------------- API tokens


def bad_token_client(address: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    return client


@pytest.mark.django_db
def test_bad_tokens_from_one_address_end_in_429_with_retry_after(user, end_user):
    attacker = bad_token_client(ATTACKER)
    answers = [attacker.get("/api/tags/") for _ in range(LIMIT)]
    assert [a.status_code for a in answers[:-1]] == [401] * (LIMIT - 1)
    locked = answers[-1]
    assert locked.status_code == 429 and locked["Retry-After"] == str(COOL_OFF)
    assert "bad API tokens from this address" in locked.json()["detail"]
    assert f"{COOL_OFF} seconds" in locked.json()["detail"]

    # still locked, whatever the token: a good one from that address learns nothing either
    good_here = token_client(end_user)
    good_here.defaults["REMOTE_ADDR"] = ATTACKER
    again = good_here.get("/api/tags/")
    assert again.status_code == 429 and again["Retry-After"] == str(COOL_OFF)
    assert attacker.post("/api/assets/", {}, format="multipart").status_code == 429

    # a good token from another address works, and so does the session of the web pages
    good = token_client(user)
    good.defaults["REMOTE_ADDR"] = ELSEWHERE
    assert good.get("/api/tags/").status_code == 200
    assert good.get("/api/assets/").status_code == 200
    # the failures are counted per address only (no account): one row, that address
    assert set(AccessAttempt.objects.values_list("username", "ip_address")) == {(None, ATTACKER)}


@pytest.mark.django_db
def test_bad_tokens_and_wrong_passwords_are_counted_apart(user, end_user):
    """Sign-ins count per account and address, tokens per address: a neighbour's mistyped
    passwords do not lock the address's API clients, nor do bad tokens lock its sign-ins."""
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for n in range(LIMIT):
        sign_in(attacker, "nobody", f"guess-{n}")
    good_here = token_client(end_user)
    good_here.defaults["REMOTE_ADDR"] = ATTACKER
    assert good_here.get("/api/tags/").status_code == 200
    assert bad_token_client(ATTACKER).get("/api/tags/").status_code == 401
    for _ in range(LIMIT):
        bad_token_client(ELSEWHERE).get("/api/tags/")
    assert signed_in(sign_in(Client(REMOTE_ADDR=ELSEWHERE), "alice", PASSWORD))


@pytest.mark.django_db
def test_requests_without_a_token_are_not_counted(user):
    anonymous = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(LIMIT + 2):
        assert anonymous.get("/api/tags/").status_code in (401, 403)
    assert not AccessAttempt.objects.exists()


@pytest.mark.django_db
def test_the_address_behind_a_trusted_proxy_is_the_forwarded_one(user, end_user):
    """IMGTAG_NUM_PROXIES=1 (Kubernetes: ingress-nginx in front): the client is the address the
    proxy put last in X-Forwarded-For, so one locked client does not lock everyone behind it."""
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        attacker = bad_token_client("10.1.2.3")  # the ingress pod
        attacker.defaults["HTTP_X_FORWARDED_FOR"] = f"192.0.2.66, {ATTACKER}"  # the first is forged
        codes = [attacker.get("/api/tags/").status_code for _ in range(LIMIT)]
        assert codes[-1] == 429
        good = token_client(end_user)
        good.defaults.update(REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR=ELSEWHERE)
        assert good.get("/api/tags/").status_code == 200
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


@pytest.mark.django_db
def test_without_trusted_proxies_a_forged_forwarded_address_changes_nothing(user):
    codes = []
    for n in range(LIMIT):
        client = bad_token_client(ATTACKER)
        client.defaults["HTTP_X_FORWARDED_FOR"] = f"192.0.2.{n}"  # a new "address" every time
        codes.append(client.get("/api/tags/").status_code)
    assert codes[-1] == 429


# ---------------------------------------------------------------------------- passwords


def createuser(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["createuser", *args], input=stdin)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, args, stdin, message",
    [
        ("weak", ["--password", "1"], None, "This password is too short"),
        ("weak", ["--password", "1"], None, "This password is entirely numeric"),
        ("common", ["--password-stdin"], "password123\n", "This password is too common"),
        ("margaret", ["--password", "margaret1"], None, "too similar to the username"),
        ("root", ["--superuser", "--password", "abc"], None, "at least 8 characters"),
    ],
)
def test_createuser_refuses_a_weak_password_with_the_validators_message(name, args, stdin, message):
    done = createuser(name, *args, stdin=stdin)
    assert done.exit_code == 2, done.output
    assert "password refused" in done.output and message in " ".join(done.output.split())
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username=name).exists()


# ---------------------------------------------------------------------------- secret key, check --deploy


def run_python(code: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    """Python in a clean environment (only what is given), from the repository's root."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "IMGTAG_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "catalog.settings",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_web_server_refuses_to_start_without_a_secret_key(tmp_path):
    done = run_python("import catalog.wsgi", tmp_path)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "IMGTAG_SECRET_KEY is not set" in done.stderr
    assert not (tmp_path / "secret-key").exists()
    # the same with the explicit switch, on any process
    refused = run_python("import django; django.setup()", tmp_path, IMGTAG_REQUIRE_SECRET_KEY="true")
    assert refused.returncode != 0 and "IMGTAG_SECRET_KEY is not set" in refused.stderr


def test_the_web_server_starts_with_a_secret_key_or_in_debug(tmp_path):
    key = "k" * 20 + "-a-test-key-that-is-long-enough-0123456789"
    show = "import catalog.wsgi; from django.conf import settings; print(settings.SECRET_KEY)"
    done = run_python(show, tmp_path, IMGTAG_SECRET_KEY=key)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == key
    debug = run_python(show, tmp_path, IMGTAG_DEBUG="true")
    assert debug.returncode == 0, debug.stderr


@pytest.mark.parametrize(
    "key, problem",
    [
        ("abcde", "5 characters, 5 distinct"),
        ("ab" * 40, "80 characters, 2 distinct"),
        ("django-insecure-" + "q8Wz1" * 10, "'django-insecure-' placeholder"),
    ],
)
def test_a_weak_secret_key_is_refused_with_how_to_make_one(tmp_path, key, problem):
    done = run_python("import catalog.wsgi", tmp_path, IMGTAG_SECRET_KEY=key)
    assert done.returncode != 0
    assert "IMGTAG_SECRET_KEY is too weak" in done.stderr and problem in done.stderr
    assert "at least 50 characters" in done.stderr and "secrets.token_urlsafe(50)" in done.stderr


def test_other_processes_use_a_key_of_this_installation(tmp_path):
    """The CLI, `imgtag serve`, the tests: a random key made once in IMGTAG_HOME (mode 0600),
    the same for every process of the installation; never a key written in the code."""
    show = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    first, second = run_python(show, tmp_path / "one"), run_python(show, tmp_path / "one")
    (tmp_path / "other").mkdir()
    other = run_python(show, tmp_path / "other")
    assert first.returncode == second.returncode == other.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(key) >= 50 and key == second.stdout.strip() != other.stdout.strip()
    stored = tmp_path / "one" / "secret-key"
    assert stored.read_text().strip() == key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert "django-insecure" not in (ROOT / "catalog" / "settings.py").read_text()


def test_check_deploy_is_clean_under_the_production_settings(tmp_path):
    production = {
        "IMGTAG_SECRET_KEY": "a-production-like-secret-key-" + "x7Yq2" * 10,
        "IMGTAG_HTTPS": "true",
        "IMGTAG_NUM_PROXIES": "1",
        "IMGTAG_ALLOWED_HOSTS": "catalog.imgtag.example.com",
    }
    code = (
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['django-admin', 'check', '--deploy', '--fail-level', 'WARNING'])"
    )
    done = run_python(code, tmp_path, **production)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
    # and the warnings it gives over plain HTTP are the four that IMGTAG_HTTPS turns off
    plain = run_python(code, tmp_path, **{k: v for k, v in production.items() if k != "IMGTAG_HTTPS"})
    assert plain.returncode != 0
    said = plain.stderr + plain.stdout
    found = {w for w in ("W004", "W008", "W009", "W012", "W016", "W018") if f"security.{w}" in said}
    assert found == {"W004", "W008", "W012", "W016"}
