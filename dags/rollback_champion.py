"""Roll back the champion: serve the previous champion model again, then retag with it at once.

Triggered by hand (no schedule), when the model a promotion brought in turns out worse than the
one before it. One task, `rollback`, runs `imgtag rollback --json`:

- the TF Serving model repository labels the previous champion `champion` again (the rolled-back
  version stays on disk, no longer served), and the MLflow alias `champion` follows it (or is
  removed when the restored champion is the starter model, which MLflow never registered);
- the task updates the champion asset (`imgtag://models/imgtag-tagger/champion`), as the
  promotion stage of `training_pipeline` does, so `nightly_retag` starts at once and retags
  what the rolled-back model tagged. Human-reviewed tags are never changed.

Running `imgtag rollback` in a terminal rolls back too, but updates no asset: the retag then
waits for `nightly_retag`'s next 02:00 slot. Each run goes one promotion further back, so
trigger it once per model to undo; with nothing to roll back to (only one promotion so far)
the task fails with the reason and changes nothing. It is never retried: a rollback is a
decision, not a transient fault. Its XCom is the rollback summary (`serving_version`,
`rolled_back_from`, `model_version`, `path`); `imgtag models` shows the champion afterwards.
The stage runs as a local process or as a Kubernetes pod, chosen by `IMGTAG_STAGE_EXECUTOR`
(see `dags/imgtag_stage.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag
from imgtag_stage import CHAMPION_ASSET, stage


@dag(
    dag_id="rollback_champion",
    schedule=None,  # triggered by hand
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    is_paused_upon_creation=False,  # paused, a trigger would wait in the queue
    max_active_runs=1,  # two rollbacks at once would race for the same previous champion
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["imgtag", "mlops"],
    default_args={"owner": "mlops", "retries": 0},
)
def rollback_champion():
    stage(
        "rollback",
        ["rollback", "--json"],
        outlets=[CHAMPION_ASSET],
        # with IMGTAG_SERVING_STATUS_URL, waits for TF Serving to load the restored version
        execution_timeout=timedelta(minutes=15),
    )


rollback_champion()
