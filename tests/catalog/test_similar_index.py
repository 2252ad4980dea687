"""The similar-images index is saved and loaded, and stays up to date (SQLite and PostgreSQL)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog import services, similar
from catalog.models import AssetEmbedding
from tests.catalog.conftest import make_image
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_indexes():
    similar.forget_indexes()
    yield
    similar.forget_indexes()


def tagged(*images):
    assets = [services.ingest(data, f"{k}.png")[0] for k, data in enumerate(images)]
    services.tag_assets_in_process(assets, EmbeddingTagger())
    return assets


def test_a_new_process_loads_the_saved_index_and_reads_only_what_came_since(monkeypatch):
    first = tagged(make_image("red", 1), make_image("blue", 2))
    now = timezone.now()  # written a while ago, an hour apart
    AssetEmbedding.objects.filter(asset=first[0]).update(updated_at=now - timedelta(hours=2))
    AssetEmbedding.objects.filter(asset=first[1]).update(updated_at=now - timedelta(hours=1))
    saved = similar.save_index("fake-colour", "1")
    assert saved.parent == similar.index_folder() and saved.is_file()
    similar.forget_indexes()  # as in a new process
    read = []
    original = similar.VersionIndex.refresh
    monkeypatch.setattr(similar.VersionIndex, "refresh", lambda self: read.append(original(self)) or read[-1])
    [later] = tagged(make_image("red", 3))  # flagging near-duplicates looks into the index: it is loaded
    assert read == [1]  # only the one written after the save; building it again would read 3
    found = similar.similar_to_asset(first[0])
    assert [s.asset.pk for s in found] == [later.pk, first[1].pk]
    again = similar.save_index("fake-colour", "1")
    assert sorted(similar.index_folder().glob("*.usearch")) == [again]  # the older save is removed


def test_a_damaged_save_is_rebuilt_from_the_catalog():
    assets = tagged(make_image("red", 1), make_image("red", 2))
    saved = similar.save_index("fake-colour", "1")
    saved.write_bytes(b"half a file")
    similar.forget_indexes()
    assert [s.asset.pk for s in similar.similar_to_asset(assets[0])] == [assets[1].pk]


def test_nothing_to_save_for_a_model_without_embeddings():
    assert similar.save_index("fake-colour", "9") is None


def test_a_search_reads_only_what_was_written_since_the_last_one(monkeypatch):
    """Rows written together (one import) are taken in once, not again by every later search
    while they are younger than the settling window."""
    assets = tagged(make_image("red", 1), make_image("red", 2), make_image("blue", 3))  # indexed as tagged
    read = []
    original = similar.VersionIndex.refresh
    monkeypatch.setattr(similar.VersionIndex, "refresh", lambda self: read.append(original(self)) or read[-1])
    similar.similar_to_asset(assets[0])
    similar.similar_to_asset(assets[1])
    [later] = tagged(make_image("red", 4))
    found = similar.similar_to_asset(assets[0])
    # two searches read nothing again; tagging the fourth (its near-duplicate check) takes it in
    assert read == [0, 0, 1, 0]
    assert later.pk in [s.asset.pk for s in found]  # the one written since is found


def test_a_row_re_embedded_inside_the_window_replaces_its_vector():
    red, other = tagged(make_image("red", 1), make_image("red", 2))
    similar.similar_to_asset(red)  # the index holds both
    blue = AssetEmbedding.objects.get(asset=tagged(make_image("blue", 3))[0])
    AssetEmbedding.objects.filter(asset=other).update(vector=blue.vector, updated_at=timezone.now())
    found = similar.similar_to_asset(blue.asset)
    assert [s.asset.pk for s in found][0] == other.pk and found[0].score > 0.99


def test_a_saved_index_of_rows_written_together_loads_without_reading_them_again(monkeypatch):
    """An import (or a backfill) writes its embeddings within seconds of each other: a process
    that loads the saved index reads none of them again."""
    tagged(make_image("red", 1), make_image("blue", 2), make_image("red", 3))
    AssetEmbedding.objects.update(updated_at=timezone.now() - timedelta(hours=1))  # one stamp for all
    similar.forget_indexes()
    assert similar.save_index("fake-colour", "1") is not None
    similar.forget_indexes()  # as in a new process
    read = []
    original = similar.VersionIndex.refresh
    monkeypatch.setattr(similar.VersionIndex, "refresh", lambda self: read.append(original(self)) or read[-1])
    version = AssetEmbedding.objects.first().model_version_id
    assert len(similar.index_for(version).index) == 3 and read == [0]


@pytest.mark.django_db(transaction=True)  # the background thread reads through a connection of its own
def test_a_large_catch_up_is_read_in_the_background_while_pages_answer(monkeypatch, reader, viewer):
    """A page or an API call never waits on building the index (minutes at a million assets):
    until it holds something they say it is being built; then they answer from it."""
    import threading

    assets = tagged(make_image("red", 1), make_image("red", 2), make_image("blue", 3))
    similar.forget_indexes()  # as in a new process with no saved index
    monkeypatch.setattr(similar, "INLINE_UP_TO", 2)  # three embeddings to read: more than a page reads
    gate, original = threading.Event(), similar.VersionIndex._take_in
    monkeypatch.setattr(
        similar.VersionIndex, "_take_in", lambda self, rows: gate.wait(60) and original(self, rows)
    )

    with pytest.raises(similar.IndexNotReady) as building:
        similar.similar_to_asset(assets[0], wait=False)
    assert (building.value.taken, building.value.total, building.value.retry_after) == (0, 3, 30)
    answer = reader.get(f"/api/assets/{assets[0].pk}/similar/")
    assert answer.status_code == 503 and answer["Retry-After"] == "30"
    assert (
        answer.json()["reason"] == "similar_index_building"
        and "try again in a minute" in answer.json()["detail"]
    )
    page = viewer.get(f"/assets/{assets[0].pk}/")
    assert page.status_code == 200 and b'data-testid="similar-building"' in page.content
    builds = [thread for thread in threading.enumerate() if thread.name.startswith("similar-index-")]
    assert len(builds) == 1  # one build, however many pages asked

    gate.set()
    index = similar.index_for(AssetEmbedding.objects.first().model_version_id, wait=True)  # waits for it
    assert index.ready and len(index.index) == 3
    answer = reader.get(f"/api/assets/{assets[0].pk}/similar/")
    assert answer.status_code == 200 and [r["id"] for r in answer.json()["results"]][0] == assets[1].pk
    assert b'data-testid="similar-card"' in viewer.get(f"/assets/{assets[0].pk}/").content


@pytest.mark.django_db(transaction=True)  # the waiting thread reads through a connection of its own
def test_one_process_builds_the_index_and_the_others_load_what_it_saved():
    import fcntl
    import threading

    from django.db import connection

    tagged(make_image("red", 1), make_image("red", 2), make_image("blue", 3))
    AssetEmbedding.objects.update(updated_at=timezone.now() - timedelta(hours=1))  # settled long ago
    version = AssetEmbedding.objects.first().model_version_id
    similar.forget_indexes()
    folder = similar.index_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for saved in folder.glob("*.usearch"):
        saved.unlink()
    building = open(folder / f"v{version}.lock", "a")  # another process is building it
    fcntl.flock(building, fcntl.LOCK_EX)
    waiting = similar.VersionIndex(version, folder)  # nothing saved yet: it must build or wait
    read = []

    def update():
        read.append(waiting.update())
        connection.close()

    thread = threading.Thread(target=update)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not waiting.ready  # waits for the lock, reads nothing meanwhile
    builder = similar.VersionIndex(version)  # the other process: builds, saves, lets go
    builder.refresh()
    builder.folder = folder
    builder.save()
    fcntl.flock(building, fcntl.LOCK_UN)
    building.close()
    thread.join(60)
    assert read == [0] and len(waiting.index) == 3 and waiting.ready  # loaded, not read again
