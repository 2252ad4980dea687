"""Tag thresholds set by people, per tag and model (:class:`catalog.models.TagThreshold`)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="TagThreshold",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model_name", models.CharField(max_length=200)),
                ("model_version", models.CharField(max_length=100)),
                ("threshold", models.FloatField(help_text="a score at or above it keeps the tag; in (0, 1]")),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "tag",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="thresholds",
                        to="catalog.tag",
                    ),
                ),
                (
                    "updated_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["model_name", "model_version", "tag__name"],
                "indexes": [
                    models.Index(fields=["model_name", "model_version"], name="catalog_tagthreshold_model")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tag", "model_name", "model_version"), name="catalog_tagthreshold_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("threshold__gt", 0.0), ("threshold__lte", 1.0)),
                        name="catalog_tagthreshold_0_1",
                    ),
                ],
            },
        ),
    ]
