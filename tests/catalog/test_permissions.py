"""Every web page and API call, for every role: who gets in, who is sent to sign in, who gets 403.

| role | may |
|---|---|
| anonymous | nothing: the pages redirect to the sign-in page, the API answers 401 |
| a user without a role | nothing: 403 |
| end_user | read: gallery, asset pages, thumbnails, originals, the API's reads |
| content_manager, superuser | everything: also upload, review, bulk tagging, thresholds (and setting them), deleting near-duplicates |
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from catalog import roles
from catalog.models import Asset, AssetTag, TagThreshold
from core.runtimes import PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION
from tests.catalog.conftest import make_image, make_user, token_client

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Call:
    name: str
    api: bool
    method: str
    path: Callable[[dict], str]
    permission: str
    allowed: int  # the status when permitted
    data: Callable[[dict], dict] | None = None
    json: bool = False

    def __str__(self) -> str:
        return self.name


def red(assets) -> int:
    return assets["red"].pk


CURRENT_MODEL = {"model_name": PRETRAINED_MODEL_NAME, "model_version": PRETRAINED_MODEL_VERSION}
CALLS = [
    # web pages
    Call("gallery", False, "get", lambda a: "/", roles.VIEW, 200),
    Call("search", False, "get", lambda a: "/search/?q=cat", roles.VIEW, 200),
    Call("asset page", False, "get", lambda a: f"/assets/{red(a)}/", roles.VIEW, 200),
    Call("thumbnail", False, "get", lambda a: f"/assets/{red(a)}/thumbnail", roles.VIEW, 200),
    Call("upload page", False, "get", lambda a: "/upload/", roles.UPLOAD, 200),
    Call(
        "review form",
        False,
        "post",
        lambda a: f"/assets/{red(a)}/review/",
        roles.REVIEW,
        302,
        lambda a: {"tag": "animal", "action": "reject"},
    ),
    Call(
        "bulk tag",
        False,
        "post",
        lambda a: "/assets/bulk-tag/",
        roles.REVIEW,
        302,
        lambda a: {"asset": [red(a)], "tag": "holiday"},
    ),
    Call("thresholds", False, "get", lambda a: "/thresholds/?tag=cat", roles.REVIEW, 200),
    Call(
        "threshold count",
        False,
        "get",
        lambda a: "/thresholds/count/?tag=cat&threshold=0.5",
        roles.REVIEW,
        200,
    ),
    Call(
        "apply a threshold",
        False,
        "post",
        lambda a: "/thresholds/apply/",
        roles.CHANGE_THRESHOLD,
        302,
        lambda a: {**CURRENT_MODEL, "tag": "cat", "threshold": "0.3"},
    ),
    Call(
        "reset a threshold",
        False,
        "post",
        lambda a: "/thresholds/reset/",
        roles.CHANGE_THRESHOLD,
        302,
        lambda a: {**CURRENT_MODEL, "tag": "cat"},
    ),
    Call("duplicates page", False, "get", lambda a: "/duplicates/", roles.DELETE, 200),
    Call(
        "delete near-duplicates",
        False,
        "post",
        lambda a: "/duplicates/delete/",
        roles.DELETE,
        302,  # red is in no group: nothing to delete, back to the page
        lambda a: {"group": red(a), "keep": red(a), "confirm": "1"},
    ),
    # the REST API
    Call("api search", True, "get", lambda a: "/api/assets/?q=cat", roles.VIEW, 200),
    Call("api asset", True, "get", lambda a: f"/api/assets/{red(a)}/", roles.VIEW, 200),
    Call("api original", True, "get", lambda a: f"/api/assets/{red(a)}/original", roles.VIEW, 200),
    Call("api similar", True, "get", lambda a: f"/api/assets/{red(a)}/similar/", roles.VIEW, 200),
    Call("api tags", True, "get", lambda a: "/api/tags/", roles.VIEW, 200),
    Call("api schema", True, "get", lambda a: "/api/schema/", roles.VIEW, 200),
    Call("api threshold", True, "get", lambda a: "/api/tags/cat/threshold/", roles.REVIEW, 200),
    Call(
        "api set threshold",
        True,
        "put",
        lambda a: "/api/tags/cat/threshold/",
        roles.CHANGE_THRESHOLD,
        200,
        lambda a: {"threshold": 0.3},
        json=True,
    ),
    Call(
        "api reset threshold",
        True,
        "delete",
        lambda a: "/api/tags/cat/threshold/",
        roles.CHANGE_THRESHOLD,
        200,
    ),
    Call(
        "api upload",
        True,
        "post",
        lambda a: "/api/assets/",
        roles.UPLOAD,
        201,
        lambda a: {"files": [SimpleUploadedFile("new.png", make_image("green", seed=42))]},
    ),
    Call(
        "api review",
        True,
        "post",
        lambda a: f"/api/assets/{red(a)}/review/",
        roles.REVIEW,
        200,
        lambda a: {"tag": "animal", "action": "reject"},
        json=True,
    ),
]
ROLES = ["anonymous", "no role", roles.END_USER, roles.CONTENT_MANAGER, "superuser"]


def client_as(role: str, django_user_model, api: bool):
    if role == "anonymous":
        return APIClient() if api else Client()
    if role == "superuser":
        user = django_user_model.objects.create_superuser("root", password="x")
    else:
        user = make_user(django_user_model, "someone", None if role == "no role" else role)
    if api:
        return token_client(user)
    client = Client()
    client.force_login(user)
    return client


def permitted(role: str, permission: str) -> bool:
    if role in ("anonymous", "no role"):
        return False
    return role == "superuser" or permission in roles.ROLE_PERMISSIONS[role]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("call", CALLS, ids=str)
def test_every_url_for_every_role(call, role, tagged, fake_tagger, django_user_model, tag_map):
    client = client_as(role, django_user_model, call.api)
    before = (
        Asset.objects.count(),
        list(AssetTag.objects.order_by("pk").values_list("review", flat=True)),
        list(TagThreshold.objects.values_list("tag__name", "threshold")),
    )
    kwargs = {}
    if call.data:
        kwargs["data"] = call.data(tagged)
        if call.json:
            kwargs["format"] = "json"
        elif call.api:
            kwargs["format"] = "multipart"
    response = getattr(client, call.method)(call.path(tagged), **kwargs)

    if permitted(role, call.permission):
        assert response.status_code == call.allowed, response.content[:500]
        return
    if role == "anonymous":
        if call.api:
            assert response.status_code == 401
        else:
            assert response.status_code == 302
            assert response["Location"].startswith("/accounts/login/?next=")
    else:
        assert response.status_code == 403
        if call.api:  # JSON (the schema view answers in YAML unless asked for JSON)
            assert call.permission.encode() in response.content
        else:
            assert b'data-testid="forbidden"' in response.content
    after = (
        Asset.objects.count(),
        list(AssetTag.objects.order_by("pk").values_list("review", flat=True)),
        list(TagThreshold.objects.values_list("tag__name", "threshold")),
    )
    assert after == before  # a refused call changes nothing


def test_the_sign_in_page_and_static_files_are_open(client):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'data-testid="login-submit"' in page.content
    css = client.get("/static/catalog/app.css")
    assert css.status_code == 200 and b"--accent" in b"".join(css.streaming_content)
    assert client.get("/static/catalog/upload.js").status_code == 200


def test_the_role_groups_hold_their_permissions():
    groups = roles.ensure_roles()
    held = {
        name: sorted(f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all())
        for name, group in groups.items()
    }
    assert held == {
        "content_manager": [
            "catalog.add_asset",
            "catalog.add_tagthreshold",
            "catalog.change_tagthreshold",
            "catalog.delete_asset",
            "catalog.review_asset",
            "catalog.view_asset",
        ],
        "end_user": ["catalog.view_asset"],
    }


def test_a_users_own_and_group_permissions_are_read_together_in_one_query(
    django_user_model, django_assert_num_queries
):
    from django.contrib.auth.models import Group, Permission

    user = make_user(django_user_model, "both", roles.END_USER)
    user.user_permissions.add(Permission.objects.get(codename="review_asset"))
    Group.objects.create(name="empty").user_set.add(user)
    user = django_user_model.objects.get(pk=user.pk)  # nothing cached yet
    with django_assert_num_queries(1):
        assert user.has_perm(roles.VIEW)  # from the end_user group
        assert user.has_perm(roles.REVIEW)  # granted to the user directly
        assert not user.has_perm(roles.UPLOAD)
        assert user.get_all_permissions() == {roles.VIEW, roles.REVIEW}
    admin = django_user_model.objects.create_superuser("root", password="x" * 12)
    assert admin.has_perm(roles.DELETE) and roles.CHANGE_THRESHOLD in admin.get_all_permissions()
    user.is_active = False
    user.save()
    assert not django_user_model.objects.get(pk=user.pk).has_perm(roles.VIEW)


def test_the_migration_created_the_groups():
    from django.contrib.auth.models import Group

    # pytest-django builds the test database with the migrations, data migrations included
    if not Group.objects.filter(name__in=roles.ROLES).exists():
        pytest.skip("the groups were flushed by an earlier transactional test")
    assert set(Group.objects.filter(name__in=roles.ROLES).values_list("name", flat=True)) == set(roles.ROLES)
    # 0003_roles, 0005_tagthreshold_roles and 0010_near_duplicate keep their own lists: they must add up to the roles
    for group in Group.objects.filter(name__in=roles.ROLES):
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert held == set(roles.ROLE_PERMISSIONS[group.name]), group.name


def test_an_unknown_role_is_refused(django_user_model):
    user = django_user_model.objects.create_user("x")
    with pytest.raises(ValueError, match="use one of content_manager, end_user"):
        roles.assign_role(user, "admin")


def _routes(patterns, prefix=""):
    """``(route, url name)`` of every URL pattern, includes followed."""
    from django.urls import URLPattern, URLResolver

    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name


def test_every_route_is_in_the_permission_table():
    """A new page or API call cannot slip in without its row in CALLS (admin and sign-in aside)."""
    from django.urls import get_resolver, resolve

    routes = {
        name
        for route, name in _routes(get_resolver().url_patterns)
        if not route.startswith(("admin/", "accounts/"))
    }
    sample = {"red": type("A", (), {"pk": 1})()}
    covered = {resolve(call.path(sample).split("?")[0]).url_name for call in CALLS}
    assert routes - covered == set(), f"routes without a permission test: {sorted(routes - covered)}"
