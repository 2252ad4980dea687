"""The REST API as a client sees it: uploads, search, review, tags, originals, schema, auth.

alice (``client_with_token``) is a content manager; bob (``reader``) an end user, who may read
but not upload or review; ``anonymous`` sends no credentials.
"""

import dataclasses
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from catalog import services
from catalog.models import Asset, AssetTag
from catalog.serializers import AssetSerializer

pytestmark = pytest.mark.django_db

ASSETS = "/api/assets/"


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def post_files(client, files, field="files"):
    return client.post(ASSETS, {field: files}, format="multipart")


def tag_names(asset_json) -> set[str]:
    return {t["name"] for t in asset_json["tags"]}


def test_upload_many_stores_and_tags_each_image(client_with_token, image, fake_tagger, stored_files):
    files = [
        upload("cat.png", image("red", seed=1), "image/png"),
        upload("mug.jpg", image("blue", seed=2, fmt="jpg"), "image/jpeg"),
        upload("dog.png", image("green", seed=3), "image/png"),
    ]
    response = post_files(client_with_token, files)
    assert response.status_code == 201, response.content
    assets = response.json()["assets"]
    assert [(a["filename"], a["format"], a["status"], a["duplicate"]) for a in assets] == [
        ("cat.png", "PNG", "tagged", False),
        ("mug.jpg", "JPEG", "tagged", False),
        ("dog.png", "PNG", "tagged", False),
    ]
    assert tag_names(assets[0]) == {"cat", "egyptian cat", "animal"}
    assert tag_names(assets[1]) == {"cup", "coffee mug", "container"}  # container: implied by cup
    first = assets[0]["tags"][0]
    assert first == {
        **first,
        "name": "animal",
        "score": 0.95,
        "source": "model",
        "review": "suggested",
        "model_version": {"name": "fake-colour", "version": "1"},
    }
    assert (assets[0]["width"], assets[0]["height"]) == (64, 48)
    assert Asset.objects.count() == 3 and len(stored_files()) == 3


def test_uploading_the_same_bytes_again_is_a_duplicate_stored_once(
    client_with_token, image, fake_tagger, stored_files
):
    data = image("red", seed=7)
    first = post_files(client_with_token, [upload("a.png", data)]).json()["assets"][0]
    response = post_files(client_with_token, [upload("again.png", data), upload("b.png", data)])
    assert response.status_code == 201
    again = response.json()["assets"]
    assert [(a["id"], a["duplicate"], a["filename"]) for a in again] == [(first["id"], True, "a.png")] * 2
    assert Asset.objects.count() == 1 and len(stored_files()) == 1
    assert fake_tagger.tagged == ["a.png"]  # tagged once


def test_the_single_file_field_works_too(client_with_token, image, fake_tagger):
    response = post_files(client_with_token, upload("one.png", image("blue")), field="file")
    assert response.status_code == 201
    assert [a["filename"] for a in response.json()["assets"]] == ["one.png"]


def test_an_image_over_the_decode_budget_is_400_naming_it_and_nothing_is_stored(
    client_with_token, settings, fake_tagger, stored_files
):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (200, 100), (10, 20, 30, 128)).save(buffer, "PNG")  # 80,000 bytes decoded
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, max_decode_bytes=79_999)
    response = post_files(client_with_token, [upload("layers.png", buffer.getvalue())])
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["file"], error["reason"]) == ("layers.png", "decode_budget")
    assert "IMGTAG_MAX_DECODE_BYTES" in error["error"]
    assert Asset.objects.count() == 0 and stored_files() == [] and fake_tagger.tagged == []


def test_oversized_and_bad_files_are_all_reported_with_413(client_with_token, image, settings, stored_files):
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, max_upload_bytes=2000)
    big = image("blue", size=(300, 300))
    response = post_files(client_with_token, [upload("notes.txt", b"just some text"), upload("big.png", big)])
    assert response.status_code == 413
    assert [(e["file"], e["reason"]) for e in response.json()["errors"]] == [
        ("notes.txt", "not_an_image"),
        ("big.png", "too_large"),
    ]
    assert Asset.objects.count() == 0 and stored_files() == []


def test_a_non_image_is_400_naming_it_and_nothing_is_stored(
    client_with_token, image, fake_tagger, stored_files
):
    response = post_files(
        client_with_token,
        [
            upload("good.png", image("red")),
            upload("notes.txt", b"these are my notes, not a picture"),
            upload("scan.pdf", b"%PDF-1.7 ..."),
        ],
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["file"], e["reason"]) for e in errors] == [
        ("notes.txt", "not_an_image"),
        ("scan.pdf", "unsupported_format"),
    ]
    assert all(e["file"] in e["error"] for e in errors)
    assert Asset.objects.count() == 0 and stored_files() == [] and fake_tagger.tagged == []


def test_an_image_whose_pixels_cannot_be_decoded_is_stored_as_failed(client_with_token, image, fake_tagger):
    response = post_files(client_with_token, [upload("cut.png", image("red")[:120])])
    assert response.status_code == 201
    [asset] = response.json()["assets"]
    assert asset["status"] == "failed" and "cut.png" in asset["error"] and asset["tags"] == []


def test_an_upload_without_files_says_how_to_send_them(client_with_token):
    response = client_with_token.post(ASSETS, {"note": "hello"}, format="multipart")
    assert response.status_code == 400
    assert (
        response.json()["errors"][0]["reason"] == "no_file"
        and "'files'" in response.json()["errors"][0]["error"]
    )


@pytest.mark.parametrize("credentials", [None, "Token 0123456789abcdef0123456789abcdef01234567"])
def test_writes_need_a_valid_token(credentials, image, user, fake_tagger, stored_files):
    from rest_framework.test import APIClient

    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)
    assert post_files(client, [upload("a.png", image("red"))]).status_code == 401
    assert Asset.objects.count() == 0 and stored_files() == []
    assert client.get(ASSETS).status_code == 401  # reads need a user too


def test_a_logged_in_session_can_write_too(image, user, fake_tagger):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert post_files(client, [upload("a.png", image("red"))]).status_code == 403  # no CSRF token
    client = APIClient()
    client.force_login(user)
    assert post_files(client, [upload("a.png", image("red"))]).status_code == 201


@pytest.fixture
def uploaded(client_with_token, image, fake_tagger):
    """Three tagged assets: a red one (cat), a blue one (coffee mug), a green one (dog)."""
    files = [upload(f"{c}.png", image(c, seed=i)) for i, c in enumerate(["red", "blue", "green"])]
    return {a["filename"][:-4]: a for a in post_files(client_with_token, files).json()["assets"]}


def test_an_end_user_can_read_an_asset_with_its_tags(reader, anonymous, uploaded):
    red = uploaded["red"]
    assert anonymous.get(f"{ASSETS}{red['id']}/").status_code == 401
    response = reader.get(f"{ASSETS}{red['id']}/")
    assert response.status_code == 200
    body = response.json()
    assert body["sha256"] == red["sha256"] and tag_names(body) == {"cat", "egyptian cat", "animal"}
    assert [t["score"] for t in body["tags"]] == sorted((t["score"] for t in body["tags"]), reverse=True)
    assert reader.get(f"{ASSETS}999999/").status_code == 404


def test_search_with_pagination(reader, uploaded):
    response = reader.get(ASSETS, {"q": "animal", "page_size": 1})
    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 2 and page["count_exact"] is True and page["previous"] is None
    assert [a["filename"] for a in page["results"]] == ["green.png"]
    second = reader.get(page["next"]).json()  # a cursor: the page after the last asset seen
    assert [a["filename"] for a in second["results"]] == ["red.png"] and second["next"] is None
    assert [a["filename"] for a in reader.get(second["previous"]).json()["results"]] == ["green.png"]
    assert reader.get(ASSETS).json()["count"] == 3
    everything_but = reader.get(ASSETS, {"q": '-"coffee mug" AND (cat OR dog)'}).json()
    assert {a["filename"] for a in everything_but["results"]} == {"red.png", "green.png"}


@pytest.mark.parametrize("q", ["animal", "cat OR dog", 'animal AND NOT "coffee mug"'])
def test_a_search_reads_its_tags_once(reader, uploaded, q):
    """The kept counts and the search itself need the same tag rows: read once, not twice."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    expected = reader.get(ASSETS, {"q": q}).json()
    with CaptureQueriesContext(connection) as queries:
        page = reader.get(ASSETS, {"q": q}).json()
    assert page == expected and page["count"] == 2
    reads = [query["sql"] for query in queries if re.search(r'FROM "?catalog_tag\b', query["sql"])]
    assert len(reads) == 1, reads


@pytest.mark.parametrize(
    ("q", "pages"),
    [('animal AND NOT "coffee mug"', [["green.png"], ["red.png"]]), ("cat AND NOT animal", [[]])],
)
def test_a_small_result_is_searched_once_then_paged_by_id(reader, uploaded, q, pages):
    """Counting a result of up to 1,000 assets reads all their ids: its pages look those up
    rather than run the search again (which walks the whole catalog when few assets match)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url, params, seen = ASSETS, {"q": q, "page_size": 1}, []
    while url:
        with CaptureQueriesContext(connection) as queries:
            page = reader.get(url, params).json()
        assert page["count"] == sum(map(len, pages)) and page["count_exact"] is True
        assert len([query for query in queries if "EXISTS" in query["sql"]]) == 1, [q["sql"] for q in queries]
        seen.append([a["filename"] for a in page["results"]])
        url, params = page["next"], None
    assert seen == pages


def test_search_filters_by_score_source_and_review(reader, client_with_token, uploaded):
    assert reader.get(ASSETS, {"q": "animal", "min_score": 0.92}).json()["count"] == 1
    assert reader.get(ASSETS, {"q": "animal", "source": "human"}).json()["count"] == 0
    client_with_token.post(
        f"{ASSETS}{uploaded['green']['id']}/review/",
        {"tag": "animal", "action": "accept"},
        format="json",
    )
    accepted = reader.get(ASSETS, {"q": "animal", "review": "accepted"}).json()
    assert [a["filename"] for a in accepted["results"]] == ["green.png"]


@pytest.mark.parametrize(
    "params, field, message",
    [
        (
            {"q": "cat AND"},
            "q",
            "at character 8: expected a tag, NOT, '-' or '(', found the end of the query",
        ),
        ({"q": "(cat"}, "q", "at character 5: expected ')' to close the '(' at character 1"),
        ({"q": "cat", "min_score": 3}, "min_score", "less than or equal to 1"),
        ({"q": "cat", "source": "robot"}, "source", "not a valid choice"),
        ({"q": "cat", "review": "rejected"}, "review", "not a valid choice"),
    ],
)
def test_a_bad_search_is_400_with_the_reason(reader, params, field, message):
    response = reader.get(ASSETS, params)
    assert response.status_code == 400
    assert message in response.json()[field][0]


def test_review_accept_reject_add_then_get_shows_them(client_with_token, reader, uploaded):
    url = f"{ASSETS}{uploaded['red']['id']}/review/"
    for tag, action in [("cat", "accept"), ("Egyptian Cat", "reject"), ("sofa", "add")]:
        response = client_with_token.post(url, {"tag": tag, "action": action}, format="json")
        assert response.status_code == 200, response.content
    tags = {t["name"]: t for t in reader.get(f"{ASSETS}{uploaded['red']['id']}/").json()["tags"]}
    assert (tags["cat"]["review"], tags["cat"]["reviewed_by"], tags["cat"]["source"]) == (
        "accepted",
        "alice",
        "model",
    )
    assert tags["egyptian cat"]["review"] == "rejected"
    assert {k: tags["sofa"][k] for k in ("score", "source", "review", "model_version")} == {
        "score": 1.0,
        "source": "human",
        "review": "accepted",
        "model_version": None,
    }
    assert tags["animal"]["review"] == "suggested"
    assert reader.get(ASSETS, {"q": '"egyptian cat"'}).json()["count"] == 0
    assert reader.get(ASSETS, {"q": "sofa"}).json()["count"] == 1


def test_review_errors(client_with_token, anonymous, uploaded):
    url = f"{ASSETS}{uploaded['red']['id']}/review/"
    missing = client_with_token.post(url, {"tag": "dog", "action": "accept"}, format="json")
    assert missing.status_code == 404 and "use the action 'add'" in missing.json()["detail"]
    assert client_with_token.post(url, {"tag": "cat", "action": "maybe"}, format="json").status_code == 400
    assert client_with_token.post(url, {"tag": "   ", "action": "add"}, format="json").status_code == 400
    assert (
        client_with_token.post(
            f"{ASSETS}999999/review/", {"tag": "cat", "action": "add"}, format="json"
        ).status_code
        == 404
    )
    assert anonymous.post(url, {"tag": "cat", "action": "reject"}, format="json").status_code == 401
    assert AssetTag.objects.get(asset_id=uploaded["red"]["id"], tag__name="cat").review == "suggested"


def test_tags_with_counts_excluding_rejected(client_with_token, reader, uploaded):
    client_with_token.post(
        f"{ASSETS}{uploaded['green']['id']}/review/",
        {"tag": "animal", "action": "reject"},
        format="json",
    )
    response = reader.get("/api/tags/")
    assert response.status_code == 200
    counts = {t["name"]: t["asset_count"] for t in response.json()["results"]}
    assert counts == {
        "animal": 1,
        "cat": 1,
        "egyptian cat": 1,
        "cup": 1,
        "coffee mug": 1,
        "container": 1,
        "dog": 1,
    }
    tags = {t["name"]: t for t in response.json()["results"]}
    assert tags["egyptian cat"]["parents"] == ["cat"] and tags["cat"]["parents"] == ["animal"]
    prefixed = reader.get("/api/tags/", {"prefix": "C"}).json()["results"]
    assert sorted(t["name"] for t in prefixed) == ["cat", "coffee mug", "container", "cup"]


def test_the_original_downloads_with_its_content_type(reader, client_with_token, image, fake_tagger):
    data = image("blue", fmt="jpg")
    asset = post_files(client_with_token, [upload("mug.jpg", data)]).json()["assets"][0]
    assert asset["original"].endswith(f"/api/assets/{asset['id']}/original")
    response = reader.get(f"{ASSETS}{asset['id']}/original", HTTP_ACCEPT="image/*")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert 'filename="mug.jpg"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == data
    assert reader.get(f"{ASSETS}999999/original").status_code == 404


def test_a_tags_threshold_for_the_current_model(client_with_token, reader, tag_map):
    url = "/api/tags/animal/threshold/"
    model = {"model_name": "efficientnet-lite0-imagenet", "model_version": "pretrained"}
    assert client_with_token.get(url).json() == {
        "tag": "animal",
        **model,
        "threshold": 0.5,
        "default": 0.5,
        "off": False,
        "override": None,
    }
    answer = client_with_token.put(url, {"threshold": 0.3, **model}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["threshold"], body["default"], body["override"]["threshold"]) == (0.3, 0.5, 0.3)
    assert body["override"]["updated_by"] == "alice"
    assert client_with_token.put(url, {"threshold": 0.4}, format="json").json()["threshold"] == 0.4
    stale = client_with_token.put(url, {"threshold": 0.2, "model_version": "7"}, format="json")
    assert stale.status_code == 409 and stale.json()["reason"] == "not_the_current_model"
    for bad in (0, 1.5, "abc"):
        assert client_with_token.put(url, {"threshold": bad}, format="json").status_code == 400
    assert client_with_token.put("/api/tags/no such tag/threshold/", {"threshold": 0.3}).status_code == 404
    refused = reader.put(url, {"threshold": 0.9}, format="json")
    assert refused.status_code == 403 and refused.json()["permission"] == "catalog.change_tagthreshold"
    assert reader.delete(url).status_code == 403
    assert client_with_token.get(url).json()["threshold"] == 0.4
    reset = client_with_token.delete(url)
    assert (reset.status_code, reset.json()["threshold"], reset.json()["override"]) == (200, 0.5, None)


def test_the_openapi_schema_documents_every_endpoint(reader):
    response = reader.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/assets/",
        "/api/assets/{id}/",
        "/api/assets/{id}/review/",
        "/api/assets/{id}/original",
        "/api/tags/",
        "/api/tags/{name}/threshold/",
    } <= set(schema["paths"])
    upload_op = schema["paths"]["/api/assets/"]["post"]
    assert {"201", "400", "401", "403", "413"} <= set(upload_op["responses"])
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    search_params = {p["name"] for p in schema["paths"]["/api/assets/"]["get"]["parameters"]}
    assert {"q", "min_score", "source", "review", "cursor", "page_size"} <= search_params
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_uploading_an_asset_left_pending_tags_it(client_with_token, image, fake_tagger):
    from catalog import services

    data = image("blue", seed=11)
    pending, _ = services.ingest(data, "imported.png")  # stored, never tagged (e.g. a crash)
    [asset] = post_files(client_with_token, [upload("again.png", data)]).json()["assets"]
    assert (asset["id"], asset["duplicate"], asset["status"]) == (pending.pk, True, "tagged")
    assert tag_names(asset) == {"cup", "coffee mug", "container"}


def test_an_end_user_may_not_upload_403_with_the_reason(reader, image, fake_tagger, stored_files):
    response = post_files(reader, [upload("a.png", image("red"))])
    assert response.status_code == 403
    body = response.json()
    assert (body["reason"], body["permission"]) == ("forbidden", "catalog.add_asset")
    assert "bob may not upload images" in body["detail"] and "content_manager" in body["detail"]
    assert Asset.objects.count() == 0 and stored_files() == [] and fake_tagger.tagged == []


def test_an_end_user_may_not_review_403_with_the_reason(reader, uploaded):
    url = f"{ASSETS}{uploaded['red']['id']}/review/"
    for action in ("accept", "reject", "add"):
        response = reader.post(url, {"tag": "cat", "action": action}, format="json")
        assert response.status_code == 403
        assert response.json()["permission"] == "catalog.review_asset"
    assert AssetTag.objects.get(asset_id=uploaded["red"]["id"], tag__name="cat").review == "suggested"
    assert not AssetTag.objects.filter(source="human").exists()


def test_a_user_without_a_role_may_read_nothing(client_for, uploaded):
    nobody = client_for("carol", None)
    response = nobody.get(ASSETS)
    assert response.status_code == 403 and response.json()["permission"] == "catalog.view_asset"
    assert nobody.get(f"{ASSETS}{uploaded['red']['id']}/").status_code == 403


def test_a_superuser_may_do_everything_without_a_role(client_for, image, fake_tagger):
    root = client_for("root", "superuser")
    [asset] = post_files(root, [upload("a.png", image("red"))]).json()["assets"]
    review = root.post(f"{ASSETS}{asset['id']}/review/", {"tag": "cat", "action": "accept"}, format="json")
    assert review.status_code == 200 and root.get(ASSETS).json()["count"] == 1


def test_the_api_shows_the_review_state_people_see(client_with_token, reader, uploaded):
    url = f"{ASSETS}{uploaded['red']['id']}/review/"
    for tag, action in [("cat", "accept"), ("animal", "reject"), ("sofa", "add")]:
        client_with_token.post(url, {"tag": tag, "action": action}, format="json")
    tags = {t["name"]: t["state"] for t in reader.get(f"{ASSETS}{uploaded['red']['id']}/").json()["tags"]}
    assert tags == {"cat": "accepted", "animal": "rejected", "sofa": "added", "egyptian cat": "suggested"}


def test_the_search_answers_each_asset_as_the_asset_serializer_does(reader, tagged):
    """The search list builds its tags from plain rows (catalog.serializers.asset_list_data);
    every field of every tag kind (suggested, accepted, added by a person, rejected with its
    reviewer, two model versions) equals what AssetSerializer, the API's one definition, gives."""
    listed = reader.get(ASSETS, {"page_size": 500}).json()["results"]
    context = {"request": Request(APIRequestFactory().get(ASSETS))}
    assets = services.with_tags(Asset.objects.order_by("-id"))
    expected = json.loads(JSONRenderer().render(AssetSerializer(assets, many=True, context=context).data))
    assert listed == expected
    states = {tag["state"] for asset in listed for tag in asset["tags"]}
    assert states == {"suggested", "accepted", "added", "rejected"}
    assert {tag["reviewed_by"] for asset in listed for tag in asset["tags"]} == {None, "alice"}
