"""Streaming tagging: every 5 minutes, tag what waits in the RabbitMQ tagging queue.

One task, `drain`, runs `imgtag drain --max-seconds <max_seconds> --json`: it consumes the
`imgtag.tagging` queue in batches, commits the tags to the catalog and only then acks the batch,
and exits when the queue is empty or the time is up (the current batch finishes). Messages it
cannot tag go to the dead-letter queue with their reason (`imgtag dead list`).

One run at a time, no catch-up: a missed slot is covered by the next run, which drains
everything waiting. Its XCom is the drain summary (`received`, `tagged`, `dead_lettered`,
`dead_letter_reasons`, `reconnects`, `seconds`). The stage runs as a local process or as a
Kubernetes pod, chosen by `IMGTAG_STAGE_EXECUTOR` (see `dags/imgtag_stage.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag
from imgtag_stage import MODEL_RESOURCES, stage


@dag(
    dag_id="streaming_tagging",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    is_paused_upon_creation=False,  # active as soon as Airflow parses it
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=15),
    doc_md=__doc__,
    tags=["imgtag", "tagging", "streaming"],
    default_args={"owner": "mlops", "retries": 0},
    params={
        "max_seconds": Param(
            240,
            type="integer",
            minimum=5,
            maximum=3600,
            description="Stop draining after this many seconds (the current batch finishes).",
        ),
    },
)
def streaming_tagging():
    stage(
        "drain",
        ["drain", "--max-seconds", "{{ params.max_seconds }}", "--json"],
        resources=MODEL_RESOURCES,
        execution_timeout=timedelta(minutes=10),
    )


streaming_tagging()
