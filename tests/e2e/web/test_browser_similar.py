"""Similar images and near-duplicates in a real browser (headless Chromium), against a running
imgtag whose worker tags with the starter model: the asset page's "More like this" strip, and
the Duplicates page where a content manager keeps one copy and deletes the other.
"""

from __future__ import annotations

import re

import cv2
import skimage.data
from playwright.sync_api import expect

from tests.e2e.web.test_browser import TAGGING, sign_in
from tests.e2e.web.webui import chelsea_jpeg, coffee_png, png

expect.set_options(timeout=15_000)


def small_chelsea() -> bytes:
    """Chelsea resized to 40% and saved as PNG: a near-duplicate of chelsea.jpg."""
    cat = skimage.data.chelsea()
    return png(cv2.resize(cat, (cat.shape[1] * 2 // 5, cat.shape[0] * 2 // 5), interpolation=cv2.INTER_AREA))


def test_more_like_this_then_delete_the_copy(site, new_page, steps):
    alice, bob = site.alice, site.bob
    original = site.wait_tagged(
        site.upload(alice, "chelsea.jpg", chelsea_jpeg(), "image/jpeg")["id"], alice, timeout=TAGGING / 1000
    )
    other = site.wait_tagged(site.upload(alice, "coffee.png", coffee_png(), "image/png")["id"], alice)
    copy = site.wait_tagged(
        site.upload(alice, "chelsea-small.png", small_chelsea(), "image/png")["id"], alice
    )
    assert {original["status"], other["status"], copy["status"]} == {"tagged"}

    # an end user: the copy first in the strip, with its score, and a link to its page
    page = new_page()
    sign_in(page, bob, steps)
    page.goto(f"/assets/{original['id']}/")
    strip = page.get_by_test_id("similar")
    expect(strip).to_contain_text("More like this")
    cards = strip.get_by_test_id("similar-card")
    expect(cards).to_have_count(2)
    expect(cards.first).to_have_attribute("data-asset-id", str(copy["id"]))
    score = float(cards.first.get_by_test_id("similar-score").inner_text())
    assert score > 0.7, score
    steps("similar-strip", page)
    cards.first.locator("a").click()
    expect(page).to_have_url(re.compile(rf"/assets/{copy['id']}/$"))
    expect(page.get_by_test_id("nav-duplicates")).to_have_count(0)

    # a content manager: the pair on the Duplicates page; keep the original, delete the copy
    page = new_page()
    sign_in(page, alice, steps)
    page.get_by_test_id("nav-duplicates").click()
    group = page.locator(f'[data-testid=duplicate-group][data-group="{original["id"]}"]')
    expect(group.get_by_test_id("duplicate")).to_have_count(2)
    expect(group.get_by_test_id("duplicate-size").first).to_contain_text("451 × 300 px")
    steps("duplicates", page)
    group.locator(f'[data-testid=duplicate][data-asset-id="{original["id"]}"] [data-testid=keep]').check()
    group.get_by_test_id("delete-others").click()
    expect(page.get_by_test_id("to-delete")).to_contain_text("chelsea-small.png")
    expect(page.get_by_test_id("kept")).to_have_text("chelsea.jpg")
    steps("confirm", page)
    assert site.api("GET", f"/api/assets/{copy['id']}/", alice).status_code == 200  # not before confirming
    page.get_by_test_id("confirm-delete").click()
    expect(page).to_have_url(re.compile(r"/duplicates/$"))
    expect(page.get_by_text("Deleted 1 near-duplicate")).to_be_visible()
    expect(page.get_by_test_id("no-duplicates")).to_be_visible()
    steps("deleted", page)
    assert site.api("GET", f"/api/assets/{copy['id']}/", alice).status_code == 404
    assert site.api("GET", f"/api/assets/{original['id']}/original", alice).status_code == 200
