"""A stage's summary: printed for the person or the script that ran it, and handed to Airflow.

Every pipeline stage ends with one summary dict. It is printed as JSON with ``--json`` (the DAGs
always pass it; :mod:`dags.imgtag_stage` reads the last JSON object on stdout) or as one readable
line, and, inside a Kubernetes pod started by the ``KubernetesPodOperator``, written to
``/airflow/xcom/return.json`` as well, where the XCom sidecar picks it up.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The folder the KubernetesPodOperator's XCom sidecar shares with the stage's container.
XCOM_DIR = Path("/airflow/xcom")


def emit(summary: dict, as_json: bool, text: str) -> None:
    """Print a stage's summary (JSON with ``--json``, else ``text``) and, inside a pod, hand it to Airflow."""
    if as_json:
        print_json(summary)
    else:
        print(text)
    if XCOM_DIR.is_dir():
        (XCOM_DIR / "return.json").write_text(json.dumps(summary, default=str))


def print_json(value) -> None:
    """``value`` as indented JSON on stdout (dates and paths as strings)."""
    print(json.dumps(value, indent=2, default=str))
