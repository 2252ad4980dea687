"""Commands for the tagging queue's operators: drain it, run a worker, requeue assets, dead letters.

A broker that cannot be reached ends these with exit status 75 (``ExitCode.UNAVAILABLE``: try
again later), a queue declared with other arguments than the settings give it with 2.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core import metrics
from core.errors import ExitCode
from pipelines.cli.common import fail, load_tagger, open_catalog, out, settings
from pipelines.cli.output import emit, print_json
from pipelines.tagging import requeue as requeueing

PANEL = "Queue operators"
app = typer.Typer(rich_help_panel=PANEL)


DATABASE_WAIT_HELP = (
    "Seconds to keep the messages held while the catalog's database does not answer (the batch is "
    "tried again with backoff); then they go back to the queue and the command exits 75."
)


def _consumer(metrics_port: int | None, database_wait: float):
    # lazy: RabbitMQ's client and the tagger engine
    from pipelines.tagging.worker import Consumer

    # lazy: TF Serving's protos are not in the catalog image
    from serving.current import get_tagger

    open_catalog()
    if metrics_port:
        metrics.serve(metrics_port)
    load_tagger()  # load the model before the first message
    # follows a newly promoted champion between batches
    consumer = Consumer(get_tagger, settings(), database_wait=database_wait)
    consumer.install_signal_handlers()
    return consumer


def _run_consumer(consumer, as_json: bool, **limits) -> None:
    summary = consumer.run(**limits).as_dict()
    emit(
        summary,
        as_json,
        f"tagged {summary['tagged']}, dead-lettered {summary['dead_lettered']} "
        f"{summary['dead_letter_reasons'] or ''} in {summary['seconds']} s",
    )


@app.command(rich_help_panel=PANEL)
def drain(
    max_messages: int | None = typer.Option(None, help="Stop after this many messages."),
    max_seconds: float | None = typer.Option(
        None, help="Stop after this many seconds (the current batch finishes)."
    ),
    idle_seconds: float = typer.Option(2.0, help="Stop when no message came for this long."),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics on this port."),
    database_wait: float = typer.Option(120.0, min=0, help=DATABASE_WAIT_HELP),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the summary as JSON (also written to /airflow/xcom/return.json in a pod).",
    ),
):
    """Tag what is waiting in the RabbitMQ tagging queue, in batches, then exit.

    Tags are committed before messages are acked; bad messages go to the dead-letter queue
    (see `imgtag dead list`). A dropped database connection is re-opened and the batch tagged
    again. Exit status 75 when the broker cannot be reached, or the database stays away for
    --database-wait seconds (the messages are back in the queue then).
    """
    consumer = _consumer(metrics_port, database_wait)
    _run_consumer(
        consumer, as_json, max_messages=max_messages, max_seconds=max_seconds, idle_seconds=idle_seconds
    )


@app.command(rich_help_panel=PANEL)
def worker(
    metrics_port: int | None = typer.Option(9100, help="Serve Prometheus metrics on this port (0: off)."),
    database_wait: float = typer.Option(120.0, min=0, help=DATABASE_WAIT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON when stopped."),
):
    """Tag messages from the RabbitMQ tagging queue until SIGTERM (the current batch finishes).

    A dropped database connection is re-opened and the batch tagged again; a database away for
    --database-wait seconds ends the worker with exit status 75, its messages back in the queue.
    """
    consumer = _consumer(metrics_port or None, database_wait)
    _run_consumer(consumer, as_json, idle_seconds=None)


@app.command(rich_help_panel=PANEL)
def requeue(
    pending: bool = typer.Option(
        False, "--pending", help="Publish assets still pending (e.g. uploaded while the broker was down)."
    ),
    stale_model: bool = typer.Option(
        False,
        "--stale-model",
        help="Publish retag messages for assets whose machine tags came from another model version.",
    ),
    batch_size: int = typer.Option(500, help="Assets read and published per batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Put catalog assets (back) on the tagging queue. Human-reviewed tags are never changed."""
    # lazy: TF Serving's protos are not in the catalog image
    from serving.current import current_model

    if not (pending or stale_model):
        fail("say what to requeue: --pending, --stale-model, or both", ExitCode.USAGE)
    open_catalog()
    summary = {}
    if pending:
        summary["pending"] = requeueing.requeue_pending(settings(), batch_size)
    if stale_model:
        model = current_model(settings())
        summary["stale_model"] = requeueing.requeue_stale(model.name, model.version, settings(), batch_size)
    emit(summary, as_json, "; ".join(f"{k}: published {v['published']}" for k, v in summary.items()))


dead_app = typer.Typer(
    help="The dead-letter queue: messages that could not be tagged, with their reasons.", no_args_is_help=True
)
app.add_typer(dead_app, name="dead", rich_help_panel=PANEL)


@dead_app.command("list")
def dead_list(
    limit: int = typer.Option(100, help="Show at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """Show dead letters and why they died; they stay in the queue."""
    letters = requeueing.dead_letters(settings(), limit)
    if as_json:
        print_json(letters)
        return
    table = Table("reason", "error", "message", title=f"{len(letters)} dead letter(s)")
    for letter in letters:
        table.add_row(str(letter["reason"]), str(letter["error"]), json.dumps(letter["message"])[:80])
    out.print(table)


@dead_app.command("replay")
def dead_replay(
    limit: int | None = typer.Option(None, help="Replay at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Move dead letters back to the tagging queue (once their cause is fixed)."""
    summary = requeueing.replay_dead(settings(), limit)
    emit(summary, as_json, f"replayed {summary['replayed']}")
