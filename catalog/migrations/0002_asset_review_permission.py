"""The permission to review tags (accept, reject, add): ``catalog.review_asset``."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="asset",
            options={
                "ordering": ["-id"],
                "permissions": [("review_asset", "Can accept, reject and add the tags of assets")],
            },
        ),
    ]
