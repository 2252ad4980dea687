"""Nightly retag: at 02:00 UTC, and whenever a new champion model is promoted.

Re-queues what the current model should (re)tag, then tags it:

1. `requeue_pending` — `imgtag requeue --pending --json`: publishes assets still `pending`
   because their tagging message never reached the broker (uploaded while it was down).
2. `requeue_stale_model` — `imgtag requeue --stale-model --batch-size <batch_size> --json`:
   publishes a retag message for each asset whose machine tags came from an older model
   version, in batches. Human-reviewed tags are never changed: the retag only replaces machine
   tags that nobody reviewed.
3. `drain` — `imgtag drain --max-seconds <max_seconds> --json`: tags what is queued (the
   `streaming_tagging` DAG consumes the same queue, so whatever is left is tagged there).

Scheduled by the cron *or* the champion asset (`imgtag://models/imgtag-tagger/champion`),
which the promotion stage of `training_pipeline` and the `rollback_champion` DAG update: a new
champion (or a rolled-back one) retags what another model tagged within minutes, not at 02:00.
The DAG is active as soon as Airflow parses it (`is_paused_upon_creation=False`): Airflow
queues asset-triggered runs only for active DAGs, so a paused `nightly_retag` would let the
first promotion pass unnoticed.

**Missed slots** (a decision, not an accident). When Airflow first parses this DAG, it waits
for the next 02:00 rather than running the slot that passed (`run_immediately=timedelta(0)`, and no
`start_date`, which would override it): starting the platform at noon does not start a retag of
the whole library at once. After that, a scheduler that was down over 02:00 runs the most recent
missed night once when it comes back (`catchup=False`: one run, not one per missed night).
Nothing is lost either way: each run requeues everything still stale or pending, and a promotion
triggers a run at once.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag
from imgtag_stage import CHAMPION_ASSET, MODEL_RESOURCES, stage


@dag(
    dag_id="nightly_retag",
    schedule=AssetOrTimeSchedule(
        # The first 02:00 is the next one, not the one that passed: see "Missed slots" above.
        # A zero buffer, not False: False still runs a slot that passed less than a tenth of the
        # interval ago (first parsed at 03:00, it would retag the library at once).
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=timedelta(0)),
        assets=CHAMPION_ASSET,
    ),
    catchup=False,
    is_paused_upon_creation=False,  # paused, it would ignore the champion asset's events
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    doc_md=__doc__,
    tags=["imgtag", "tagging", "retag"],
    default_args={"owner": "mlops", "retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "batch_size": Param(
            500,
            type="integer",
            minimum=1,
            maximum=10000,
            description="Assets read and published per batch by the stale-model requeue.",
        ),
        "max_seconds": Param(
            3600,
            type="integer",
            minimum=5,
            maximum=5400,
            description="Stop the final drain after this many seconds (the current batch finishes).",
        ),
    },
)
def nightly_retag():
    requeue_pending = stage(
        "requeue_pending",
        ["requeue", "--pending", "--json"],
        execution_timeout=timedelta(minutes=30),
    )
    requeue_stale_model = stage(
        "requeue_stale_model",
        ["requeue", "--stale-model", "--batch-size", "{{ params.batch_size }}", "--json"],
        execution_timeout=timedelta(minutes=60),
    )
    drain = stage(
        "drain",
        ["drain", "--max-seconds", "{{ params.max_seconds }}", "--json"],
        resources=MODEL_RESOURCES,
        execution_timeout=timedelta(hours=2),
    )
    requeue_pending >> requeue_stale_model >> drain


nightly_retag()
