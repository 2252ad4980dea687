"""Uploads while the broker is down, and nightly retagging, against the real RabbitMQ."""

import sqlite3

from tests.pipelines.tagging.test_worker import tagged_count, write_images


def test_upload_with_the_broker_down_stays_pending_then_requeue_publishes_it(env, tmp_path):
    photos = write_images(tmp_path / "photos", 5)
    down = env.json("import", "--queue", str(photos), IMGTAG_AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    assert down["imported"] == 5 and down["published"] == 0
    assert "RabbitMQ at 127.0.0.1:1 is not reachable" in down["broker_error"]
    assert env.sql("select status, count(*) from catalog_asset group by status") == [("pending", 5)]

    assert env.json("requeue", "--pending")["pending"]["published"] == 5
    assert env.json("drain")["tagged"] == 5
    assert tagged_count(env) == 5


def test_importing_pending_files_again_publishes_nothing_more(env, tmp_path):
    """Issue 25: ``import --queue`` of files already pending published them again (each then
    tagged twice). Only new files are published; pending ones are counted and left to their message."""
    photos = write_images(tmp_path / "photos", 4, seed=7)
    first = env.json("import", "--queue", str(photos))
    assert (first["imported"], first["published"], first["already_pending"]) == (4, 4, 0)
    write_images(tmp_path / "photos", 6, seed=7)  # the same four, and two more
    again = env.json("import", "--queue", str(photos))
    assert (again["imported"], again["published"], again["already_pending"], again["duplicates"]) == (
        2,
        2,
        4,
        4,
    )
    assert env.depth(env.queue) == 6  # one message per photo
    plain = env.run("import", "--queue", str(photos))
    assert "6 still pending, not published again" in plain.stdout
    assert env.json("drain")["received"] == 6
    after = env.json("import", "--queue", str(photos))  # tagged now: duplicates, nothing pending
    assert (after["published"], after["already_pending"], after["duplicates"]) == (0, 0, 6)
    assert env.depth(env.queue) == 0


def test_nightly_retag_requeues_stale_machine_tags_and_keeps_human_decisions(env, tmp_path):
    env.run("import", str(write_images(tmp_path / "photos", 5, seed=4)))  # tagged in process
    with sqlite3.connect(env.home / "catalog.sqlite3") as db:  # pretend an older model tagged them
        db.execute(
            "insert into catalog_modelversion (name, version, created_at) values ('old-model', '1', '2026-01-01')"
        )
        old = db.execute("select id from catalog_modelversion where name = 'old-model'").fetchone()[0]
        db.execute("update catalog_assettag set model_version_id = ?", (old,))
        kept = db.execute("select id, asset_id from catalog_assettag order by id limit 1").fetchone()
        db.execute("update catalog_assettag set review = 'accepted', score = 0.123 where id = ?", (kept[0],))

    summary = env.json("requeue", "--stale-model", "--batch-size", "2")["stale_model"]
    assert summary["published"] == 5 and summary["batches"] == 3
    assert env.json("drain")["tagged"] == 5

    versions = env.sql(
        "select m.name, t.review, count(*) from catalog_assettag t join catalog_modelversion m "
        "on m.id = t.model_version_id group by 1, 2"
    )
    assert ("old-model", "accepted", 1) in versions  # the person's decision is untouched
    assert not [v for v in versions if v[0] == "old-model" and v[1] == "suggested"]
    assert env.sql("select review, score from catalog_assettag where id = ?", kept[0]) == [
        ("accepted", 0.123)
    ]
    assert env.json("requeue", "--stale-model")["stale_model"]["published"] == 0  # nothing left to do
