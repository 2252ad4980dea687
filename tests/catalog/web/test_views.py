"""The web pages as a browser receives them: sign-in, gallery and search, asset page, review,
bulk tagging, upload page, thresholds; and that web reviews are what ``imgtag ingest`` reads."""

import datetime as dt
from urllib.parse import quote

import pytest
from django.test import Client

from catalog import services, thumbnails
from catalog.models import AssetTag, TagThreshold
from core.runtimes import PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION
from tests.catalog.conftest import PASSWORD
from tests.catalog.htmlquery import parse

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(user) -> Client:
    """alice's browser: a content manager, signed in."""
    client = Client()
    client.force_login(user)
    return client


def page(client, url, status=200, **params):
    response = client.get(url, params)
    assert response.status_code == status, response.content[:1000]
    return parse(response.content)


# ---------------------------------------------------------------------------- sign-in


def test_sign_in_shows_the_user_and_sign_out_needs_a_post(user):
    client = Client(enforce_csrf_checks=True)
    form = page(client, "/accounts/login/")
    token = form.find("input", name="csrfmiddlewaretoken").get("value")
    wrong = client.post(
        "/accounts/login/", {"username": "alice", "password": "nope", "csrfmiddlewaretoken": token}
    )
    assert wrong.status_code == 200 and b'data-testid="login-error"' in wrong.content
    signed_in = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token, "next": ""},
    )
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/")
    home = page(client, "/")
    assert home.find(testid="current-user").text == "alice"
    logout = home.find("button", testid="logout")
    assert logout.get("type") == "submit"
    assert client.get("/accounts/logout/").status_code == 405
    token = home.find("meta", name="csrf-token").get("content")
    assert client.post("/accounts/logout/").status_code == 403  # CSRF on every form
    out = client.post("/accounts/logout/", {"csrfmiddlewaretoken": token})
    assert (out.status_code, out["Location"]) == (302, "/accounts/login/")
    assert client.get("/")["Location"] == "/accounts/login/?next=/"


def test_the_sign_in_page_goes_back_where_the_visitor_wanted(user):
    client = Client()
    assert client.get("/upload/")["Location"] == "/accounts/login/?next=/upload/"
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD, "next": "/upload/"}
    )
    assert response["Location"] == "/upload/"


def nav(html) -> list[str]:
    return [e.get("data-testid") for e in html.iter() if (e.get("data-testid") or "").startswith("nav-")]


def test_the_navigation_follows_the_role(manager, viewer):
    mine = page(manager, "/")
    assert nav(mine) == ["nav-gallery", "nav-upload", "nav-thresholds", "nav-duplicates"]
    assert nav(page(manager, "/upload/")) == nav(mine)
    theirs = page(viewer, "/")
    assert nav(theirs) == ["nav-gallery"]
    assert theirs.find(testid="current-user").text == "bob"


def test_a_forbidden_page_says_so(viewer):
    forbidden = page(viewer, "/upload/", status=403)
    assert "bob may not open this page" in forbidden.find(testid="forbidden").text
    assert forbidden.find_all(testid="file-input") == []


# ---------------------------------------------------------------------------- gallery


def cards(html):
    return {int(card.get("data-asset-id")): card for card in html.find_all(testid="asset-card")}


def test_the_gallery_shows_cards_with_tag_chips_and_scores(viewer, tagged):
    html = page(viewer, "/")
    assert html.find(testid="result-count").text == "3 assets"
    shown = cards(html)
    assert list(shown) == [tagged["green"].pk, tagged["blue"].pk, tagged["red"].pk]  # newest first
    red = shown[tagged["red"].pk]
    chips = [(chip.get("data-tag"), chip.text) for chip in red.find_all(testid="tag-chip")]
    assert chips == [("sofa", "sofa 1.00"), ("animal", "animal 0.95"), ("cat", "cat 0.93")]  # no rejected one
    thumb = red.find("img")
    assert thumb.get("src") == f"/assets/{tagged['red'].pk}/thumbnail"
    assert {a.get("href") for a in red.find_all("a")} == {f"/assets/{tagged['red'].pk}/"}
    # end users get no bulk tagging
    assert html.find_all(testid="select-asset") == [] and html.find_all(testid="bulk-tag-input") == []
    assert page(viewer, "/search/").find(testid="result-count").text == "3 assets"


def test_search_with_the_query_language(viewer, tagged):
    html = page(viewer, "/search/", q='animal AND NOT "coffee mug"')
    assert set(cards(html)) == {tagged["red"].pk, tagged["green"].pk}
    assert html.find("input", name="q").get("value") == 'animal AND NOT "coffee mug"'
    strict = page(viewer, "/", q="animal", min_score="0.92")
    assert set(cards(strict)) == {tagged["red"].pk}
    assert strict.find("input", name="min_score").get("value") == "0.92"


def test_a_small_result_is_searched_once_and_its_page_looked_up_by_id(viewer, tagged):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for q, expected in (('animal AND NOT "coffee mug"', {"red", "green"}), ("cat AND NOT animal", set())):
        with CaptureQueriesContext(connection) as queries:
            html = page(viewer, "/search/", q=q)
        assert set(cards(html)) == {tagged[name].pk for name in expected}
        assert len([query for query in queries if "EXISTS" in query["sql"]]) == 1, q


@pytest.mark.parametrize(
    "params, message",
    [
        ({"q": "cat AND"}, "at character 8: expected a tag, NOT, '-' or '(', found the end of the query"),
        ({"q": "(cat"}, "expected ')' to close the '(' at character 1"),
        ({"q": "cat", "min_score": "2"}, "min_score must be between 0 and 1, got 2"),
        ({"source": "robot"}, "source must be one of model, human, got 'robot'"),
    ],
)
def test_a_bad_search_shows_the_reason(viewer, tagged, params, message):
    html = page(viewer, "/", status=400, **params)
    assert message in html.find(testid="query-error").text
    assert html.find(testid="result-count").text == "0 assets" and cards(html) == {}


def facet_values(html, facet):
    section = html.find(testid="facet", facet=facet)
    return {
        link.get("data-value"): (int(link.find(testid="facet-count").text), link.get("href"))
        for link in section.find_all(testid="facet-value")
    }


def test_facets_count_the_result_and_each_link_adds_its_filter(viewer, tagged):
    html = page(viewer, "/", q="animal OR cup")
    month = tagged["red"].created_at.astimezone(dt.UTC).strftime("%Y-%m")
    assert {
        facet: {v: c for v, (c, _) in facet_values(html, facet).items()} for facet in ("source", "review")
    } == {
        "source": {"model": 3, "human": 1},
        "review": {"suggested": 3, "accepted": 1, "added": 1, "rejected": 1},
    }
    assert facet_values(html, "tag")["animal"][0] == 2
    assert facet_values(html, "model") == {
        "net:1": (2, "?q=animal+OR+cup&model=net%3A1"),
        "net:2": (1, "?q=animal+OR+cup&model=net%3A2"),
    }
    assert facet_values(html, "date")[month][0] == 3
    for facet in ("tag", "source", "review", "model", "date"):
        for value, (count, href) in facet_values(html, facet).items():
            after = page(viewer, f"/{href}")
            assert after.find(testid="result-count").text == f"{count} assets", (facet, value)
    # an active value's link takes the filter away again
    narrowed = page(viewer, "/", q="animal OR cup", review="added")
    assert narrowed.find(testid="result-count").text == "1 assets"
    assert facet_values(narrowed, "review")["added"][1] == "?q=animal+OR+cup"
    assert narrowed.find(testid="active-filter", facet="review").get("href") == "?q=animal+OR+cup"


def test_the_gallery_pages_by_24(viewer, image):
    for seed in range(30):
        services.ingest(image("red", seed=100 + seed), f"{seed}.png")
    first = page(viewer, "/")
    assert first.find(testid="result-count").text == "30 assets" and len(cards(first)) == 24
    assert first.find_all(testid="page-prev") == []
    second = page(viewer, "/" + first.find(testid="page-next").get("href"))
    assert len(cards(second)) == 6 and second.find_all(testid="page-next") == []
    assert set(cards(first)).isdisjoint(cards(second))
    back = page(viewer, "/" + second.find(testid="page-prev").get("href"))
    assert list(cards(back)) == list(cards(first)) and back.find_all(testid="page-prev") == []
    assert back.find(testid="page-next").get("href") == first.find(testid="page-next").get("href")
    # the filters ride along; a page starts after the last asset seen, so a new upload does not
    # shift it
    filtered = page(viewer, "/", q="", min_score="0.5")
    services.ingest(image("red", seed=999), "new.png")
    after = page(viewer, "/" + filtered.find(testid="page-next").get("href"))
    assert filtered.find(testid="page-next").get("href").startswith("?min_score=0.5&after=")
    assert list(cards(after)) == list(cards(second)) and after.find(testid="page-prev").get(
        "href"
    ).startswith("?min_score=0.5&before=")


def test_bulk_add_tag_for_content_managers(manager, viewer, tagged):
    html = page(manager, "/", q="animal")
    boxes = html.find_all(testid="select-asset")
    assert {int(b.get("value")) for b in boxes} == {tagged["red"].pk, tagged["green"].pk}
    assert all(b.get("form") == "bulk-form" and b.get("name") == "asset" for b in boxes)
    form = html.find("form", id="bulk-form")
    assert form.get("method") == "post" and form.find(testid="bulk-tag-input").get("name") == "tag"
    assert form.find("input", name="next").get("value") == "/?q=animal"
    response = manager.post(
        "/assets/bulk-tag/",
        {"asset": [tagged["green"].pk, tagged["blue"].pk], "tag": " Holiday  2025 ", "next": "/?q=animal"},
    )
    assert (response.status_code, response["Location"]) == (302, "/?q=animal")
    rows = AssetTag.objects.filter(tag__name="holiday 2025")
    assert {(r.asset_id, r.source, r.review, r.reviewed_by.username) for r in rows} == {
        (tagged["green"].pk, "human", "accepted", "alice"),
        (tagged["blue"].pk, "human", "accepted", "alice"),
    }
    after = parse(manager.get("/?q=animal").content)
    assert "added the tag 'holiday 2025' to 2 assets" in after.find(testid="message").text
    assert viewer.post("/assets/bulk-tag/", {"asset": [tagged["red"].pk], "tag": "x"}).status_code == 403


def test_bulk_tag_refuses_nothing_selected_and_foreign_redirects(manager, tagged):
    empty = manager.post("/assets/bulk-tag/", {"tag": "x", "next": "https://evil.example/"})
    assert empty["Location"] == "/"
    assert "tick the assets to tag first" in parse(manager.get("/").content).find(testid="message").text
    assert not AssetTag.objects.filter(tag__name="x").exists()


# ---------------------------------------------------------------------------- asset page


def rows_of(html):
    return {row.get("data-tag"): row for row in html.find_all(testid="tag-row")}


def test_the_asset_page_shows_the_original_metadata_and_every_tag(viewer, tagged):
    red = tagged["red"]
    html = page(viewer, f"/assets/{red.pk}/")
    assert html.find("img", testid="original").get("src") == f"/api/assets/{red.pk}/original"
    assert html.find(testid="download").get("href") == f"/api/assets/{red.pk}/original"
    meta = html.find(testid="metadata").text
    for value in (red.filename, red.sha256, "PNG", "64 × 48 px", f"{red.size} bytes", "tagged"):
        assert value in meta
    rows = rows_of(html)
    table = {
        name: tuple(row.find(testid=t).text for t in ("tag-score", "tag-source", "tag-model", "review-state"))
        for name, row in rows.items()
    }
    assert table == {
        "sofa": ("1.00", "human", "—", "added"),
        "animal": ("0.95", "model", "net:1", "suggested"),
        "cat": ("0.93", "model", "net:1", "accepted"),
        "egyptian cat": ("0.81", "model", "net:1", "rejected"),  # rejected rows last
    }
    assert list(rows) == ["sofa", "animal", "cat", "egyptian cat"]
    # an end user sees no review controls
    for control in ("accept", "reject", "add-tag-input", "add-tag-submit"):
        assert html.find_all(testid=control) == []


def test_content_managers_get_review_controls_and_shortcuts(manager, tagged):
    html = page(manager, f"/assets/{tagged['red'].pk}/")
    for row in html.find_all(testid="tag-row"):
        assert row.find("button", testid="accept").get("value") == "accept"
        assert row.find("button", testid="reject").get("value") == "reject"
    assert html.find("input", testid="add-tag-input").get("name") == "tag"
    assert html.find(testid="add-tag-submit") is not None
    assert html.find(id="asset").get("data-review-api") == f"/api/assets/{tagged['red'].pk}/review/"
    assert "j" in html.find(testid="shortcut-help").text
    assert any("asset.js" in (s.get("src") or "") for s in html.find_all("script"))


def test_a_tiff_is_shown_through_a_preview(viewer, image):
    import cv2
    import numpy as np

    _, tiff = cv2.imencode(".tiff", cv2.imdecode(np.frombuffer(image("blue"), np.uint8), cv2.IMREAD_COLOR))
    asset, _ = services.ingest(tiff.tobytes(), "scan.tiff")
    html = page(viewer, f"/assets/{asset.pk}/")
    assert html.find("img", testid="original").get("src") == f"/assets/{asset.pk}/thumbnail?size=1024"
    preview = viewer.get(f"/assets/{asset.pk}/thumbnail", {"size": 1024})
    assert preview.status_code == 200 and preview["Content-Type"] == "image/jpeg"


def test_reviewing_with_the_plain_form(manager, viewer, tagged):
    red = tagged["red"]
    url = f"/assets/{red.pk}/review/"
    assert viewer.post(url, {"tag": "animal", "action": "reject"}).status_code == 403
    response = manager.post(url, {"tag": "animal", "action": "reject"})
    assert (response.status_code, response["Location"]) == (302, f"/assets/{red.pk}/")
    assert (
        rows_of(page(manager, f"/assets/{red.pk}/"))["animal"].find(testid="review-state").text == "rejected"
    )
    manager.post(url, {"tag": "dog", "action": "accept"})
    assert "has no tag 'dog'" in parse(manager.get(f"/assets/{red.pk}/").content).find(testid="message").text
    manager.post(url, {"tag": "Garden Chair", "action": "add"})
    assert (
        rows_of(page(manager, f"/assets/{red.pk}/"))["garden chair"].find(testid="review-state").text
        == "added"
    )


# ---------------------------------------------------------------------------- thumbnails over HTTP


def test_the_thumbnail_is_cached_with_an_etag(viewer, tagged, imgtag_home):
    red = tagged["red"]
    response = viewer.get(f"/assets/{red.pk}/thumbnail")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["ETag"] == f'"{red.sha256}"' and "max-age" in response["Cache-Control"]
    assert b"".join(response.streaming_content)[:2] == b"\xff\xd8"
    assert (imgtag_home / "cache" / "thumbnails" / f"{red.sha256}-256.jpg").is_file()
    again = viewer.get(f"/assets/{red.pk}/thumbnail", HTTP_IF_NONE_MATCH=f'"{red.sha256}"')
    assert again.status_code == 304 and again["ETag"] == f'"{red.sha256}"'
    assert viewer.get(f"/assets/{red.pk}/thumbnail", HTTP_IF_NONE_MATCH='"other"').status_code == 200
    assert viewer.get(f"/assets/{red.pk}/thumbnail", {"size": "77"}).status_code == 400
    assert viewer.get("/assets/999999/thumbnail").status_code == 404


def test_an_undecodable_original_has_no_thumbnail(viewer, image):
    broken, _ = services.ingest(image("red")[:150], "cut.png")
    response = viewer.get(f"/assets/{broken.pk}/thumbnail")
    assert response.status_code == 404 and b"cut.png" in response.content
    assert not thumbnails.thumbnail_path(broken.sha256).exists()


# ---------------------------------------------------------------------------- upload


def test_the_upload_page_and_its_api_with_the_session_and_csrf(user, image, fake_tagger):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    html = page(client, "/upload/")
    picker = html.find("input", testid="file-input")
    assert picker.get("type") == "file" and "multiple" in picker.attrs
    zone = html.find(testid="drop-zone")
    assert zone.get("data-upload-api") == "/api/assets/"
    assert any("upload.js" in (s.get("src") or "") for s in html.find_all("script"))
    token = html.find("meta", name="csrf-token").get("content")
    files = {"files": SimpleUploadedFile("a.png", image("red"))}
    assert client.post("/api/assets/", files).status_code == 403  # no CSRF token
    response = client.post(
        "/api/assets/", {"files": SimpleUploadedFile("a.png", image("red"))}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201 and response.json()["assets"][0]["status"] == "tagged"


# ---------------------------------------------------------------------------- thresholds


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_the_thresholds_page_counts_what_each_threshold_keeps(manager, tagged):
    html = page(manager, "/thresholds/", tag="animal")
    rows = html.find_all(testid="threshold-row")
    assert [r.get("data-threshold") for r in rows] == [f"{0.05 * i:.2f}" for i in range(1, 20)]
    kept = {r.get("data-threshold"): int(r.get("data-kept")) for r in rows}
    assert kept["0.90"] == 2 and kept["0.95"] == 1
    assert html.find(testid="current-threshold").text == "0.5"  # tag_thresholds.csv: animal,0.5
    assert html.find("input", testid="threshold-input").get("value") == "0.5"
    assert html.find(testid="threshold-kept").text == "2 assets kept"
    assert [r.get("data-threshold") for r in rows if r.get("class") == "current"] == ["0.50"]
    assert html.find(testid="threshold-current").text.startswith(
        "Threshold of animal in efficientnet-lite0-imagenet:pretrained: 0.5 (the model's default)"
    )
    assert "applies to images tagged from now on" in html.text
    count = manager.get("/thresholds/count/", {"tag": "animal", "threshold": "0.92"})
    assert count.json() == {"tag": "animal", "threshold": 0.92, "kept": 1, "exact": True}
    assert manager.get("/thresholds/count/", {"tag": "animal", "threshold": "2"}).status_code == 400
    picker = page(manager, "/thresholds/")
    assert "animal" in picker.text and picker.find_all(testid="threshold-row") == []


PRETRAINED = {"model_name": PRETRAINED_MODEL_NAME, "model_version": PRETRAINED_MODEL_VERSION}


def kept_by_step(html) -> dict[str, str]:
    return {r.get("data-threshold"): r.get("data-kept") for r in html.find_all(testid="threshold-row")}


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_applying_a_threshold_stores_it_for_the_current_model(manager, tagged, user):
    before = page(manager, "/thresholds/", tag="animal")
    form = before.find("form", id="threshold-form")
    assert (form.get("method"), form.get("action")) == ("post", "/thresholds/apply/")
    fields = {i.get("name"): i.get("value") for i in form.find_all("input")}
    assert {k: fields[k] for k in ("tag", "model_name", "model_version", "threshold")} == {
        "tag": "animal",
        **PRETRAINED,
        "threshold": "0.5",
    }
    assert fields["csrfmiddlewaretoken"]
    assert "for efficientnet-lite0-imagenet:pretrained" in form.find(testid="threshold-apply").text
    assert before.find_all(testid="threshold-reset") == []

    response = manager.post("/thresholds/apply/", {**PRETRAINED, "tag": "Animal ", "threshold": "0.3"})
    assert (response.status_code, response["Location"]) == (302, "/thresholds/?tag=animal")
    row = TagThreshold.objects.get()
    assert (row.tag.name, row.model_name, row.model_version, row.threshold, row.updated_by) == (
        "animal",
        PRETRAINED_MODEL_NAME,
        PRETRAINED_MODEL_VERSION,
        0.3,
        user,
    )
    after = page(manager, "/thresholds/", tag="animal")
    assert after.find(testid="current-threshold").text == "0.3"
    in_force = after.find(testid="threshold-current").text
    assert "set by alice on" in in_force and "the model's default is 0.5" in in_force
    assert after.find("input", testid="threshold-input").get("value") == "0.3"
    assert kept_by_step(after) == kept_by_step(before)  # the stored scores are as they were
    rows = after.find_all(testid="threshold-row")
    assert [r.get("data-threshold") for r in rows if r.get("class") == "current"] == ["0.30"]
    message = after.find(testid="message").text
    assert "threshold 0.3 for efficientnet-lite0-imagenet:pretrained (was 0.5)" in message
    assert after.find(testid="threshold-reset")
    assert services.threshold_overrides(PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION) == {"animal": 0.3}

    manager.post("/thresholds/apply/", {**PRETRAINED, "tag": "animal", "threshold": "0.62"})
    assert list(TagThreshold.objects.values_list("tag__name", "threshold")) == [("animal", 0.62)]


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_reset_goes_back_to_the_models_default(manager, tagged, user):
    services.set_threshold("animal", *PRETRAINED.values(), 0.7, user)
    html = page(manager, "/thresholds/", tag="animal")
    assert html.find(testid="current-threshold").text == "0.7"
    reset = html.find(testid="threshold-reset")
    assert "Reset to the model's default (0.5)" in reset.text
    response = manager.post("/thresholds/reset/", {**PRETRAINED, "tag": "animal"})
    assert (response.status_code, response["Location"]) == (302, "/thresholds/?tag=animal")
    assert not TagThreshold.objects.exists()
    html = page(manager, "/thresholds/", tag="animal")
    assert html.find(testid="current-threshold").text == "0.5"
    assert "(the model's default)" in html.find(testid="threshold-current").text
    assert html.find_all(testid="threshold-reset") == []
    again = manager.post("/thresholds/reset/", {**PRETRAINED, "tag": "animal"}, follow=True)
    assert "already has" in parse(again.content).find(testid="message").text


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_end_users_may_not_apply_or_reset(viewer, tagged, user):
    services.set_threshold("animal", *PRETRAINED.values(), 0.7, user)
    for url, data in (
        ("/thresholds/apply/", {**PRETRAINED, "tag": "animal", "threshold": "0.2"}),
        ("/thresholds/reset/", {**PRETRAINED, "tag": "animal"}),
    ):
        response = viewer.post(url, data)
        assert response.status_code == 403 and b"catalog.change_tagthreshold" in response.content
    assert list(TagThreshold.objects.values_list("threshold", flat=True)) == [0.7]


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_the_apply_form_needs_the_csrf_token(user, tagged):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    html = page(client, "/thresholds/", tag="animal")
    data = {**PRETRAINED, "tag": "animal", "threshold": "0.4"}
    assert client.post("/thresholds/apply/", data).status_code == 403
    assert not TagThreshold.objects.exists()
    token = html.find("form", id="threshold-form").find("input", name="csrfmiddlewaretoken").get("value")
    assert client.post("/thresholds/apply/", {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert TagThreshold.objects.get().threshold == 0.4


@pytest.mark.parametrize(
    "value, error",
    [
        ("0", "above 0 and at most 1; 0 is not"),
        ("1.5", "above 0 and at most 1; 1.5 is not"),
        ("-0.2", "above 0 and at most 1; -0.2 is not"),
        ("abc", "a threshold is a number"),
        ("nan", "a threshold is a number"),
        ("", "type the threshold to apply"),
    ],
)
@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_a_bad_threshold_is_refused_and_nothing_is_stored(manager, tagged, value, error):
    response = manager.post("/thresholds/apply/", {**PRETRAINED, "tag": "animal", "threshold": value})
    assert response.status_code == 400
    html = parse(response.content)
    assert error in html.find(testid="threshold-errors").text
    assert html.find(testid="current-threshold").text == "0.5"  # the page again, as it was
    assert len(html.find_all(testid="threshold-row")) == 19
    typed = html.find("input", testid="threshold-input").get("value")
    assert typed == {"0": "0.0", "1.5": "1.5", "-0.2": "-0.2"}.get(value, "0.5")  # a number stays typed
    assert not TagThreshold.objects.exists()


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger, known thresholds
def test_a_threshold_is_only_applied_to_the_current_models_tags(manager, tagged):
    stale = manager.post(
        "/thresholds/apply/",
        {"model_name": PRETRAINED_MODEL_NAME, "model_version": "old", "tag": "animal", "threshold": "0.3"},
    )
    assert stale.status_code == 409
    assert "the model that tags now is efficientnet-lite0-imagenet:pretrained, not" in stale.content.decode()
    unknown = manager.post("/thresholds/apply/", {**PRETRAINED, "tag": "no such tag", "threshold": "0.3"})
    assert unknown.status_code == 400 and "is not a tag of the model" in unknown.content.decode()
    assert not TagThreshold.objects.exists()
    html = page(manager, "/thresholds/", tag="no such tag")
    assert html.find(testid="current-threshold").text == "not in this model's vocabulary"
    assert html.find_all(testid="threshold-apply") == [] and html.find_all(testid="threshold-reset") == []


# ---------------------------------------------------------------------------- web reviews feed training


def test_tags_accepted_and_added_on_the_web_are_ingest_labels(manager, tagged, settings):
    from pipelines.training.ingest import catalog_entries

    blue, green = tagged["blue"], tagged["green"]
    manager.post(f"/assets/{blue.pk}/review/", {"tag": "cup", "action": "accept"})
    manager.post(f"/assets/{blue.pk}/review/", {"tag": "coffee mug", "action": "reject"})
    manager.post("/assets/bulk-tag/", {"asset": [green.pk], "tag": "Garden"})
    # the API the asset page's script calls does the same
    api = manager.post(
        f"/api/assets/{blue.pk}/review/", {"tag": "Saucer", "action": "add"}, content_type="application/json"
    )
    assert api.status_code == 200
    labels = {entry.origin: set(entry.tags) for entry in catalog_entries()}
    assert labels == {
        tagged["red"].uri: {"cat", "sofa"},
        blue.uri: {"cup", "saucer"},
        green.uri: {"garden"},
    }


def test_a_page_past_the_last_asset_is_empty_and_links_back(viewer, tagged):
    oldest = min(asset.pk for asset in tagged.values())
    html = page(viewer, "/", after=str(oldest))
    assert cards(html) == {} and html.find_all(testid="page-next") == []
    back = page(viewer, "/" + html.find(testid="page-prev").get("href"))
    assert oldest in cards(back)
    newest = max(asset.pk for asset in tagged.values())
    html = page(viewer, "/", before=str(newest))
    assert cards(html) == {} and html.find_all(testid="page-prev") == []
    assert newest in cards(page(viewer, "/" + html.find(testid="page-next").get("href")))


# ---------------------------------------------------------------------------- the table of tags


def table_rows(html) -> list[tuple[str, int, str]]:
    return [
        (row.get("data-tag"), int(row.get("data-assets")), row.get("data-threshold"))
        for row in html.find_all(testid="tag-table-row")
    ]


@pytest.fixture
def many_tags(user, settings):
    """60 scored tags of the pretrained tagger (the first by name: ``names[k]`` on k % 7 + 1
    assets) and one of our own it does not have (``our own tag``, on 1 asset); ``names[3]`` also
    has a rejected row (not an asset that carries it) and a threshold alice set, 0.42."""
    from catalog import thresholds
    from catalog.models import Asset, ModelVersion, Tag

    defaults = thresholds.model_thresholds(settings.IMGTAG)[2]
    names = sorted(name for name, value in defaults.items() if value != float("inf"))[:60]
    assets = Asset.objects.bulk_create(
        Asset(
            sha256=f"{i:064x}",
            uri=f"file:///{i}",
            filename=f"{i}.jpg",
            size=1,
            width=1,
            height=1,
            format="JPEG",
        )
        for i in range(8)
    )
    model = ModelVersion.objects.create(name=PRETRAINED_MODEL_NAME, version=PRETRAINED_MODEL_VERSION)
    rows = []
    for k, name in enumerate([*names, "our own tag"]):
        tag = Tag.objects.create(name=name)
        rows += [
            AssetTag(asset=a, tag=tag, score=0.9, source="model", model_version=model)
            for a in assets[: k % 7 + 1]
        ]
        if k == 3:
            rows.append(AssetTag(asset=assets[7], tag=tag, score=0.4, source="model", review="rejected"))
    AssetTag.objects.bulk_create(rows)
    services.set_threshold(names[3], PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION, 0.42, user)
    return names, defaults


@pytest.mark.usefixtures("tag_map")  # the ImageNet-only tagger: known thresholds
def test_the_thresholds_page_lists_every_scored_tag_in_a_paged_sortable_table(manager, many_tags):
    names, defaults = many_tags
    html = page(manager, "/thresholds/")
    assert html.find(testid="tag-table-count").text == "61 tags with machine scores, page 1 of 2"
    rows = table_rows(html)
    assert len(rows) == 50
    most = [names[k] for k in range(60) if k % 7 == 6]  # on 7 assets: first, by name
    assert rows[: len(most)] == [(name, 7, f"{defaults[name]:g}") for name in most]
    assert [c.get("aria-sort") for c in html.find_all("th")[:3]] == [None, "descending", None]
    second = page(manager, "/thresholds/" + html.find(testid="tag-page-next").get("href"))
    assert len(table_rows(second)) == 11 and second.find_all(testid="tag-page-next") == []
    assert {r[0] for r in rows + table_rows(second)} == {*names, "our own tag"}

    by_name = page(manager, "/thresholds/" + html.find(testid="sort-tag").get("href"))
    assert [r[0] for r in table_rows(by_name)][:3] == names[:3]
    backwards = page(manager, "/thresholds/" + by_name.find(testid="sort-tag").get("href"))
    assert [r[0] for r in table_rows(backwards)][:2] == ["our own tag", names[-1]]

    by_threshold = page(manager, "/thresholds/", sort="threshold", order="desc")
    ordered = by_threshold.find_all(testid="tag-table-row")
    shown = [float(row.get("data-threshold")) for row in ordered[:20]]
    assert shown == sorted(shown, reverse=True)
    highest = max(defaults[name] for name in names)
    mine = next(row for row in ordered if row.get("data-tag") == names[3])
    assert mine.get("data-threshold") == "0.42" and "set by alice on" in mine.text
    assert float(ordered[0].get("data-threshold")) == max(highest, 0.42)
    assert "the model's default" in next(row for row in ordered if row.get("data-tag") == names[0]).text
    last = page(manager, "/thresholds/", sort="threshold", order="asc", page="2").find_all(
        testid="tag-table-row"
    )[-1]
    assert (last.get("data-tag"), last.get("data-threshold")) == (
        "our own tag",
        "",
    )  # not a tag of the model: last
    assert "not a tag of this model" in last.text


@pytest.mark.usefixtures("tag_map")
def test_the_table_of_tags_filters_by_prefix_and_links_each_tag(manager, many_tags):
    names, _ = many_tags
    prefix = names[3][:2]
    html = page(manager, "/thresholds/", prefix=f"  {prefix.upper()}")
    assert html.find("input", testid="tag-prefix-input").get("value") == prefix
    assert sorted(r[0] for r in table_rows(html)) == [name for name in names if name.startswith(prefix)]
    assert dict((r[0], r[1]) for r in table_rows(html))[names[3]] == 4  # the rejected row is not counted
    link = html.find("a", href=f"?tag={quote(names[3])}")
    assert link is not None and link.text == names[3]
    assert (
        page(manager, "/thresholds/", prefix="zzzz")
        .find(testid="tag-table-empty")
        .text.startswith("No tag with machine scores starts with")
    )
    assert page(manager, "/thresholds/", sort="bogus", order="sideways", page="99").find(testid="tag-table")


def test_every_tag_field_asks_for_suggestions(manager, tagged):
    """The search box, bulk tagging, the review form and the thresholds page's fields all take
    tag autocomplete (tests/e2e/web drives it in a browser)."""
    gallery = page(manager, "/")
    assert gallery.find("input", testid="search-input").get("data-autocomplete") == "query"
    assert gallery.find("input", testid="bulk-tag-input").get("data-autocomplete") == "tag"
    assert gallery.find("meta", name="tags-api").get("content") == "/api/tags/"
    asset = page(manager, f"/assets/{tagged['red'].pk}/")
    assert asset.find("input", testid="add-tag-input").get("data-autocomplete") == "tag"
    thresholds_page = page(manager, "/thresholds/")
    assert thresholds_page.find("input", testid="threshold-tag-input").get("data-autocomplete") == "tag"
    assert thresholds_page.find("input", testid="tag-prefix-input").get("data-autocomplete") == "tag"


@pytest.mark.usefixtures("tag_map")
def test_the_thresholds_page_of_a_common_tag_estimates_and_counts_exactly_on_demand(
    manager, many_tags, monkeypatch
):
    from catalog import thresholds

    names, _ = many_tags
    monkeypatch.setattr(thresholds, "SAMPLE_ABOVE", 3)  # names[6] has 7 machine scores
    html = page(manager, "/thresholds/", tag=names[6])
    assert html.find(testid="threshold-kept").text.startswith("≈ ")
    assert "estimated from a sample" in html.find(testid="threshold-estimate-note").text
    live = manager.get("/thresholds/count/", {"tag": names[6], "threshold": "0.5"}).json()
    assert live["exact"] is False
    exact = page(manager, "/thresholds/" + html.find(testid="threshold-exact-link").get("href"))
    assert exact.find_all(testid="threshold-estimate-note") == []
    assert (
        kept_by_step(exact)["0.05"] == "7" and exact.find("section", id="threshold").get("data-exact") == "1"
    )
    live = manager.get("/thresholds/count/", {"tag": names[6], "threshold": "0.5", "exact": "1"}).json()
    assert (live["kept"], live["exact"]) == (7, True)
