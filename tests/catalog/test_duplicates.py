"""Near-duplicates are flagged when embedded, grouped, and deleted with their files (SQLite and PostgreSQL)."""

import cv2
import numpy as np
import pytest

from catalog import duplicates, services, similar
from catalog.models import Asset, AssetEmbedding, NearDuplicate
from catalog.storage import get_storage
from catalog.thumbnails import thumbnail_path
from tests.catalog.conftest import make_image
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_indexes():
    similar.forget_indexes()
    yield
    similar.forget_indexes()


def resized(png: bytes) -> bytes:
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    small = cv2.resize(pixels, (pixels.shape[1] // 2, pixels.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def tagged(*named):
    assets = [services.ingest(data, name)[0] for name, data in named]
    services.tag_assets_in_process(assets, EmbeddingTagger())
    return assets


def test_a_copy_is_flagged_and_linked_to_its_original_not_refused():
    red = make_image("red", 1, size=(96, 128))
    original, other = tagged(("red.png", red), ("blue.png", make_image("blue", 2)))
    [copy] = tagged(("red-small.jpg", resized(red)))
    assert copy.status == Asset.Status.TAGGED  # stored and tagged as any upload
    flag = NearDuplicate.objects.get()
    assert (flag.asset_id, flag.of_id) == (copy.pk, original.pk) and flag.distance <= duplicates.DISTANCE
    [copy_of_copy] = tagged(("red-small-again.jpg", resized(resized(red))))
    assert NearDuplicate.objects.get(asset=copy_of_copy).of_id == original.pk  # one group: the first one's
    [group] = duplicates.groups()
    assert [a.pk for a in group.assets] == [original.pk, copy.pk, copy_of_copy.pk]
    assert duplicates.group_of(copy.pk).original == original and duplicates.group_of(other.pk) is None


def test_a_picture_like_another_but_not_a_copy_is_not_flagged():
    tagged(
        ("red-1.png", make_image("red", 1)),
        ("green.png", make_image("green", 2)),
        ("blue.png", make_image("blue", 3)),
    )
    assert not NearDuplicate.objects.exists()


def test_two_copies_in_one_batch_are_linked_and_tagging_again_flags_nothing_new():
    red = make_image("red", 1, size=(96, 128))
    original, copy = tagged(("red.png", red), ("red.jpg", resized(red)))
    assert list(NearDuplicate.objects.values_list("asset_id", "of_id")) == [(copy.pk, original.pk)]
    services.tag_assets_in_process([original, copy], EmbeddingTagger())
    assert NearDuplicate.objects.count() == 1


def test_deleting_removes_the_rows_the_original_and_the_thumbnail():
    red = make_image("red", 1, size=(96, 128))
    original, copy, second = tagged(
        ("red.png", red), ("red.jpg", resized(red)), ("red2.jpg", resized(resized(red)))
    )
    thumb = thumbnail_path(original.sha256)
    thumb.parent.mkdir(parents=True, exist_ok=True)
    thumb.write_bytes(b"cached")
    assert duplicates.delete_assets([original]) == 1
    assert (
        not Asset.objects.filter(pk=original.pk).exists()
        and not AssetEmbedding.objects.filter(asset=original).exists()
    )
    with pytest.raises(FileNotFoundError):
        get_storage().read(original.uri)
    assert not thumb.exists()
    # the copies kept: the first is now the group's original
    assert list(NearDuplicate.objects.values_list("asset_id", "of_id")) == [(second.pk, copy.pk)]
    assert get_storage().read(copy.uri)


def test_an_original_embedded_since_by_another_model_is_not_linked_across_models():
    red = make_image("red", 1, size=(96, 128))
    [original] = tagged(("red.png", red))  # model version 1: in its index now
    newer = EmbeddingTagger()
    newer.model_version = "2"
    services.tag_assets_in_process([original], newer)
    [copy] = tagged(("red.jpg", resized(red)))  # version 1 again: the index still holds the original
    assert not NearDuplicate.objects.exists()
    services.tag_assets_in_process([copy], newer)
    assert list(NearDuplicate.objects.values_list("asset_id", "of_id")) == [(copy.pk, original.pk)]
