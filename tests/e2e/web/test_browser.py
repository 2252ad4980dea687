"""The catalog web UI in a real browser (headless Chromium), against a running imgtag.

A content manager uploads, watches tagging happen, searches and reviews; an end user can search
and download but not upload or review; an anonymous visitor is sent to the login page. The
server, the worker and RabbitMQ are real (see conftest.py); only HTTP is observed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.webui import User, chelsea_jpeg, coffee_png

TAGGING = 60_000  # ms: the worker's first batch loads the model
expect.set_options(timeout=15_000)

# Records every text each upload row's status shows, so a short-lived "pending" is seen too.
RECORD_STATUSES = """() => {
  window.__statuses = {};
  const record = () => {
    for (const row of document.querySelectorAll('[data-testid=upload-row]')) {
      const status = row.querySelector('[data-testid=upload-status]');
      if (!status) continue;
      const seen = (window.__statuses[row.dataset.filename] ||= []);
      const text = status.textContent.trim();
      if (seen[seen.length - 1] !== text) seen.push(text);
    }
  };
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
  record();
}"""


# The width of an <img> once it has loaded (img.decode() fails when it cannot be loaded).
DECODED_WIDTH = "img => img.decode().then(() => img.naturalWidth)"


def sign_in(page: Page, user: User, steps) -> None:
    page.goto("/accounts/login/")
    page.locator("input[name=username]").fill(user.name)
    page.locator("input[name=password]").fill(user.password)
    steps(f"login-{user.name}", page)
    page.get_by_test_id("login-submit").click()
    expect(page).to_have_url(re.compile(r"^https?://[^/]+/$"))
    expect(page.get_by_test_id("current-user")).to_contain_text(user.name)
    steps("signed-in")


def upload_row(page: Page, filename: str):
    return page.locator(f'[data-testid=upload-row][data-filename="{filename}"]')


def search(page: Page, tag: str, steps) -> None:
    page.goto("/")
    page.get_by_test_id("search-input").fill(f'"{tag}"')
    page.get_by_test_id("search-submit").click()
    expect(page).to_have_url(re.compile(r"[?&]q=[^&]"))
    expect(page.get_by_test_id("result-count")).to_have_text(re.compile(r"^\s*[1-9]\d* assets?\s*$"))
    steps(f"search-{tag}")


def tags_by_name(asset: dict) -> dict:
    return {tag["name"]: tag for tag in asset["tags"]}


def provenance(tag: dict) -> tuple:
    """A tag of the API as (source, review, state, reviewed_by)."""
    return tag["source"], tag["review"], tag["state"], tag["reviewed_by"]


def test_content_manager_uploads_searches_and_reviews(site, new_page, steps, tmp_path):
    cat = chelsea_jpeg()
    files = {"cat.jpg": cat, "cat-copy.jpg": cat, "notes.jpg": b"meeting notes\n- buy cat food\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    page = new_page()
    sign_in(page, site.alice, steps)
    expect(page.get_by_test_id("nav-upload")).to_be_visible()
    expect(page.get_by_test_id("nav-thresholds")).to_be_visible()
    page.get_by_test_id("nav-upload").click()
    expect(page).to_have_url(re.compile(r"/upload/$"))
    expect(page.get_by_test_id("drop-zone")).to_be_visible()
    steps("upload-page")

    # upload three files at once: a photo, the same bytes again, and text named .jpg
    page.evaluate(RECORD_STATUSES)
    page.locator("input[type=file][multiple][data-testid=file-input]").set_input_files(
        [tmp_path / name for name in files]
    )
    expect(page.get_by_test_id("upload-row")).to_have_count(3)
    for name in files:
        expect(upload_row(page, name).locator("progress")).to_have_count(1)
    steps("uploaded")
    # The page sends up to three files at once, so either copy of the cat may reach the catalog
    # first: that one is tagged, the other is its duplicate.
    status = {name: upload_row(page, name).get_by_test_id("upload-status") for name in files}
    for name in ("cat.jpg", "cat-copy.jpg"):
        expect(status[name]).to_have_text(re.compile(r"^(tagged|duplicate)"), timeout=TAGGING)
    expect(status["notes.jpg"]).to_have_text(re.compile(r"^rejected: not_an_image"))
    steps("tagged")
    shown = {name: status[name].inner_text().strip() for name in files}
    original, copy = (
        ("cat.jpg", "cat-copy.jpg") if shown["cat.jpg"] == "tagged" else ("cat-copy.jpg", "cat.jpg")
    )
    assert shown[original] == "tagged" and shown[copy].startswith("duplicate"), shown
    seen = page.evaluate("() => window.__statuses")
    assert "pending" in seen[original], f"{original} was never shown pending; the statuses shown: {seen}"
    assert seen[original].index("pending") < seen[original].index("tagged"), seen
    assert seen[original][-1] == "tagged", seen  # without a reload: the page kept recording

    # the duplicate points at the original asset, which is tagged
    link = upload_row(page, original).get_by_test_id("asset-link").get_attribute("href")
    found = re.search(r"/assets/(\d+)/$", link or "")
    assert found, f"{original}'s asset link is {link!r}"
    asset_id = int(found.group(1))
    assert upload_row(page, copy).get_by_test_id("asset-link").get_attribute("href") == link
    expect(upload_row(page, "notes.jpg").get_by_test_id("asset-link")).to_have_count(0)
    asset = site.api("GET", f"/api/assets/{asset_id}/", site.alice).json()
    assert asset["status"] == "tagged" and asset["tags"], asset
    upload_row(page, copy).get_by_test_id("asset-link").click()
    expect(page).to_have_url(re.compile(rf"/assets/{asset_id}/$"))
    expect(page.get_by_test_id("tag-row").first).to_be_visible()
    names = {row.get_attribute("data-tag") for row in page.get_by_test_id("tag-row").all()}
    assert names == set(tags_by_name(asset)), (
        f"the asset page shows {names}, the API {set(tags_by_name(asset))}"
    )
    steps("duplicate-asset")

    # find it in the gallery by its top tag
    page.goto("/")
    card = page.locator(f'[data-testid=asset-card][data-asset-id="{asset_id}"]')
    top_tag = card.get_by_test_id("tag-chip").first.get_attribute("data-tag")
    assert top_tag in tags_by_name(asset), f"chip {top_tag!r} is not a tag of the asset: {asset['tags']}"
    search(page, top_tag, steps)
    expect(card).to_be_visible()
    tag_facet = page.locator("[data-testid=facet][data-facet=tag]")
    expect(tag_facet.locator(f'[data-testid=facet-value][data-value="{top_tag}"]')).to_have_count(1)

    # review on the asset page: a keyboard accept, a reject of the weakest tag, an added tag
    page.goto(f"/assets/{asset_id}/")
    expect(page.get_by_test_id("original")).to_be_visible()
    states = page.get_by_test_id("review-state")
    expect(states.first).to_be_visible()
    assert {state.strip() for state in states.all_inner_texts()} == {"suggested"}, states.all_inner_texts()
    page.evaluate(
        "() => { document.activeElement && document.activeElement.blur(); window.__sameDocument = true; }"
    )
    page.keyboard.press("j")
    page.keyboard.press("a")
    accepted = page.get_by_test_id("tag-row").filter(
        has=page.get_by_test_id("review-state").filter(has_text=re.compile(r"^\s*accepted\s*$"))
    )
    expect(accepted).to_have_count(1)
    by_keyboard = accepted.get_attribute("data-tag")
    steps("keyboard-accept")

    weakest = min((t for t in asset["tags"] if t["name"] != by_keyboard), key=lambda t: t["score"])["name"]
    row = page.locator(f'[data-testid=tag-row][data-tag="{weakest}"]')
    for field in ("tag-score", "tag-source", "tag-model"):
        expect(row.get_by_test_id(field)).to_have_count(1)
    expect(row.get_by_test_id("tag-source")).to_contain_text("model")
    weakest_tag = tags_by_name(asset)[weakest]
    expect(row.get_by_test_id("tag-model")).to_contain_text(weakest_tag["model_version"]["name"])
    score = float(re.search(r"\d+(?:\.\d+)?", row.get_by_test_id("tag-score").inner_text()).group())
    assert abs(score - weakest_tag["score"]) <= 0.0051, (
        f"{weakest} scored {score}, the API says {weakest_tag}"
    )
    row.get_by_test_id("reject").click()
    expect(row.get_by_test_id("review-state")).to_have_text("rejected")
    assert page.evaluate("() => window.__sameDocument === true"), "rejecting a tag reloaded the page"
    steps("rejected")

    page.get_by_test_id("add-tag-input").fill("pet-of-the-month")
    page.get_by_test_id("add-tag-submit").click()
    added_row = page.locator('[data-testid=tag-row][data-tag="pet-of-the-month"]')
    expect(added_row.get_by_test_id("review-state")).to_have_text("added")
    expect(added_row.get_by_test_id("tag-source")).to_contain_text("human")
    steps("added")

    # the API tells the same story
    tags = tags_by_name(site.api("GET", f"/api/assets/{asset_id}/", site.alice).json())
    assert provenance(tags[weakest]) == ("model", "rejected", "rejected", "alice"), tags[weakest]
    assert provenance(tags[by_keyboard]) == ("model", "accepted", "accepted", "alice"), tags[by_keyboard]
    added = tags["pet-of-the-month"]
    assert provenance(added) == ("human", "accepted", "added", "alice"), added


def test_end_user_can_search_and_download_but_not_upload_or_review(site, new_page, steps):
    coffee = coffee_png()
    asset = site.wait_tagged(site.upload(site.alice, "coffee.png", coffee, "image/png")["id"], site.alice)
    tag = max(asset["tags"], key=lambda t: t["score"])["name"]
    bob = site.bob

    page = new_page()
    sign_in(page, bob, steps)
    expect(page.get_by_test_id("nav-gallery")).to_be_visible()
    expect(page.get_by_test_id("nav-upload")).to_have_count(0)
    expect(page.get_by_test_id("nav-thresholds")).to_have_count(0)

    answer = page.goto("/upload/")
    steps("upload-forbidden")
    assert answer.status == 403, f"GET /upload/ as an end user: {answer.status}"
    expect(page.get_by_test_id("forbidden")).to_be_visible()
    expect(page.get_by_test_id("file-input")).to_have_count(0)

    search(page, tag, steps)
    expect(page.locator(f'[data-testid=asset-card][data-asset-id="{asset["id"]}"]')).to_be_visible()
    for control in ("select-asset", "bulk-tag-input", "bulk-tag-submit"):
        expect(page.get_by_test_id(control)).to_have_count(0)

    page.goto(f"/assets/{asset['id']}/")
    expect(page.get_by_test_id("tag-row").first).to_be_visible()
    for control in ("accept", "reject", "add-tag-input", "add-tag-submit"):
        expect(page.get_by_test_id(control)).to_have_count(0)
    steps("asset-page")

    expect(page.get_by_test_id("original")).to_be_visible()
    assert page.get_by_test_id("original").evaluate(DECODED_WIDTH) > 0, "the picture does not load"
    with page.expect_download() as downloading:
        page.get_by_test_id("download").click()
    download = downloading.value
    assert download.failure() is None, download.failure()
    assert Path(download.path()).read_bytes() == coffee
    url = page.get_by_test_id("download").get_attribute("href")
    assert page.request.get(f"{site.url}{url}" if url.startswith("/") else url).status == 200

    # the API refuses bob's writes, with his session (and a valid CSRF token) and with his token
    csrf = {c["name"]: c["value"] for c in page.context.cookies()}.get("csrftoken")
    assert csrf, f"no csrftoken cookie after signing in: {page.context.cookies()}"
    review = {"tag": tag, "action": "reject"}
    by_session = page.request.post(
        f"{site.url}/api/assets/{asset['id']}/review/", data=review, headers={"X-CSRFToken": csrf}
    )
    assert by_session.status == 403, f"review with bob's session: {by_session.status} {by_session.text()}"
    assert "CSRF" not in by_session.text(), by_session.text()  # refused as bob, not for a bad token
    by_token = site.api("POST", f"/api/assets/{asset['id']}/review/", bob, json=review)
    assert by_token.status_code == 403, f"review with bob's token: {by_token.status_code} {by_token.text}"
    upload = site.api("POST", "/api/assets/", bob, files=[("files", ("mine.png", coffee, "image/png"))])
    assert upload.status_code == 403, f"upload with bob's token: {upload.status_code} {upload.text}"
    after = tags_by_name(site.api("GET", f"/api/assets/{asset['id']}/", bob).json())
    assert after[tag]["review"] == "suggested", after[tag]


def test_anonymous_visitor_is_sent_to_login(site, new_page, steps):
    page = new_page()
    page.goto("/")
    steps("home", page)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.locator("input[name=username]")).to_be_visible()
    expect(page.get_by_test_id("login-submit")).to_be_visible()


def test_content_manager_applies_and_resets_a_threshold(site, new_page, steps):
    page = new_page()
    sign_in(page, site.alice, steps)
    page.get_by_test_id("nav-thresholds").click()
    page.get_by_test_id("threshold-tag-input").fill("teapot")  # a class tag: the default * is 0.25
    page.get_by_test_id("threshold-tag-submit").click()
    expect(page.get_by_test_id("current-threshold")).to_have_text("0.25")
    expect(page.get_by_test_id("threshold-reset")).to_have_count(0)
    url = page.url
    page.get_by_test_id("threshold-input").fill("0.42")
    page.get_by_test_id("threshold-input").press("Enter")  # Enter counts, it does not apply
    expect(page.get_by_test_id("threshold-kept")).to_have_text(re.compile(r"^\d+ assets kept$"))
    expect(page.get_by_test_id("threshold-apply")).to_contain_text("Apply threshold 0.42 to teapot")
    assert page.url == url
    assert site.api("GET", "/api/tags/teapot/threshold/", site.alice).json()["override"] is None
    steps("tried")

    page.get_by_test_id("threshold-apply").click()
    expect(page.get_by_test_id("current-threshold")).to_have_text("0.42")
    expect(page.get_by_test_id("threshold-current")).to_contain_text("set by alice")
    expect(page.get_by_test_id("message")).to_contain_text("images tagged from now on")
    stored = site.api("GET", "/api/tags/teapot/threshold/", site.alice).json()
    assert (stored["threshold"], stored["override"]["updated_by"]) == (0.42, "alice"), stored
    steps("applied")

    page.get_by_test_id("threshold-reset").click()
    expect(page.get_by_test_id("current-threshold")).to_have_text("0.25")
    expect(page.get_by_test_id("threshold-reset")).to_have_count(0)
    assert site.api("GET", "/api/tags/teapot/threshold/", site.alice).json()["override"] is None
    steps("reset")


def test_tag_fields_suggest_the_catalogs_tags_as_you_type(site, new_page, steps):
    """Autocomplete in the search box (the term at the caret, quoted), bulk tagging, the review
    form and the thresholds page, from GET /api/tags/?prefix= (most used first, with counts);
    and the thresholds page's table of tags, filtered and sorted."""
    import skimage.data

    from tests.e2e.web.webui import jpeg, png

    first = site.upload(site.alice, "astronaut.jpg", jpeg(skimage.data.astronaut()), "image/jpeg")["id"]
    second = site.upload(site.alice, "camera.png", png(skimage.data.camera()), "image/png")["id"]
    for asset_id, name in ((first, "qq jam"), (second, "qq jam"), (first, "qq tart")):
        added = site.api(
            "POST", f"/api/assets/{asset_id}/review/", site.alice, json={"tag": name, "action": "add"}
        )
        assert added.status_code == 200, added.text
    tagged = site.wait_tagged(first, site.alice, timeout=TAGGING / 1000)
    machine = max((t for t in tagged["tags"] if t["source"] == "model"), key=lambda t: t["score"])["name"]

    page = new_page()
    sign_in(page, site.alice, steps)
    box = page.get_by_test_id("search-input")
    options = page.get_by_test_id("autocomplete-option")
    box.click()
    box.press_sequentially("QQ", delay=40)
    expect(options).to_have_count(2)
    expect(options.nth(0)).to_have_attribute("data-value", "qq jam")  # on two assets: first
    expect(options.nth(0)).to_contain_text("2")
    expect(options.nth(1)).to_have_attribute("data-value", "qq tart")
    steps("search-suggestions")
    box.press("ArrowDown")
    box.press("ArrowDown")
    box.press("Enter")  # picks the highlighted one; the list closes, nothing is sent yet
    expect(box).to_have_value('"qq tart" ')
    expect(options).to_have_count(0)
    box.press_sequentially('OR "qq j', delay=40)  # a name with a space is typed in quotes
    expect(options).to_have_count(1)
    options.first.click()
    expect(box).to_have_value('"qq tart" OR "qq jam" ')
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=%22qq"))
    expect(page.get_by_test_id("result-count")).to_have_text(re.compile(r"^\s*2 assets\s*$"))
    steps("searched")

    bulk = page.get_by_test_id("bulk-tag-input")
    bulk.press_sequentially("qq t", delay=40)
    expect(options).to_have_count(1)
    options.first.click()
    expect(bulk).to_have_value("qq tart")

    page.goto(f"/assets/{second}/")
    add = page.get_by_test_id("add-tag-input")
    add.press_sequentially("qq", delay=40)
    expect(options).to_have_count(2)
    add.press("ArrowUp")  # from the top: wraps to the last
    add.press("Enter")
    expect(add).to_have_value("qq tart")
    page.get_by_test_id("add-tag-submit").click()
    expect(
        page.locator('[data-testid=tag-row][data-tag="qq tart"]').get_by_test_id("review-state")
    ).to_have_text("added")
    steps("added-from-suggestion")

    page.get_by_test_id("nav-thresholds").click()
    expect(page.get_by_test_id("tag-table-row").first).to_be_visible()
    expect(page.get_by_test_id("tag-table-row").filter(has_text=machine)).to_have_count(1)
    page.get_by_test_id("sort-tag").click()
    expect(page.locator('th a[data-testid="sort-tag"]')).to_have_attribute("aria-sort", "ascending")
    names = [row.get_attribute("data-tag") for row in page.get_by_test_id("tag-table-row").all()]
    assert names == sorted(names), names
    prefix = page.get_by_test_id("tag-prefix-input")
    prefix.fill(machine[:2])
    page.get_by_test_id("tag-prefix-submit").click()
    expect(page.get_by_test_id("tag-table-row").first).to_be_visible()
    shown = [row.get_attribute("data-tag") for row in page.get_by_test_id("tag-table-row").all()]
    assert machine in shown and all(name.startswith(machine[:2]) for name in shown), shown
    steps("tag-table")

    field = page.get_by_test_id("threshold-tag-input")
    field.press_sequentially(machine[:3], delay=40)
    suggestion = page.locator(f'[data-testid=autocomplete-option][data-value="{machine}"]')
    expect(suggestion).to_have_count(1)
    suggestion.click()  # picks it and shows its thresholds
    expect(page).to_have_url(re.compile(r"[?&]tag="))
    expect(page.get_by_test_id("threshold-current")).to_contain_text(f"Threshold of {machine}")
    steps("threshold-from-suggestion")


@pytest.fixture(autouse=True)
def _server_alive(site):
    """After each test, a dead server or worker is reported with its log."""
    yield
    site.check_running()
