"""The schema: migrations match the models, constraints hold, and a fresh home sets itself up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from catalog.models import Asset, AssetTag, ModelVersion, Tag

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def test_migrations_match_the_models():
    call_command("makemigrations", "catalog", "--check", "--dry-run", verbosity=0)  # exits 1 on changes


def make_asset(sha="a" * 64, **fields) -> Asset:
    values = {
        "uri": f"file:///store/{sha}",
        "filename": "x.png",
        "size": 10,
        "width": 4,
        "height": 3,
        "format": "PNG",
    }
    return Asset.objects.create(sha256=sha, **{**values, **fields})


def test_the_same_content_cannot_be_two_assets():
    make_asset()
    with pytest.raises(IntegrityError), transaction.atomic():
        make_asset()


def test_an_asset_has_a_tag_at_most_once_with_a_score_between_0_and_1():
    asset, tag = make_asset(), Tag.objects.create(name="cat")
    AssetTag.objects.create(asset=asset, tag=tag, score=0.5, source="model")
    with pytest.raises(IntegrityError), transaction.atomic():
        AssetTag.objects.create(asset=asset, tag=tag, score=0.7, source="model")
    other = Tag.objects.create(name="dog")
    for bad in (
        {"score": 1.5, "source": "model"},
        {"score": 0.5, "source": "robot"},
        {"score": 0.5, "source": "model", "review": "maybe"},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            AssetTag.objects.create(asset=asset, tag=other, **bad)


def test_tag_parents_point_one_way():
    cat, animal = Tag.objects.create(name="cat"), Tag.objects.create(name="animal")
    cat.parents.add(animal)
    assert list(cat.parents.all()) == [animal]
    assert list(animal.parents.all()) == []
    assert list(animal.children.all()) == [cat]


def test_any_of_finds_what_in_finds_with_the_ids_as_one_parameter():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assets = [make_asset(str(i) * 64) for i in range(1, 5)]
    tag = Tag.objects.create(name="cat")
    for asset in assets[:3]:
        AssetTag.objects.create(asset=asset, tag=tag, score=0.5, source=AssetTag.Source.HUMAN)
    ids = [assets[0].pk, assets[2].pk, assets[3].pk, 10**9]
    for lookup in ("in", "any_of"):
        assert sorted(Asset.objects.filter(**{f"pk__{lookup}": ids}).values_list("pk", flat=True)) == sorted(
            ids[:3]
        )
        assert list(Asset.objects.exclude(**{f"pk__{lookup}": ids})) == [assets[1]]
        rows = AssetTag.objects.filter(**{f"asset_id__{lookup}": ids}).values_list("asset_id", flat=True)
        assert sorted(rows) == sorted(ids[:2])
        assert not Asset.objects.filter(**{f"pk__{lookup}": []}).exists()  # nothing matches none
        assert Asset.objects.exclude(**{f"pk__{lookup}": []}).count() == 4
    with CaptureQueriesContext(connection) as queries:
        list(Asset.objects.filter(pk__any_of=ids))
    if connection.vendor == "postgresql":  # one array, however many ids
        assert "= ANY(" in queries[0]["sql"]


def test_a_model_version_is_unique_by_name_and_version():
    ModelVersion.objects.create(name="m", version="1")
    ModelVersion.objects.create(name="m", version="2")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="m", version="1")


def test_runtime_setup_creates_the_home_and_migrates_a_fresh_sqlite_catalog(tmp_path):
    home = tmp_path / "fresh" / "home"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "IMGTAG_STORAGE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env["IMGTAG_HOME"] = str(home)
    script = (
        "from catalog import runtime; runtime.setup()\n"
        "from django.db.migrations.executor import MigrationExecutor\n"
        "from django.db import connection\n"
        "from catalog.models import Asset\n"
        "executor = MigrationExecutor(connection)\n"
        "plan = executor.migration_plan(executor.loader.graph.leaf_nodes())\n"
        "print(Asset.objects.count(), len(plan))\n"
    )
    for _ in range(2):  # the second run finds nothing to migrate
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["0", "0"]
    assert (home / "catalog.sqlite3").is_file()
    assert (home / "storage").is_dir()
