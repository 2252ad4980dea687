"""Per-tag asset counts kept by the database as tag rows are written (:mod:`catalog.counts`).

Creates ``catalog_tagcount`` (a tag's ``assets``: rows not rejected; ``machine``: rows a model
scored) and ``catalog_tagcountdelta`` (PostgreSQL: changes waiting to be folded), the triggers
on ``catalog_assettag`` that keep them, and fills the counts from the rows already there.

- SQLite: row triggers update ``catalog_tagcount`` directly.
- PostgreSQL: statement triggers (with transition tables) append each statement's net change per
  tag to ``catalog_tagcountdelta``; a ``TRUNCATE`` of the tag rows empties both tables.

The triggers are made before the counts are filled, in the migration's transaction: on
PostgreSQL ``CREATE TRIGGER`` makes writes to the tag rows wait until it commits, so no write
falls between the count and the first trigger. Filling reads every tag row once: about 5 s
for the 6.3 million rows of a million-asset catalog on the 2-core development machine.
"""

from django.db import migrations, models

SQLITE = [
    """
    CREATE TRIGGER catalog_tagcount_insert AFTER INSERT ON catalog_assettag
    BEGIN
        INSERT INTO catalog_tagcount (tag_id, assets, machine)
        VALUES (NEW.tag_id, NEW.review <> 'rejected', NEW.source = 'model')
        ON CONFLICT (tag_id) DO UPDATE
        SET assets = assets + excluded.assets, machine = machine + excluded.machine;
    END
    """,
    """
    CREATE TRIGGER catalog_tagcount_delete AFTER DELETE ON catalog_assettag
    BEGIN
        UPDATE catalog_tagcount
        SET assets = assets - (OLD.review <> 'rejected'), machine = machine - (OLD.source = 'model')
        WHERE tag_id = OLD.tag_id;
    END
    """,
    """
    CREATE TRIGGER catalog_tagcount_update AFTER UPDATE OF tag_id, review, source ON catalog_assettag
    WHEN OLD.tag_id <> NEW.tag_id
        OR (OLD.review <> 'rejected') <> (NEW.review <> 'rejected')
        OR (OLD.source = 'model') <> (NEW.source = 'model')
    BEGIN
        UPDATE catalog_tagcount
        SET assets = assets - (OLD.review <> 'rejected'), machine = machine - (OLD.source = 'model')
        WHERE tag_id = OLD.tag_id;
        INSERT INTO catalog_tagcount (tag_id, assets, machine)
        VALUES (NEW.tag_id, NEW.review <> 'rejected', NEW.source = 'model')
        ON CONFLICT (tag_id) DO UPDATE
        SET assets = assets + excluded.assets, machine = machine + excluded.machine;
    END
    """,
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS catalog_tagcount_{event}" for event in ("insert", "delete", "update")]

# The net change of a statement per tag: +1/-1 for each row that counts, as (tag_id, assets, machine).
_ROWS = "SELECT tag_id, {sign}(review <> 'rejected')::int AS assets, {sign}(source = 'model')::int AS machine FROM {table}"
_APPEND = """
    INSERT INTO catalog_tagcountdelta (tag_id, assets, machine)
    SELECT tag_id, SUM(assets), SUM(machine) FROM ({rows}) AS changes
    GROUP BY tag_id HAVING SUM(assets) <> 0 OR SUM(machine) <> 0;
"""


def _function(name: str, body: str) -> str:
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n{body}\n    RETURN NULL;\nEND\n$$"
    )


POSTGRESQL = [
    _function("catalog_tagcount_inserted", _APPEND.format(rows=_ROWS.format(sign="", table="new_rows"))),
    _function("catalog_tagcount_deleted", _APPEND.format(rows=_ROWS.format(sign="-", table="old_rows"))),
    _function(
        "catalog_tagcount_updated",
        _APPEND.format(
            rows=_ROWS.format(sign="", table="new_rows")
            + " UNION ALL "
            + _ROWS.format(sign="-", table="old_rows")
        ),
    ),
    _function(
        "catalog_tagcount_truncated",
        "    DELETE FROM catalog_tagcountdelta;\n    DELETE FROM catalog_tagcount;",
    ),
    "CREATE TRIGGER catalog_tagcount_insert AFTER INSERT ON catalog_assettag "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_tagcount_inserted()",
    "CREATE TRIGGER catalog_tagcount_delete AFTER DELETE ON catalog_assettag "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_tagcount_deleted()",
    "CREATE TRIGGER catalog_tagcount_update AFTER UPDATE ON catalog_assettag "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION catalog_tagcount_updated()",
    "CREATE TRIGGER catalog_tagcount_truncate AFTER TRUNCATE ON catalog_assettag "
    "FOR EACH STATEMENT EXECUTE FUNCTION catalog_tagcount_truncated()",
]
POSTGRESQL_DROP = [
    *(
        f"DROP TRIGGER IF EXISTS catalog_tagcount_{e} ON catalog_assettag"
        for e in ("insert", "delete", "update", "truncate")
    ),
    *(
        f"DROP FUNCTION IF EXISTS catalog_tagcount_{e}()"
        for e in ("inserted", "deleted", "updated", "truncated")
    ),
]

FILL = """
INSERT INTO catalog_tagcount (tag_id, assets, machine)
SELECT tag_id,
       SUM(CASE WHEN review <> 'rejected' THEN 1 ELSE 0 END),
       SUM(CASE WHEN source = 'model' THEN 1 ELSE 0 END)
FROM catalog_assettag GROUP BY tag_id
"""


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in ("sqlite", "postgresql"):
        raise NotImplementedError(
            f"tag counts are kept by triggers on SQLite and PostgreSQL only, not {vendor}"
        )
    for statement in SQLITE if vendor == "sqlite" else POSTGRESQL:
        schema_editor.execute(statement)
    schema_editor.execute(FILL)


def uninstall(apps, schema_editor):
    for statement in SQLITE_DROP if schema_editor.connection.vendor == "sqlite" else POSTGRESQL_DROP:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0006_scale_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="TagCount",
            fields=[
                (
                    "tag",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=models.deletion.CASCADE,
                        primary_key=True,
                        related_name="count",
                        serialize=False,
                        to="catalog.tag",
                    ),
                ),
                (
                    "assets",
                    models.BigIntegerField(
                        default=0, help_text="tag rows not rejected: assets that carry the tag"
                    ),
                ),
                (
                    "machine",
                    models.BigIntegerField(
                        default=0, help_text="tag rows from a model, any review: scored assets"
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="TagCountDelta",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tag_id", models.BigIntegerField()),
                ("assets", models.BigIntegerField()),
                ("machine", models.BigIntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["tag_id"], name="catalog_tagcountdelta_tag")],
            },
        ),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
