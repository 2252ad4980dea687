"""The API's JSON renderer writes exactly the bytes DRF's does, faster (catalog.renderers)."""

import datetime as dt
import decimal
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from catalog.models import AssetTag
from catalog.renderers import JSONRenderer

PAGE = {
    "count": 246_176,
    "count_exact": True,
    "next": "http://testserver/api/assets/?cursor=cD05OTc5OTE%3D&q=cat",
    "previous": None,
    "results": ReturnList(
        [
            ReturnDict(
                {
                    "id": 997_991,
                    "filename": "Ærøskøbing 東京 \u2028 line \u2029 para.jpg",
                    "score": 0.873_412_345,
                    "state": AssetTag.Review.SUGGESTED,  # a str enum: its value
                    "created_at": dt.datetime(2026, 12, 7, 11, 2, 48, 663_473, tzinfo=dt.UTC),
                    "local": dt.datetime(2026, 12, 7, 12, 2, 48, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                    "day": dt.date(2026, 12, 7),
                    "at": dt.time(11, 2, 48, 663_473),
                    "price": decimal.Decimal("12.50"),
                    "key": uuid.UUID("12345678-1234-5678-1234-567812345678"),
                    "message": gettext_lazy("Not found."),
                    "tags": [{"name": "golden retriever", "reviewed_by": None}] * 3,
                },
                serializer=None,
            )
        ],
        serializer=None,
    ),
}


@pytest.mark.parametrize("data", [PAGE, PAGE["results"], {"detail": "bad", "reason": "bad_request"}, []])
def test_the_bytes_are_drfs_written_by_orjson(data, monkeypatch):
    expected = DRFJSONRenderer().render(data)
    monkeypatch.setattr(renderers.json, "dumps", lambda *a, **k: pytest.fail("DRF's own path was taken"))
    assert JSONRenderer().render(data) == expected


@pytest.mark.parametrize("data", [None, {"big": 2**70}, {1: "a key that is not a string"}])
def test_what_orjson_cannot_write_is_written_by_drf(data):
    assert JSONRenderer().render(data) == DRFJSONRenderer().render(data)


def test_indented_answers_are_drfs_own():
    media_type = "application/json; indent=4"
    rendered = JSONRenderer().render(PAGE, media_type)
    assert rendered == DRFJSONRenderer().render(PAGE, media_type) and b'\n    "count"' in rendered
