"""Throttled sign-in: django-axes for the sign-in pages, the admin and bad API tokens.

- **Sign-in pages** (``/accounts/login/``, ``/admin/login/``): axes' authentication backend and
  middleware (``catalog.settings``) record each failed sign-in in axes' tables, which every
  process shares through the database. Failures are counted per (account, client address) pair:
  ``AXES_FAILURE_LIMIT`` (5) within ``AXES_COOLOFF_TIME`` lock that account *from that address*
  for ``AXES_COOLOFF_TIME``, so a stranger guessing elsewhere, or on the same network, cannot
  lock the user out of their own. An account-wide count catches slow, distributed guessing at a
  higher limit, :data:`ACCOUNT_FAILURE_LIMIT` (20) from any addresses, which locks the account
  everywhere. Every attempt while locked starts the cool-off again, and the right password is
  refused meanwhile. The answer is a 429 page saying when to try again (:func:`lockout_response`).
- **API tokens**: DRF's ``TokenAuthentication`` looks tokens up itself and never calls Django's
  ``authenticate()``, so axes does not see a bad token, and DRF's throttles run only after
  authentication has succeeded. :class:`LockoutTokenAuthentication` reports each bad token to
  axes as a failure of its address with no account, counted apart from the sign-ins, and answers
  429 with ``Retry-After`` once the address has had ``AXES_FAILURE_LIMIT`` bad tokens, before
  looking at the token, so a locked address learns nothing.

:class:`LockoutHandler` (``AXES_HANDLER``) is axes' database handler weighing the two counts of a
sign-in against their own limits (axes has one limit for all its counts).

The client address is the one DRF's throttles use (:func:`client_address`): ``REMOTE_ADDR``, or
behind ``IMGTAG_NUM_PROXIES`` trusted proxies the address they put in ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_parameters, get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.contrib.auth.signals import user_login_failed
from django.db import connection
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import BaseThrottle

# How axes is told that a failure is an API token's (there is no account to count it against).
API_TOKEN = "api_token"
TOKEN_CREDENTIALS = {"username": None, API_TOKEN: True}
#: Failed sign-ins of one account from any addresses within the cool-off that lock it everywhere.
ACCOUNT_FAILURE_LIMIT = 20
PAIR = ["username", "ip_address"]


def client_address(request) -> str | None:
    """The client's address (``AXES_CLIENT_IP_CALLABLE``): DRF's, so both agree; it honours
    ``REST_FRAMEWORK["NUM_PROXIES"]`` (``IMGTAG_NUM_PROXIES``). Anything that is not an IP
    address (a forged or garbled ``X-Forwarded-For``) counts as ``REMOTE_ADDR``."""
    address = BaseThrottle().get_ident(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return request.META.get("REMOTE_ADDR") or None


def lockout_parameters(request, credentials: dict | None = None) -> list:
    """What failures are counted by (``AXES_LOCKOUT_PARAMETERS``): for sign-ins the (account,
    address) pair and, separately, the account; for API tokens the address, among the failures
    with no account (a token names none), so sign-ins and tokens never lock each other."""
    if credentials and credentials.get(API_TOKEN):
        return [PAIR]  # username None: this address's bad tokens only
    return [PAIR, "username"]


class LockoutHandler(AxesDatabaseHandler):
    """axes' database handler, with the account-wide count of a sign-in weighed against
    :data:`ACCOUNT_FAILURE_LIMIT` instead of ``AXES_FAILURE_LIMIT``.

    axes locks when its failure count reaches one limit; the count it is given here is the
    larger of the pair's failures and the account's scaled to that limit, so the pair locks at
    ``AXES_FAILURE_LIMIT`` and the account at :data:`ACCOUNT_FAILURE_LIMIT`.
    """

    def get_failures(self, request, credentials: dict | None = None) -> int:
        if credentials and credentials.get(API_TOKEN):
            return _token_failures(request, credentials)
        counts = [
            attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        ]
        if len(counts) < 2:  # an API token: its address alone
            return max(counts, default=0)
        pair, account = counts
        if not get_client_username(request, credentials):  # no account named: the pair is all there is
            return pair
        return max(pair, account * get_failure_limit(request, credentials) // ACCOUNT_FAILURE_LIMIT)


def _token_failures(request, credentials: dict) -> int:
    """The failures counted against an API token's address, as axes' database handler counts
    them (its filter, from axes' own lockout parameters), in SQL of its own: every API request
    with a token asks, and through the ORM the count took about 1 ms of CPU of a search request
    at a million assets, a tenth of it (``tests/bench/bench_scale.py``)."""
    (filters,) = get_client_parameters(
        get_client_username(request, credentials),
        request.axes_ip_address,
        request.axes_user_agent,
        request,
        credentials,
    )
    filters["attempt_time"] = get_cool_off_threshold(request)
    where, params = [], []
    for name, value in filters.items():
        field = AccessAttempt._meta.get_field(name)
        if value is None:
            where.append(f"{field.column} IS NULL")
        else:
            where.append(f"{field.column} {'>=' if name == 'attempt_time' else '='} %s")
            params.append(field.get_db_prep_value(value, connection))
    total = AccessAttempt._meta.get_field("failures_since_start").column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM({total}), 0) FROM {AccessAttempt._meta.db_table} WHERE {' AND '.join(where)}",
            params,
        )
        return int(cursor.fetchone()[0])


def _cool_off(request) -> timedelta:
    return get_cool_off(request) or timedelta(0)


def _minutes(delta: timedelta) -> int:
    return max(1, round(delta.total_seconds() / 60))


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """The sign-in pages' answer while locked out (``AXES_LOCKOUT_CALLABLE``): 429, the page
    ``catalog/locked_out.html`` saying when to try again, and ``Retry-After``."""
    cool_off = _cool_off(request)
    context = {
        "minutes": _minutes(cool_off),
        "retry_at": timezone.now() + cool_off,
        "admin": request.path.startswith("/admin/"),
    }
    response = render(request, "catalog/locked_out.html", context, status=429)
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


class LockoutTokenAuthentication(TokenAuthentication):
    """``TokenAuthentication`` whose failures django-axes counts per client address.

    A bad ``Authorization: Token ...`` is a 401 as before until the address reaches
    ``AXES_FAILURE_LIMIT`` failures (bad tokens and failed sign-ins together) within
    ``AXES_COOLOFF_TIME``; from then on every token from that address, good or bad, is a 429
    with ``Retry-After`` and restarts the cool-off, as a sign-in page does. Requests without a
    token are left to the other authentication classes, untouched.
    """

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        attempt = _attempt(request)
        if not AxesProxyHandler.is_allowed(attempt, TOKEN_CREDENTIALS):
            self._failed(attempt)
            raise self._throttled(attempt)
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            self._failed(attempt)
            if attempt.axes_locked_out:
                raise self._throttled(attempt) from None
            raise

    def _failed(self, attempt: HttpRequest) -> None:
        user_login_failed.send(sender=type(self), credentials=dict(TOKEN_CREDENTIALS), request=attempt)

    @staticmethod
    def _throttled(attempt: HttpRequest) -> Throttled:
        cool_off = _cool_off(attempt)
        return Throttled(
            wait=cool_off.total_seconds(),
            detail=(
                "Too many bad API tokens from this address: tokens from it "
                f"are refused for {_minutes(cool_off)} minutes."
            ),
        )


def _attempt(request) -> HttpRequest:
    """What axes is shown of an API call: its address, headers, path and query string, but not
    its body, which axes would otherwise parse (a whole upload) only to log it."""
    original = request._request
    attempt = HttpRequest()
    attempt.method = original.method
    attempt.path, attempt.path_info = original.path, original.path_info
    attempt.META = original.META
    attempt.GET = original.GET
    return attempt
