"""Indexes for a catalog of a million assets (measured by ``tests/bench/bench_scale.py``).

- ``catalog_assettag_tag_asset``: ``(tag, asset)`` with the score, review and source included (on
  PostgreSQL): a search term's assets come from the index alone, newest first. It replaces the
  ``(tag, score)`` index and the ``tag`` foreign key's own index.
- ``catalog_asset_sample``: the ids of the catalog's sample (1 asset in 64, in runs of 8), which
  large results are counted and their facets estimated from (:data:`catalog.models.IN_SAMPLE`).
- ``catalog_assettag_model_asset``: ``(model_version, asset)`` replaces the ``model_version``
  key's own index, so a model facet filter's look-up per asset has an index of its own (SQLite,
  without statistics, used to read a whole version's rows per asset through the old one).
- The ``asset`` foreign key loses its own index (``(asset, tag)`` is unique, so indexed) and
  ``reviewed_by``'s index becomes partial (only reviewed rows): fewer indexes to update on each
  worker commit.

The new indexes are made before the old ones are dropped. On PostgreSQL this locks writes to
the tables while the indexes are built: about 15 s at a million assets (6.3 million tag rows) on the
2-core development machine.
"""

import django.db.models.deletion
import django.db.models.expressions
import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0005_tagthreshold_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(
                condition=models.Q(
                    django.db.models.lookups.Exact(
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                models.F("id"), "/", models.Value(8)
                            ),
                            "%%",
                            models.Value(64),
                        ),
                        0,
                    )
                ),
                fields=["id"],
                name="catalog_asset_sample",
            ),
        ),
        migrations.AddIndex(
            model_name="assettag",
            index=models.Index(
                fields=["tag", "asset"],
                include=("score", "review", "source"),
                name="catalog_assettag_tag_asset",
            ),
        ),
        migrations.AddIndex(
            model_name="assettag",
            index=models.Index(
                condition=models.Q(("reviewed_by__isnull", False)),
                fields=["reviewed_by"],
                name="catalog_assettag_reviewer",
            ),
        ),
        migrations.AddIndex(
            model_name="assettag",
            index=models.Index(fields=["model_version", "asset"], name="catalog_assettag_model_asset"),
        ),
        migrations.RemoveIndex(
            model_name="assettag",
            name="catalog_assettag_tag_score",
        ),
        migrations.AlterField(
            model_name="assettag",
            name="asset",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="asset_tags",
                to="catalog.asset",
            ),
        ),
        migrations.AlterField(
            model_name="assettag",
            name="reviewed_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="assettag",
            name="tag",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="asset_tags",
                to="catalog.tag",
            ),
        ),
        migrations.AlterField(
            model_name="assettag",
            name="model_version",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="asset_tags",
                to="catalog.modelversion",
            ),
        ),
    ]
