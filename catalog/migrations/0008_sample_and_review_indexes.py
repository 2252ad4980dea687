"""``catalog_assettag_sample``: the tag rows of the catalog's sample (1 asset in 64, the same
sample as ``catalog_asset_sample``), by tag, with the score, review and source included. What
a threshold would keep of a tag with more than :data:`catalog.thresholds.SAMPLE_ABOVE` machine
scores is counted on them (the thresholds page: a few thousand index entries for the commonest
tag of a million-asset catalog instead of a quarter million). Only the sample's rows are in it,
so a worker's commit updates it for one row in 64.

``catalog_assettag_reviewed``: the rows people decided on (review ``accepted`` or ``rejected``:
a few percent), by asset. A review-state facet filter (``accepted``, ``added``, ``rejected``)
and its count read them, instead of looking into every asset's rows until enough match (the
newest assets first: at a million assets with 4% reviewed, about 25,000 assets for a count).

``catalog_asset_created``: an asset's upload time by id, from the index alone: a month facet
filter checks it for each asset of a tag (a heap page read each before), the month facet for
each asset it counts.
"""

import django.db.models.expressions
import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_tag_counts"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["id"], include=("created_at",), name="catalog_asset_created"),
        ),
        migrations.AddIndex(
            model_name="assettag",
            index=models.Index(
                condition=models.Q(
                    django.db.models.lookups.Exact(
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                models.F("asset_id"), "/", models.Value(8)
                            ),
                            "%%",
                            models.Value(64),
                        ),
                        0,
                    )
                ),
                fields=["tag", "asset"],
                include=("score", "review", "source"),
                name="catalog_assettag_sample",
            ),
        ),
        migrations.AddIndex(
            model_name="assettag",
            index=models.Index(
                condition=models.Q(("review__in", ["accepted", "rejected"])),
                fields=["asset"],
                include=("review", "source", "score"),
                name="catalog_assettag_reviewed",
            ),
        ),
    ]
