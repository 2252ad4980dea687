"""Fixtures for the browser tests: a private imgtag (server + worker + users) and headless Chromium.

Per test module, ``site`` starts an imgtag installation of its own (``IMGTAG_HOME`` in a temp
folder, a uuid tagging queue on the real RabbitMQ at 127.0.0.1:5672, ``imgtag serve`` on a free
port and ``imgtag worker``) with two users: alice, a content manager, and bob, an end user.
Playwright drives Debian's Chromium (``IMGTAG_CHROMIUM``, default ``/usr/bin/chromium``; never
``playwright install``). Without RabbitMQ or the browser the tests fail under ``CI=true``,
naming what is missing, and are skipped otherwise.

When a test fails, the screenshot of each of its steps, the HTML of the last one and the server
and worker logs are written to ``tests/artifacts/<test name>/``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pika
import pytest

from tests.e2e.web.webui import Installation, Steps

AMQP_URL = os.environ.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
CHROMIUM = os.environ.get("IMGTAG_CHROMIUM", "/usr/bin/chromium")


def _missing(problem: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def rabbitmq():
    try:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except pika.exceptions.AMQPError as exc:
        _missing(
            f"RabbitMQ at 127.0.0.1:5672 is not reachable ({exc!r}); start it with 'rabbitmq-server -detached'"
        )
    connection.close()
    return AMQP_URL


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(
            f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package ('make browser') "
            "or point IMGTAG_CHROMIUM at a Chromium binary"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(rabbitmq, chromium_path, tmp_path_factory):
    """A running imgtag with users ``site.alice`` (content manager) and ``site.bob`` (end user).

    Asks for the browser first, so that without one nothing is started.
    """
    installation = Installation(
        tmp_path_factory.mktemp("web") / "home", f"test.web.{uuid.uuid4().hex[:10]}", rabbitmq
    )
    try:
        # createuser migrates the new catalog first, before serve and worker open it together
        installation.alice = installation.createuser("alice", "content_manager", "alice-Secret-42")
        installation.bob = installation.createuser("bob", "end_user", "bob-Secret-42")
        installation.start("worker", "worker", "--metrics-port", "0")  # loads the model meanwhile
        installation.serve()
        yield installation
    finally:
        installation.stop()
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
        channel = connection.channel()
        for queue in (installation.queue, f"{installation.queue}.dead", f"{installation.queue}.suspect"):
            channel.queue_delete(queue)
        channel.exchange_delete(f"{installation.queue}.dead")
        connection.close()


@pytest.fixture
def steps(request, site):
    """Call ``steps("name", page)`` after each step; the screenshots are kept if the test fails."""
    return Steps(request.node.name, site)


@pytest.fixture
def new_page(browser, site):
    """``new_page()``: a page in a fresh browser context (its own cookies), closed after the test."""
    contexts = []

    def make():
        context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    steps = getattr(item, "funcargs", {}).get("steps")
    if report.failed and report.when in ("setup", "call") and isinstance(steps, Steps):
        folder = steps.save()
        report.sections.append(("browser artifacts", f"screenshots, HTML and logs in {folder}"))
