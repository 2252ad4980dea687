"""The REST API against its own OpenAPI schema, as a client would find it: schemathesis generates
requests from ``/api/schema/`` and sends them to a real gunicorn; every answer must be one the
schema documents (status code, content type, headers, body) and none may be a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup

from tests.catalog.conftest import make_image
from tests.catalog.live import LiveCatalog

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.use_after_free,
    checks.ensure_resource_availability,
    checks.unsupported_method,
    checks.missing_required_header,
]
# Not run: negative_data_rejection. The API reads an empty query parameter (``?source=``,
# ``?page=``) as an absent one, as HTML forms send them; schemathesis counts that as accepting
# invalid data. Every other invalid value is a 400 (tests/catalog/test_api_errors.py).

#: Generated requests per operation and mode (derandomized: the same ones every run).
EXAMPLES = 100
#: gunicorn answers a request line longer than its ``limit_request_line`` (4094) itself, with an
#: HTML 400, before the API sees it: no schema can document that (negative mode generates some).
GUNICORN_REFUSED = b"Request Line is too large"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    catalog = LiveCatalog(tmp_path_factory.mktemp("live-api"), threads=4)
    try:
        catalog.start()
        api = catalog.session()
        files = [
            ("files", (f"{c}.png", make_image(c, seed=i))) for i, c in enumerate(("red", "blue", "green"))
        ]
        assert api.post(f"{catalog.url}/api/assets/", files=files, timeout=60).status_code == 201
        [asset, *_] = api.get(f"{catalog.url}/api/assets/", timeout=60).json()["results"]
        api.post(
            f"{catalog.url}/api/assets/{asset['id']}/review/",
            json={"tag": "cat", "action": "add"},
            timeout=60,
        )
        yield catalog
    finally:
        log = catalog.stop()
        print(log[-5000:])


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api.url}/api/schema/", headers=live_api.headers, timeout=60)


def _failures(operation, mode: GenerationMode, live_api, examples: int) -> list[str]:
    """Run ``examples`` generated requests of one operation; the failures, as text."""
    found: dict[str, str] = {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case):
        try:
            response = case.call(headers=live_api.headers, timeout=60)
            if response.status_code == 400 and GUNICORN_REFUSED in response.content:
                return  # answered by gunicorn in front of the API: its request line is over 4094 bytes
            case.validate_response(response, checks=CHECKS, headers=live_api.headers)
        except FailureGroup as group:  # kept, and generation goes on: every distinct failure is reported
            for failure in group.exceptions:
                found.setdefault(
                    f"{operation.label}: {failure.title}",
                    f"{failure}"[:1500] + f"\n{case.as_curl_command(headers={'Authorization': 'Token ...'})}",
                )

    try:
        run()
    except Unsatisfiable:  # nothing about this operation can be made invalid (no parameter, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label
        return []
    return [f"{key} ({mode.value})\n{text}" for key, text in found.items()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_generated_request_gets_an_answer_the_schema_documents(api_schema, live_api, mode):
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        failures += _failures(operation, mode, live_api, examples=EXAMPLES)
    assert operations >= 9
    assert not failures, f"{len(failures)} distinct failures:\n\n" + "\n\n".join(failures[:30])
