"""``imgtag platform``: the whole platform on this machine (see :mod:`pipelines.platform`)."""

from __future__ import annotations

import signal as signals
import time

import typer
from rich.markup import escape

from core.errors import ExitCode
from pipelines.airflow_client import AirflowError, airflow_password
from pipelines.cli.common import err, out, settings
from pipelines.platform import Platform, PlatformError, Ports, find_prometheus

PANEL = "The platform"
app = typer.Typer(rich_help_panel=PANEL)


@app.command(rich_help_panel=PANEL)
def platform(
    airflow_port: int = typer.Option(8080, envvar="IMGTAG_AIRFLOW_PORT", help="Airflow's UI and REST API."),
    mlflow_port: int = typer.Option(
        5000, envvar="IMGTAG_MLFLOW_PORT", help="MLflow's UI and tracking server."
    ),
    catalog_port: int = typer.Option(8000, envvar="IMGTAG_CATALOG_PORT", help="The catalog (gunicorn)."),
    worker_metrics_port: int = typer.Option(
        9100, envvar="IMGTAG_WORKER_METRICS_PORT", help="The tagging worker's Prometheus metrics."
    ),
    prometheus_port: int = typer.Option(
        9090, envvar="IMGTAG_PROMETHEUS_PORT", help="Prometheus, when found."
    ),
    airflow_worker_logs_port: int = typer.Option(
        8793, envvar="IMGTAG_AIRFLOW_WORKER_LOGS_PORT", help="Airflow's task log server."
    ),
    airflow_trigger_logs_port: int = typer.Option(
        8794, envvar="IMGTAG_AIRFLOW_TRIGGER_LOGS_PORT", help="Airflow's triggerer log server."
    ),
    airflow_db: str | None = typer.Option(
        None,
        envvar="IMGTAG_AIRFLOW_DB",
        help="Airflow's metadata database, postgres://user@host:port/db (default: SQLite in IMGTAG_HOME/airflow).",
    ),
    prometheus: bool = typer.Option(
        True,
        "--prometheus/--no-prometheus",
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
    prometheus_binary = find_prometheus(settings()) if prometheus else None
    if prometheus and prometheus_binary is None:
        err.print(
            "[yellow]Prometheus not found (run `make tools`, or set IMGTAG_PROMETHEUS): starting without it[/yellow]"
        )
    ports = Ports(
        airflow=airflow_port,
        mlflow=mlflow_port,
        catalog=catalog_port,
        worker_metrics=worker_metrics_port,
        prometheus=prometheus_port,
        airflow_worker_logs=airflow_worker_logs_port,
        airflow_trigger_logs=airflow_trigger_logs_port,
    )
    runner = Platform(
        settings(),
        ports=ports,
        airflow_db=airflow_db,
        prometheus=prometheus_binary,
        worker=worker,
        say=lambda line: err.print(line, highlight=False),
    )
    raise typer.Exit(_run_until_stopped(runner))


def _run_until_stopped(runner: Platform) -> int:
    """Start the platform, print where everything is, watch it until Ctrl-C or SIGTERM (or a
    component dies), then stop every process it started. Returns the exit status."""
    stopping = []

    def stop_on(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    signals.signal(signals.SIGTERM, stop_on)
    code = ExitCode.OK
    try:
        seconds = runner.start()
        _print_platform(runner, seconds)
        while True:
            runner.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    except (PlatformError, AirflowError) as exc:  # said here, before the stop below reports what it stopped
        err.print(f"[red]{escape(str(exc))}[/red]")
        code = exc.exit_code
    finally:
        signals.signal(signals.SIGTERM, signals.SIG_IGN)  # a second SIGTERM must not cut the stop short
        signals.signal(signals.SIGINT, signals.SIG_IGN)
        if runner.components:
            err.print("stopping the platform...")
            stopped = runner.stop()
            err.print(f"stopped {stopped} processes")
    return code


def _print_platform(runner, seconds: float) -> None:
    """Every URL, how to sign in, where the logs are: plain lines, easy to copy."""
    lines = [f"imgtag platform is up in {seconds:.0f} s ({runner.memory_bytes() / 2**30:.1f} GiB resident)"]
    for component in runner.components:
        if component.url:
            lines.append(f"  {component.url:<32} {component.note}")
    lines.append(f"  Airflow: sign in as admin / {airflow_password(runner.airflow_password_file())}")
    catalog_password = runner.catalog_password_file()
    if catalog_password.is_file():
        lines.append(
            f"  catalog: sign in as admin / {catalog_password.read_text().strip()} "
            "(more users: imgtag createuser NAME --role end_user --password ...)"
        )
    lines.append(f"  logs in {runner.logs}; Ctrl-C stops everything")
    out.print("\n".join(lines), highlight=False)
