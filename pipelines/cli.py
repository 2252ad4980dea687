"""The ``imgtag`` command: tag, import, search and serve images from one machine.

Every stage of imgtag is a subcommand here, so the same code runs from a terminal, an
Airflow task and a Kubernetes pod. Settings come from the environment (see
:mod:`core.settings`); ``IMGTAG_HOME`` (default ``./var``) holds the catalog database
and the stored originals.
"""

from __future__ import annotations

import json
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="imgtag",
    help=(
        "Automated image tagging for digital asset management.\n\n"
        "Start with `imgtag import FOLDER`, then `imgtag search cat` or `imgtag serve`. "
        "IMGTAG_HOME (default ./var) holds the catalog and originals; DATABASE_URL selects "
        "PostgreSQL instead of the embedded SQLite file."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console(soft_wrap=True)  # long paths and messages stay on one line
err = Console(stderr=True, soft_wrap=True)


def _tagger():
    from serving.current import get_tagger

    with err.status("Loading the tagging model..."):
        return get_tagger()


def _catalog(migrate: bool | None = None):
    """Open the catalog: on SQLite migrated as needed, on PostgreSQL only checked (see catalog.runtime)."""
    from catalog import runtime

    try:
        runtime.setup(migrate=migrate)
    except runtime.CatalogUnavailable as exc:
        _fail(str(exc))


XCOM_DIR = Path("/airflow/xcom")


def _emit(summary: dict, as_json: bool, text: str) -> None:
    """Print a stage's summary (JSON with ``--json``) and, inside a pod, hand it to Airflow."""
    print(json.dumps(summary, indent=2, default=str) if as_json else text)
    if XCOM_DIR.is_dir():
        (XCOM_DIR / "return.json").write_text(json.dumps(summary, default=str))


def _settings():
    from core.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)


def _format_tags(tags, limit: int = 6) -> str:
    return ", ".join(f"{t.name} {t.score:.2f}" for t in tags[:limit]) or "(no tag above its threshold)"


@app.command()
def tag(
    files: list[Path] = typer.Argument(..., help="Image files to tag (JPEG, PNG, WebP, BMP, TIFF, GIF)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list: {path, tags:[{name, score}]} or {path, error}."
    ),
):
    """Tag image files and print their tags, without storing anything.

    Exits with status 1 when any file could not be tagged (the others are still tagged).
    """
    tagger = _tagger()
    results = list(tagger.tag_images((str(p), Path(p), str(p)) for p in files))
    if as_json:
        payload = [
            {"path": r.key, "tags": [{"name": t.name, "score": t.score} for t in r.tags]}
            if r.ok
            else {"path": r.key, "error": str(r.error)}
            for r in results
        ]
        print(json.dumps(payload, indent=2))
    else:
        table = Table(expand=True)
        table.add_column("file", overflow="fold", ratio=1)
        table.add_column("tags", ratio=2)
        for r in results:
            table.add_row(r.key, _format_tags(r.tags, 10) if r.ok else f"[red]error: {r.error}[/red]")
        out.print(table)
    raise typer.Exit(1 if any(not r.ok for r in results) else 0)


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(
        ..., help="Files and folders; folders are searched recursively for images."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print the summary as JSON: {"imported", "duplicates", "failed": [{path, error}]}.',
    ),
    queue: bool = typer.Option(
        False,
        "--queue",
        help="Do not tag here: publish a tagging message per new image to RabbitMQ "
        "(imgtag drain or imgtag worker tags them).",
    ),
):
    """Import images into the catalog: store each original once (by sha256) and tag it.

    With --queue the images are stored and published for tagging; if the broker is down they
    stay pending and `imgtag requeue --pending` publishes them later.

    Running it again on the same folder imports nothing new. Exits with status 1 when any
    file failed; the summary names each one and why.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipelines.tagging.importer import collect_files, import_files, queue_files

    try:
        files = collect_files(paths)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    _catalog()
    tagger = None if queue else _tagger()
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not files,
    )
    with progress:
        task = progress.add_task("import", total=len(files))
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        if queue:
            summary = queue_files(files, _settings(), on_progress=advance)
        else:
            summary = import_files(files, tagger, on_progress=advance)
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        out.print(
            f"Imported {summary.imported}, duplicates {summary.duplicates}, failed {len(summary.failed)} "
            f"(of {len(files)} files)."
        )
        for failure in summary.failed:
            out.print(f"  [red]failed[/red] {failure['error']}")
    raise typer.Exit(1 if summary.failed else 0)


@app.command()
def search(
    query: str = typer.Argument(
        ..., help="Tags with AND / OR / NOT and parentheses, e.g. 'cat AND NOT \"coffee mug\"'."
    ),
    min_score: float = typer.Option(0.0, help="Only tags scored at least this."),
    source: Optional[str] = typer.Option(None, help="Only tags from this source: model or human."),
    review: Optional[str] = typer.Option(
        None, help="Only tags in this review state: suggested, accepted or rejected."
    ),
    limit: int = typer.Option(50, help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    """Find assets in the catalog by tag."""
    _catalog()
    from catalog import services
    from catalog.query import QuerySyntaxError

    try:
        assets = services.search(query, min_score=min_score, source=source, review=review)
    except (QuerySyntaxError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    total = assets.count()
    rows = [services.asset_summary(a) for a in assets[:limit]]
    if as_json:
        print(json.dumps({"count": total, "results": rows}, indent=2, default=str))
        return
    table = Table("id", "file", "size", "tags", title=f"{total} asset(s) match {query!r}")
    for row in rows:
        tags = ", ".join(f"{t['name']} {t['score']:.2f}" for t in row["tags"][:6])
        table.add_row(str(row["id"]), row["filename"], f"{row['width']}x{row['height']}", tags)
    out.print(table)


def _consumer(metrics_port: Optional[int]):
    from core import metrics
    from pipelines.tagging.worker import Consumer

    settings = _settings()
    _catalog()
    if metrics_port:
        metrics.serve(metrics_port)
    from serving.current import get_tagger

    _tagger()  # load the model before the first message
    consumer = Consumer(get_tagger, settings)  # follows a newly promoted champion between batches
    consumer.install_signal_handlers()
    return consumer


def _run_consumer(consumer, as_json: bool, **limits) -> None:
    from core.broker import BrokerUnavailable, QueueMismatch

    try:
        summary = consumer.run(**limits).as_dict()
    except BrokerUnavailable as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(3)
    except QueueMismatch as exc:
        _fail(str(exc))
    _emit(
        summary,
        as_json,
        f"tagged {summary['tagged']}, dead-lettered {summary['dead_lettered']} "
        f"{summary['dead_letter_reasons'] or ''} in {summary['seconds']} s",
    )


@app.command()
def drain(
    max_messages: Optional[int] = typer.Option(None, help="Stop after this many messages."),
    max_seconds: Optional[float] = typer.Option(
        None, help="Stop after this many seconds (the current batch finishes)."
    ),
    idle_seconds: float = typer.Option(2.0, help="Stop when no message came for this long."),
    metrics_port: Optional[int] = typer.Option(None, help="Serve Prometheus metrics on this port."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the summary as JSON (also written to /airflow/xcom/return.json in a pod).",
    ),
):
    """Tag what is waiting in the RabbitMQ tagging queue, in batches, then exit.

    Tags are committed before messages are acked; bad messages go to the dead-letter queue
    (see `imgtag dead list`). Exit status 3 when the broker cannot be reached.
    """
    consumer = _consumer(metrics_port)
    _run_consumer(
        consumer, as_json, max_messages=max_messages, max_seconds=max_seconds, idle_seconds=idle_seconds
    )


@app.command()
def worker(
    metrics_port: Optional[int] = typer.Option(9100, help="Serve Prometheus metrics on this port (0: off)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON when stopped."),
):
    """Tag messages from the RabbitMQ tagging queue until SIGTERM (the current batch finishes)."""
    consumer = _consumer(metrics_port or None)
    _run_consumer(consumer, as_json, idle_seconds=None)


@app.command()
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
    from pipelines.tagging import requeue as requeueing
    from core.broker import BrokerUnavailable
    from serving.current import current_model

    if not (pending or stale_model):
        err.print("[red]say what to requeue: --pending, --stale-model, or both[/red]")
        raise typer.Exit(2)
    settings = _settings()
    _catalog()
    summary = {}
    try:
        if pending:
            summary["pending"] = requeueing.requeue_pending(settings, batch_size)
        if stale_model:
            model = current_model(settings)
            summary["stale_model"] = requeueing.requeue_stale(model.name, model.version, settings, batch_size)
    except BrokerUnavailable as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(3)
    _emit(summary, as_json, "; ".join(f"{k}: published {v['published']}" for k, v in summary.items()))


dead_app = typer.Typer(
    help="The dead-letter queue: messages that could not be tagged, with their reasons.", no_args_is_help=True
)
app.add_typer(dead_app, name="dead")


@dead_app.command("list")
def dead_list(
    limit: int = typer.Option(100, help="Show at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """Show dead letters and why they died; they stay in the queue."""
    from pipelines.tagging.requeue import dead_letters

    letters = dead_letters(_settings(), limit)
    if as_json:
        print(json.dumps(letters, indent=2, default=str))
        return
    table = Table("reason", "error", "message", title=f"{len(letters)} dead letter(s)")
    for letter in letters:
        table.add_row(str(letter["reason"]), str(letter["error"]), json.dumps(letter["message"])[:80])
    out.print(table)


@dead_app.command("replay")
def dead_replay(
    limit: Optional[int] = typer.Option(None, help="Replay at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Move dead letters back to the tagging queue (once their cause is fixed)."""
    from pipelines.tagging.requeue import replay_dead

    summary = replay_dead(_settings(), limit)
    _emit(summary, as_json, f"replayed {summary['replayed']}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
):
    """Serve the web pages (/), the REST API (/api/, schema at /api/schema/) and the admin (/admin/).

    Sign in with a user from `imgtag createuser NAME --password ...`. Static files (CSS, JS) are
    served by WhiteNoise; no collectstatic is needed.
    """
    _catalog()
    from django.core.management import call_command

    base = f"http://{host}:{port}"
    out.print(f"web pages on {base}/  API on {base}/api/  admin on {base}/admin/  (Ctrl+C stops)")
    call_command("runserver", f"{host}:{port}", use_reloader=False, use_static_handler=False)


@app.command()
def migrate():
    """Create or update the catalog's database schema (SQLite file or DATABASE_URL).

    On PostgreSQL this is the only command that migrates (the others check the schema and say to
    run it); it holds an advisory lock, so several started together migrate once."""
    _catalog(migrate=True)
    from django.conf import settings as django_settings

    database = django_settings.DATABASES["default"]
    out.print(f"the catalog's schema is up to date ({database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']})")


@app.command()
def platform(
    airflow_port: int = typer.Option(8080, envvar="IMGTAG_AIRFLOW_PORT", help="Airflow's UI and REST API."),
    mlflow_port: int = typer.Option(5000, envvar="IMGTAG_MLFLOW_PORT", help="MLflow's UI and tracking server."),
    catalog_port: int = typer.Option(8000, envvar="IMGTAG_CATALOG_PORT", help="The catalog (gunicorn)."),
    worker_metrics_port: int = typer.Option(
        9100, envvar="IMGTAG_WORKER_METRICS_PORT", help="The tagging worker's Prometheus metrics."
    ),
    prometheus_port: int = typer.Option(9090, envvar="IMGTAG_PROMETHEUS_PORT", help="Prometheus, when found."),
    airflow_worker_logs_port: int = typer.Option(
        8793, envvar="IMGTAG_AIRFLOW_WORKER_LOGS_PORT", help="Airflow's task log server."
    ),
    airflow_trigger_logs_port: int = typer.Option(
        8794, envvar="IMGTAG_AIRFLOW_TRIGGER_LOGS_PORT", help="Airflow's triggerer log server."
    ),
    airflow_db: Optional[str] = typer.Option(
        None, envvar="IMGTAG_AIRFLOW_DB",
        help="Airflow's metadata database, postgres://user@host:port/db (default: SQLite in IMGTAG_HOME/airflow).",
    ),
    prometheus: bool = typer.Option(
        True, "--prometheus/--no-prometheus",
        help="Scrape the worker with Prometheus (IMGTAG_PROMETHEUS, `make tools`' Debian package, or PATH).",
    ),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Run a tagging worker on the queue."),
):
    """Start the whole platform on this machine and keep it running until Ctrl-C or SIGTERM.

    Airflow 3 (api-server, scheduler with the LocalExecutor, dag-processor, triggerer) on the
    project's dags/, the MLflow tracking server and UI on the store the training stages write
    to, the catalog under gunicorn, a tagging worker, and Prometheus when it is installed. All
    on 127.0.0.1, logs under IMGTAG_HOME/platform/logs. It prints every URL and how to sign in
    once everything answers; Ctrl-C stops every process it started, the stages too. Refuses to
    start when a port is taken or RabbitMQ (IMGTAG_AMQP_URL) is unreachable.
    """
    import signal as signals
    import time

    from pipelines.platform import Platform, PlatformError, Ports, find_prometheus

    prometheus_binary = find_prometheus() if prometheus else None
    if prometheus and prometheus_binary is None:
        err.print("[yellow]Prometheus not found (run `make tools`, or set IMGTAG_PROMETHEUS): starting without it[/yellow]")
    ports = Ports(
        airflow=airflow_port, mlflow=mlflow_port, catalog=catalog_port, worker_metrics=worker_metrics_port,
        prometheus=prometheus_port, airflow_worker_logs=airflow_worker_logs_port,
        airflow_trigger_logs=airflow_trigger_logs_port,
    )
    runner = Platform(
        _settings(), ports=ports, airflow_db=airflow_db, prometheus=prometheus_binary, worker=worker,
        say=lambda line: err.print(line, highlight=False),
    )
    stopping = []

    def stop_on(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    signals.signal(signals.SIGTERM, stop_on)
    code = 0
    try:
        seconds = runner.start()
        _print_platform(runner, seconds)
        while True:
            runner.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    except PlatformError as exc:
        err.print(f"[red]{exc}[/red]")
        code = 1
    finally:
        signals.signal(signals.SIGTERM, signals.SIG_IGN)  # a second SIGTERM must not cut the stop short
        signals.signal(signals.SIGINT, signals.SIG_IGN)
        if runner.components:
            err.print("stopping the platform...")
            stopped = runner.stop()
            err.print(f"stopped {stopped} processes")
    raise typer.Exit(code)


def _print_platform(runner, seconds: float) -> None:
    """Every URL, how to sign in, where the logs are: plain lines, easy to copy."""
    from pipelines.platform import airflow_password

    lines = [f"imgtag platform is up in {seconds:.0f} s ({runner.memory_bytes() / 2**30:.1f} GiB resident)"]
    for component in runner.components:
        if component.url:
            lines.append(f"  {component.url:<32} {component.note}")
    lines.append(f"  Airflow: sign in as admin / {airflow_password(runner.airflow_password_file())}")
    catalog_password = runner.catalog_password_file()
    if catalog_password.is_file():
        lines.append(f"  catalog: sign in as admin / {catalog_password.read_text().strip()} "
                     "(more users: imgtag createuser NAME --role end_user --password ...)")
    lines.append(f"  logs in {runner.logs}; Ctrl-C stops everything")
    out.print("\n".join(lines), highlight=False)


class Role(str, Enum):
    """The roles of :mod:`catalog.roles`."""

    content_manager = "content_manager"
    end_user = "end_user"


@app.command()
def createuser(
    username: str = typer.Argument(..., help="Name of the new user."),
    role: Role = typer.Option(
        Role.content_manager,
        "--role",
        help="content_manager: upload, review tags and everything an end user does; "
        "end_user: search, view and download.",
    ),
    password: Optional[str] = typer.Option(
        None,
        help="Password for the web pages and the admin (prompted when omitted and --superuser is "
        "given): 8 characters or more, not a common one, not all digits, not like the user name. "
        "Without one the user has only the API token.",
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of standard input."
    ),
    superuser: bool = typer.Option(False, "--superuser", help="Every permission, and the admin site."),
):
    """Create a user with a role and print its API token (send it as 'Authorization: Token <token>')."""
    if password is not None and password_stdin:
        _fail("give the password with --password or --password-stdin, not both")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("--password-stdin: the first line of standard input is empty")
    _catalog()
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from rest_framework.authtoken.models import Token

    from catalog.roles import assign_role

    users = get_user_model()
    if users.objects.filter(username=username).exists():
        _fail(f"user {username!r} already exists")
    if superuser and not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if password:  # the validators of AUTH_PASSWORD_VALIDATORS, as the admin applies them
        from django.contrib.auth.password_validation import validate_password
        from django.core.exceptions import ValidationError

        try:
            validate_password(password, users(username=username))
        except ValidationError as exc:
            _fail("password refused: " + " ".join(exc.messages))
    create = users.objects.create_superuser if superuser else users.objects.create_user
    with transaction.atomic():
        user = create(username=username, password=password)
        assign_role(user, role.value)
        token, _ = Token.objects.get_or_create(user=user)
    kind = "superuser" if superuser else f"role {role.value}"
    sign_in = "" if password else "; no password, so API only"
    out.print(f"created {username} ({kind}{sign_in}); API token: {token.key}")


# --- training stages ---


def _fail(message: str, code: int = 2):
    err.print(f"[red]{message}[/red]")
    raise typer.Exit(code)


def _path_list(values: Optional[list[str]]) -> list[Path]:
    """Repeated options whose values may each hold several comma-separated paths (empties ignored).

    A value naming an existing file or folder is taken whole, so a path with a comma still works.
    """
    paths = []
    for value in values or []:
        parts = [value] if value.strip() and Path(value.strip()).exists() else value.split(",")
        paths.extend(Path(p.strip()) for p in parts if p.strip())
    return paths


@app.command()
def ingest(
    folder: Optional[list[str]] = typer.Option(
        None, "--folder", metavar="DIR",
        help="A folder-per-tag tree <DIR>/<tag>/.../<image>: the first-level folder names the tag. "
        "Repeatable; one value may also list several folders separated by commas.",
    ),
    manifest: Optional[list[str]] = typer.Option(
        None, "--manifest", metavar="FILE",
        help="A CSV manifest with a 'path,tags' header (tags separated by ';') or JSON lines "
        '({"path": ..., "tags": [...]}); paths relative to the manifest\'s folder. '
        "Repeatable; commas separate several.",
    ),
    catalog: bool = typer.Option(
        False,
        "--catalog/--no-catalog",
        help="Also take every catalog asset with a tag a person accepted or added.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR",
        help="The dataset folder to write; a dataset already there is replaced.",
    ),
    run_name: Optional[str] = typer.Option(
        None, "--run-name", metavar="NAME",
        help="Instead of --out: write <IMGTAG_RUNS_DIR>/<run name>/dataset (characters other than "
        "letters, digits, '.', '_' and '-' become '_', so an Airflow run id is a safe folder and S3 key).",
    ),
    split: str = typer.Option(
        "0.7,0.15,0.15", "--split", metavar="TRAIN,VAL,TEST",
        help="Train, val and test shares (summing to 1); by sha256, stable.",
    ),
    salt: str = typer.Option(
        "", "--salt", metavar="TEXT", help="Any text: a different (still stable) split assignment."
    ),
    as_json: bool = typer.Option(
        False, "--json",
        help="Print the summary as JSON (also written to /airflow/xcom/return.json in a pod).",
    ),
):
    """Gather labelled images into one dataset folder: images by sha256, manifest.jsonl, dataset.json.

    Duplicates (the same bytes from any sources) become one example with the union of their
    tags. The split follows from each image's sha256, so an image keeps its split in every
    run. Images whose header cannot be read are kept for `imgtag validate` to report.
    Exit status 2 when a source cannot be read (the message names the file and line).
    """
    from catalog.runtime import CatalogUnavailable
    from pipelines.training.ingest import IngestError
    from pipelines.training.ingest import ingest as run_ingest

    if (out is None) == (run_name is None):
        _fail("say where the dataset goes: --out DIR or --run-name NAME (one of them)")
    if out is None:
        out = _settings().runs_dir / re.sub(r"[^A-Za-z0-9._-]", "_", run_name).strip(".") / "dataset"
    try:
        fractions = tuple(float(share) for share in split.split(","))
    except ValueError:
        _fail(f"--split {split!r}: expected three numbers such as 0.7,0.15,0.15")
    try:
        result = run_ingest(
            out, folders=_path_list(folder), manifests=_path_list(manifest), catalog=catalog,
            fractions=fractions, salt=salt, progress=sys.stderr.isatty(),
        )
    except (IngestError, CatalogUnavailable) as exc:
        _fail(str(exc))
    summary = result.to_dict()
    splits = ", ".join(f"{name} {count}" for name, count in summary["images_per_split"].items())
    _emit(summary, as_json, f"dataset {summary['dataset']}: {summary['images']} images ({splits}), "
                            f"{len(summary['tags'])} tags, {summary['duplicates_merged']} duplicates merged, "
                            f"{summary['unreadable']} unreadable")


@app.command()
def validate(
    dataset: Path = typer.Argument(..., help="A dataset folder written by `imgtag ingest`."),
    report: Optional[Path] = typer.Option(None, help="Report folder (default: <dataset>/../validation)."),
    min_examples: int = typer.Option(10, help="Images each tag must label, over the whole dataset."),
    allowed_tags: Optional[Path] = typer.Option(
        None, help="File of allowed tags, one per line (# comments); any other tag fails."
    ),
    min_side: int = typer.Option(32, help="Smallest width and height, in pixels."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Validate a dataset with Great Expectations and decode every image; write the report.

    Rules: schema, tag names, allowed tags, examples per tag, no split leakage, image sizes,
    files present and decodable. Writes report.md, report.json and gx_result.json. Exits 1
    when a rule fails: the report, naming each bad file and tag, goes to stderr and the JSON
    summary to stdout.
    """
    from pipelines.training.dataset import DatasetError
    from pipelines.training.validate import default_report_dir, read_allowed_tags
    from pipelines.training.validate import validate as run_validation

    try:
        result = run_validation(
            dataset,
            report or default_report_dir(dataset),
            min_examples_per_tag=min_examples,
            allowed_tags=read_allowed_tags(allowed_tags) if allowed_tags else None,
            min_side=min_side,
            progress=sys.stderr.isatty(),
        )
    except (DatasetError, OSError) as exc:
        _fail(str(exc))
    summary = result.to_dict()
    if not result.passed:
        err.print(result.text(), markup=False, highlight=False)
        _emit(summary, True, "")
        raise typer.Exit(1)
    _emit(summary, as_json, f"dataset {dataset} passed validation: {summary['images_checked']} images, "
                            f"{len(summary['tags'])} tags; report {summary['report']}")


@app.command("version")
def version_(
    dataset: Path = typer.Argument(..., help="A dataset folder written by `imgtag ingest`."),
    remote: Optional[str] = typer.Option(
        None, help="DVC remote to push to (default IMGTAG_DVC_REMOTE; '' for none)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Version a dataset with DVC (dvc add, dvc push); prints its hash.

    The hash names the exact images and labels a model was trained on: the training run and
    the registered model carry it, and `dvc pull` brings the data back.
    """
    from pipelines.training.versioning import VersioningError, version_dataset

    try:
        summary = version_dataset(dataset, remote=remote, settings=_settings())
    except (FileNotFoundError, VersioningError) as exc:
        _fail(str(exc))
    _emit(summary, as_json, f"dataset {summary['dataset']}: DVC hash {summary['dataset_hash']}")


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="A dataset folder written by `imgtag ingest`."),
    out: Optional[Path] = typer.Option(None, help="Model folder (default: <dataset>/../model)."),
    dataset_hash: Optional[str] = typer.Option(None, help="The dataset's DVC hash (`imgtag version`)."),
    epochs: int = typer.Option(8, help="Epochs of training the learned head on the frozen backbone."),
    learning_rate: float = typer.Option(1e-3, help="Adam learning rate of the head training."),
    batch_size: int = typer.Option(32, help="Images per training step."),
    image_size: int = typer.Option(224, help="Input side in pixels (the backbone was trained at 224)."),
    fine_tune_blocks: int = typer.Option(
        0, help="Then fine-tune this many top blocks of the backbone (0-16)."
    ),
    fine_tune_epochs: int = typer.Option(0, help="Epochs of fine-tuning (at a tenth of the learning rate)."),
    distill_weight: float = typer.Option(
        1.0,
        help="While fine-tuning, hold the ImageNet head to its pretrained outputs with this weight "
        "(learning without forgetting; keeps the general tags); 0 lets it drift.",
    ),
    seed: int = typer.Option(0, help="Random seed (shuffling, augmentation, head initialisation)."),
    base: str = typer.Option(
        "starter",
        help="starter: begin from the starter model's learned head and keep its tags (person, everyday "
        "objects) that this dataset does not label; none: learn only this dataset's tags.",
    ),
    run_name: Optional[str] = typer.Option(None, help="MLflow run name (the DAG passes its run id)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Keras' progress bar per epoch."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Train the tagger on a dataset: the learned head first, then optionally the top blocks.

    Logs parameters, per-epoch metrics, training curves and the dataset hash to an MLflow run
    (MLFLOW_TRACKING_URI, default a SQLite file in IMGTAG_HOME) and writes the model folder.
    """
    from pipelines.training.dataset import DatasetError
    from pipelines.training.train import TrainParams
    from pipelines.training.train import train as run_training

    params = TrainParams(
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        image_size=image_size,
        fine_tune_blocks=fine_tune_blocks,
        fine_tune_epochs=fine_tune_epochs,
        distill_weight=distill_weight,
        seed=seed,
        base=base,
    )
    try:
        with err.status(f"Training on {dataset}..."):
            result = run_training(
                dataset, out, params, dataset_hash=dataset_hash, run_name=run_name, settings=_settings(),
                verbose=2 if verbose else 0,
            )
    except (ValueError, DatasetError, FileNotFoundError) as exc:
        _fail(str(exc))
    summary = result.to_dict()
    _emit(summary, as_json, f"model {summary['model']} (MLflow run {summary['run_id']}): {summary['final']}")


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="A model folder written by `imgtag train`."),
    dataset: Path = typer.Argument(..., help="The dataset it was trained on."),
    run_id: Optional[str] = typer.Option(None, help="MLflow run to log metrics and plots to."),
    target_precision: float = typer.Option(
        0.9,
        help="Each tag's threshold is the lowest score reaching this precision on validation; a tag "
        "that cannot reach it is turned off (listed with the reason in thresholds.json).",
    ),
    min_positives: int = typer.Option(
        3, help="Validation images a tag needs before its threshold is chosen from them."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Evaluate a trained model: per-tag thresholds on val (learned and general tags), quality on test.

    Prints mAP, the share of test images with a correct tag and with no tag, the precision of
    emitted tags and person AP; per_tag.csv, plots and predictions.jsonl go to the report folder.
    """
    from pipelines.training.dataset import DatasetError
    from pipelines.training.evaluate import evaluate as run_evaluation

    try:
        with err.status("Evaluating..."):
            result = run_evaluation(model, dataset, run_id=run_id, target_precision=target_precision,
                                    min_positives=min_positives, settings=_settings())
    except (ValueError, DatasetError, FileNotFoundError) as exc:
        _fail(str(exc))
    summary = result.to_dict()
    person = "" if summary["person_ap"] is None else f", person AP {summary['person_ap']}"
    _emit(summary, as_json, f"test mAP {summary['map']} (common tags {summary['map_common']}), micro F1 "
                            f"{summary['micro_f1']}; images with a correct tag {summary['images_with_correct_tag']}, "
                            f"with no tag {summary['no_tag']}, precision {summary['precision']}{person}; "
                            f"{len(summary['tags_off'])} tags off; report in {summary['report']}")


@app.command("register")
def register_(
    model: Path = typer.Argument(..., help="A model folder written by `imgtag train`."),
    run_id: str = typer.Option(..., help="The training run (MLflow) the model came from."),
    thresholds: Optional[Path] = typer.Option(None, help="thresholds.json from `imgtag evaluate`."),
    dag_run_id: Optional[str] = typer.Option(None, help="Airflow run id, recorded on the model version."),
    learned_only: bool = typer.Option(
        False, "--learned-only/--with-general",
        help="Export only the learned tags, or (default) the general ImageNet-derived tags beside them.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Export the SavedModel and register it in MLflow as a new version of the tagger."""
    from pipelines.training.registry import register

    try:
        with err.status("Exporting and registering..."):
            summary = register(model, run_id=run_id, thresholds=thresholds, dag_run_id=dag_run_id,
                               learned_only=learned_only, settings=_settings())
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _emit(summary, as_json, f"registered {summary['model_name']} version {summary['model_version']}")


@app.command()
def gate(
    model_version: str = typer.Argument(..., help="The challenger: a registered model version."),
    dataset: Path = typer.Argument(..., help="The dataset whose test split both models are scored on."),
    metric: str = typer.Option("map", help="map, micro_f1 or macro_f1."),
    margin: float = typer.Option(0.01, help="How much better than the champion the challenger must be."),
    floor: float = typer.Option(
        0.5, help="The least the challenger must reach (the only bar with no champion)."
    ),
    allow_dropped_tags: bool = typer.Option(
        False,
        "--allow-dropped-tags/--refuse-dropped-tags",
        help="Let a challenger pass that cannot emit tags the champion emits (refused by default).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Compare a challenger with the champion on the same test split.

    The champion is what TF Serving serves (the `champion` label in IMGTAG_MODEL_BASE/models.config);
    before the first promotion, the starter model (what tags until then). Both are scored on
    every tag the test labels can check. A tie on a saturated metric (both near 1.0) is broken
    by the second metric (micro F1 for mAP).

    Exit status: 0 when the challenger passes; 3 when it is rejected (the training DAG then
    skips promotion), either way with the report printed and written next to the dataset;
    2 for bad input (no such version or dataset); 4 when the MLflow alias `champion` does not
    point at what is served (it was moved by hand): nothing is scored, and the red message says
    how to put the alias back (`imgtag models` shows both).
    """
    from pipelines.training.dataset import DatasetError
    from pipelines.training.registry import CHAMPION_DIVERGENCE_EXIT, GATE_REJECTED_EXIT, ChampionDivergence
    from pipelines.training.registry import gate as run_gate

    try:
        with err.status("Scoring challenger and champion..."):
            result = run_gate(model_version, dataset, metric=metric, margin=margin, floor=floor,
                              allow_dropped_tags=allow_dropped_tags, settings=_settings())
    except ChampionDivergence as exc:
        _fail(str(exc), CHAMPION_DIVERGENCE_EXIT)
    except (ValueError, DatasetError, FileNotFoundError) as exc:
        _fail(str(exc))
    summary = result.to_dict()
    _emit(summary, as_json, f"gate {'passed' if result.passed else 'REJECTED'}: {result.reason}")
    if not result.passed:
        err.print(f"[yellow]gate rejected model version {model_version}: {result.reason}[/yellow]")
        raise typer.Exit(GATE_REJECTED_EXIT)


@app.command()
def promote(
    model_version: str = typer.Argument(..., help="A registered model version (that passed the gate)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Serve a model version: the next numbered version in the TF Serving model repository
    (IMGTAG_MODEL_BASE), and the MLflow alias `champion`. Taggers pick it up on their next batch.

    With IMGTAG_SERVING_STATUS_URL (TF Serving's REST port) the `champion` label moves only once
    the server reports the new version loaded (up to IMGTAG_SERVING_LOAD_TIMEOUT seconds).
    Promoting the version already served copies nothing: it only points the MLflow alias back
    at it, which is how an alias moved by hand is put back (`imgtag models` says when)."""
    from pipelines.training.registry import promote as run_promote
    from serving.repository import RepositoryError

    try:
        summary = run_promote(model_version, settings=_settings())
    except (ValueError, FileNotFoundError, RepositoryError) as exc:
        _fail(str(exc))
    _emit(summary, as_json, f"serving version {summary['serving_version']} is model version "
                            f"{summary['model_version']} (champion)")


@app.command()
def rollback(
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Serve the previous champion again (model repository and MLflow alias).

    Each rollback goes one promotion further back. Taggers pick the restored version up on
    their next batch, but run from a terminal nothing retags what the rolled-back model tagged
    until `nightly_retag`'s next 02:00 slot. To roll back and retag at once, trigger the
    `rollback_champion` DAG in Airflow instead: it runs this command and updates the champion
    asset, which starts `nightly_retag`.
    """
    from pipelines.training.registry import rollback as run_rollback
    from serving.repository import RepositoryError

    try:
        summary = run_rollback(settings=_settings())
    except RepositoryError as exc:
        _fail(str(exc))
    _emit(summary, as_json, f"serving version {summary['serving_version']} again "
                            f"(was {summary['rolled_back_from']})")


@app.command()
def models(
    history: int = typer.Option(
        5, "--history", metavar="N", min=0, help="Show the last N promotions and rollbacks (0: none)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the status as JSON: serving_version, mlflow_version, served, run_id, dataset_hash, "
        "alias_version, agree, reason, history.",
    ),
):
    """Show the champion: the version TF Serving serves, where the MLflow alias `champion`
    points, and whether they agree; then the model repository's last promotions and rollbacks.

    What TF Serving serves (the `champion` label in IMGTAG_MODEL_BASE/models.config) is the
    champion: the taggers use it and the gate compares challengers with it. The MLflow alias
    must name the same version; only `imgtag promote` and `imgtag rollback` (and the DAGs that
    run them) move either. Exit status 0 when they agree; 4 when they do not (the alias was moved
    by hand, e.g. in the MLflow UI: the gate then refuses to run), with a red line saying how to
    put it back; 1 when the model repository or MLflow cannot be read.
    """
    from mlflow.exceptions import MlflowException
    from rich.markup import escape

    from pipelines.training.registry import CHAMPION_DIVERGENCE_EXIT, champion_history, champion_status
    from serving.repository import RepositoryError

    settings = _settings()
    try:
        status = champion_status(settings)
        entries = champion_history(settings, last=history)
    except RepositoryError as exc:
        _fail(str(exc), 1)
    except MlflowException as exc:  # MLflow unreachable or refusing: say so rather than guess
        _fail(f"cannot read the MLflow alias `champion` from {settings.mlflow_tracking_uri}: {exc}", 1)
    summary = {**status.to_dict(), "history": entries}
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_champion(status, entries)
    if not status.agree:
        err.print(f"[bold red]champion divergence: {escape(status.reason)}[/bold red]")
        raise typer.Exit(CHAMPION_DIVERGENCE_EXIT)


def _print_champion(status, entries: list[dict]) -> None:
    """``imgtag models`` as tables: the champion, then the repository's history."""
    from rich.markup import escape

    table = Table(title=f"champion of {status.model_name}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("served by TF Serving", status.served)
    if status.serving_version is not None:
        previous = "none" if status.previous is None else f"serving version {status.previous}"
        table.add_row("serving version", f"{status.serving_version} (previous: {previous})")
        table.add_row("MLflow version", status.mlflow_version or "none (not registered in MLflow)")
        for label, key in (("MLflow run", "run_id"), ("dataset hash", "dataset_hash")):
            if status.metadata.get(key):
                table.add_row(label, str(status.metadata[key]))
        if status.promoted_at:
            table.add_row("promoted at", status.promoted_at)
    alias = "none" if status.alias_version is None else f"version {status.alias_version}"
    table.add_row("MLflow alias `champion`", alias)
    table.add_row("agree", "[green]yes[/green]" if status.agree else "[bold red]NO[/bold red]")
    out.print(table)
    if status.agree:
        out.print(f"[green]{escape(status.reason)}[/green]")
    if entries:
        log = Table(
            title=f"last {len(entries)} promotions and rollbacks (newest first)",
            caption="serving, previous, rolled back: serving versions; MLflow: the served MLflow version",
        )
        for column in ("at (UTC)", "action", "serving", "MLflow", "previous", "rolled back"):
            log.add_column(column, no_wrap=True)
        for e in entries:
            at = str(e.get("at", ""))[:16].replace("T", " ")  # 2026-12-03T06:17:18+00:00: 2026-12-03 06:17
            previous = "-" if e.get("previous") is None else str(e["previous"])
            log.add_row(
                at, str(e.get("action", "")), str(e["version"]), str(e["mlflow_version"] or "-"), previous,
                str(e.get("rolled_back", "-")),
            )
        out.print(log)


starter_app = typer.Typer(
    help="The starter model: what tags before any promotion (person, everyday objects and the general "
    "ImageNet tags), rebuilt from labelled photos by the project's own stages.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(starter_app, name="starter")


@starter_app.command("show")
def starter_show(as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON.")):
    """Where the shipped starter model came from: data, dataset hash, parameters, test metrics."""
    from serving import starter

    head = starter.load_head()
    if head is None:
        _fail(f"{starter.STARTER_DIR}: no starter model is shipped; run `make starter-model`")
    provenance = head.provenance
    summary = {"version": head.version, "learned_tags": len(head.tags), **provenance}
    off = [t for t in head.tags if head.thresholds[t] == float("inf")]
    on = [t for t in head.tags if t not in off]
    metrics = provenance.get("metrics", {})
    data = provenance.get("data", {})
    lines = [
        f"{head.version} ({starter.STARTER_DIR})",
        f"built {provenance.get('created')} by `{provenance.get('command')}` at commit {provenance.get('git_commit', '?')[:12]}",
        f"data: {data.get('source')}; {data.get('photos')} photos and {data.get('crops')} crops, "
        f"DVC hash {provenance.get('dataset_hash')}",
        f"MLflow run {provenance.get('mlflow', {}).get('run_id')}; head of epoch {provenance.get('best_epoch', '?')}",
        f"test split ({metrics.get('images')} photos): a right tag on {metrics.get('images_with_correct_tag')}, "
        f"no tag on {metrics.get('no_tag')}, precision {metrics.get('precision')}, person AP {metrics.get('person_ap')}, "
        f"mAP over common tags {metrics.get('map_common')}",
        f"{len(on)} learned tags emitted: {', '.join(on)}",
        f"{len(off)} off (below the target precision {provenance.get('target_precision')}): {', '.join(off)}",
    ]
    _emit(summary, as_json, "\n".join(lines))


@starter_app.command("install")
def starter_install(as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")):
    """Put the starter model into the TF Serving model repository (IMGTAG_MODEL_BASE) as its first
    version, labelled champion, so TF Serving serves what the in-process tagger serves.

    Does nothing when a champion is already served. With IMGTAG_SERVING_STATUS_URL the label moves
    once TF Serving reports the version loaded."""
    from serving import starter
    from serving.repository import RepositoryError

    try:
        with err.status("Exporting the starter model..."):
            summary = starter.install(_settings())
    except (FileNotFoundError, RepositoryError) as exc:
        _fail(str(exc))
    text = (f"serving version {summary['serving_version']} is the starter model ({summary['starter']})"
            if summary["installed"] else f"nothing to do: {summary['reason']}")
    _emit(summary, as_json, text)


@starter_app.command("build")
def starter_build(
    data: Path = typer.Option(
        Path("../shared/data/dam-photos"), help="Labelled photos: manifest.csv (path,tags), boxes.csv, images/."
    ),
    work: Path = typer.Option(Path("var/starter-build"), help="Working folder (its own MLflow, DVC, datasets)."),
    crops: bool = typer.Option(True, "--crops/--no-crops", help="Also train on box crops of the photos."),
    epochs: int = typer.Option(40, help="Epochs of the head on the frozen backbone."),
    target_precision: float = typer.Option(0.9, help="The precision each tag's threshold must reach."),
    as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON."),
):
    """Rebuild the starter model from labelled photos: prepare (tags, people, box crops) → ingest →
    validate → version → train → evaluate → register, then write serving/starter_model/ and the
    calibrated general thresholds (core/data/tag_thresholds.csv). About 10 minutes on 2 cores."""
    from pipelines.training.build_starter import build

    if not (data / "manifest.csv").is_file():
        _fail(f"{data}: no manifest.csv; --data takes the dam-photos folder (../shared/data/dam-photos)")
    provenance = build(data, work, crops=crops, epochs=epochs, target_precision=target_precision)
    metrics = ", ".join(f"{k} {v}" for k, v in provenance["metrics"].items())
    _emit(provenance, as_json, f"starter model written: {provenance['learned_tags']} learned tags; test: {metrics}")


def main() -> None:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # imgtag reports bad files itself
    app()


if __name__ == "__main__":
    sys.exit(main())
