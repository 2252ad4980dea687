"""``catalog_assetembedding``: each asset's image embedding (256 bytes) and the model version
that made it, for similar images and near-duplicates; by model version, so a search reads only
the embeddings of the model that tags now."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0008_sample_and_review_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="AssetEmbedding",
            fields=[
                (
                    "asset",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="embedding",
                        serialize=False,
                        to="catalog.asset",
                    ),
                ),
                ("vector", models.BinaryField(help_text="int8 numbers, core.embedding.BYTES bytes")),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "model_version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="embeddings",
                        to="catalog.modelversion",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["model_version", "asset"], name="catalog_embedding_version")
                ],
            },
        ),
    ]
