"""Commands for MLOps: register a trained model, gate it against the champion, promote, roll back, inspect.

The champion is what TF Serving serves (:mod:`pipelines.training.champion`); these commands are the
only ones that move it. ``gate`` exits 3 (``ExitCode.GATE_REJECTED``) when the challenger is not
better, and ``gate`` and ``models`` exit 4 (``ExitCode.CHAMPION_DIVERGED``) when the MLflow alias
``champion`` does not name what is served.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from core.errors import ExitCode
from pipelines.cli.common import err, fail, option, out, settings
from pipelines.cli.output import emit, print_json

PANEL = "Data scientists and MLOps"
app = typer.Typer(rich_help_panel=PANEL)


@app.command("register", rich_help_panel=PANEL)
def register_(
    model: Path = typer.Argument(..., help="A model folder written by `imgtag train`."),
    run_id: str = typer.Option(..., help="The training run (MLflow) the model came from."),
    thresholds: Path | None = typer.Option(None, help="thresholds.json from `imgtag evaluate`."),
    dag_run_id: str | None = typer.Option(None, help="Airflow run id, recorded on the model version."),
    learned_only: bool = option("learned_only"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Export the SavedModel and register it in MLflow as a new version of the tagger."""
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.registry import register

    with err.status("Exporting and registering..."):
        summary = register(
            model,
            run_id=run_id,
            thresholds=thresholds,
            dag_run_id=dag_run_id,
            learned_only=learned_only,
            settings=settings(),
        )
    emit(summary, as_json, f"registered {summary['model_name']} version {summary['model_version']}")


@app.command(rich_help_panel=PANEL)
def gate(
    model_version: str = typer.Argument(..., help="The challenger: any registered model version."),
    dataset: str | None = typer.Argument(
        None,
        help="The dataset whose test split both models are scored on (default: the one the version "
        "was trained on).",
        show_default=False,
    ),
    metric: str = option("gate_metric"),
    margin: float = option("gate_margin"),
    floor: float = option("gate_floor"),
    replace_vocabulary: bool = option("replace_vocabulary"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Compare a registered model version with the champion on the same test split.

    The champion is what TF Serving serves (the `champion` label in IMGTAG_MODEL_BASE/models.config):
    the starter model, version 1, until a first promotion. Both are scored on every tag the test
    labels can check; the challenger passes when it beats the champion by the margin and drops
    none of its tags (the floor applies only when there is no champion). A tie on a saturated
    metric (both near 1.0) is broken by the second metric (micro F1 for mAP). Any registered
    version can be gated again, after a fix or against a new champion.

    The figures behind the verdict (both models' metrics, the margin, per-tag gains and losses)
    go to stderr, the report next to the dataset, and the verdict onto the MLflow version (tag
    `gate`) and its training run.

    Exit status: 0 when the challenger passes; 3 when it is rejected (the training DAG then
    skips promotion); 2 for bad input (no such version or dataset, the version is the champion);
    4 when the MLflow alias `champion` does not point at what is served (it was moved by hand):
    nothing is scored, and the red message says how to put the alias back (`imgtag models` shows both).
    """
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.gate import gate as run_gate

    with err.status("Scoring challenger and champion..."):  # a moved alias raises ChampionDivergence: exit 4
        result = run_gate(
            model_version,
            Path(dataset) if dataset else None,
            metric=metric,
            margin=margin,
            floor=floor,
            replace_vocabulary=replace_vocabulary,
            settings=settings(),
        )
    summary = result.to_dict()
    emit(summary, as_json, f"gate {'passed' if result.passed else 'REJECTED'}: {result.reason}")
    if not result.passed:
        err.print(
            f"[yellow]gate rejected model version {escape(str(model_version))}: {escape(result.reason)}[/yellow]"
        )
        raise typer.Exit(ExitCode.GATE_REJECTED)


@app.command(rich_help_panel=PANEL)
def promote(
    model_version: str = typer.Argument(..., help="A registered model version (that passed the gate)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Serve a model version under its own number in the TF Serving model repository
    (IMGTAG_MODEL_BASE), and move the MLflow alias `champion` to it. Taggers pick it up on their
    next batch and record that number on every tag. Any registered version can be served again:
    `imgtag promote 1` returns to the starter model.

    With IMGTAG_SERVING_STATUS_URL (TF Serving's REST port) the `champion` label moves only once
    the server reports the new version loaded (up to IMGTAG_SERVING_LOAD_TIMEOUT seconds).
    Promoting the version already served copies nothing: it only points the MLflow alias back
    at it, which is how an alias moved by hand is put back (`imgtag models` says when)."""
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.promotion import promote as run_promote

    summary = run_promote(model_version, settings=settings())
    emit(
        summary,
        as_json,
        f"version {summary['serving_version']} is the champion, served and under the MLflow alias",
    )


@app.command(rich_help_panel=PANEL)
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
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.promotion import rollback as run_rollback

    summary = run_rollback(settings=settings())
    emit(
        summary,
        as_json,
        f"version {summary['serving_version']} is the champion again (was {summary['rolled_back_from']})",
    )


@app.command(rich_help_panel=PANEL)
def models(
    history: int = typer.Option(
        5, "--history", metavar="N", min=0, help="Show the last N promotions and rollbacks (0: none)."
    ),
    versions: int = typer.Option(
        5,
        "--versions",
        metavar="N",
        min=0,
        help="Show the last N registered versions with their aliases and the gate's verdicts (0: none).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the status as JSON: serving_version, mlflow_version (one number), served, run_id, "
        "dataset_hash, alias_version, agree, reason, history, versions.",
    ),
):
    """Show the champion: the version TF Serving serves, where the MLflow alias `champion`
    points, and whether they agree; then the model repository's last promotions and rollbacks,
    and the last registered versions with their aliases and the gate's verdicts.

    One number names a model everywhere: MLflow's model version, the serving directory and the
    version the catalog records on each tag (version 1 is the starter model). What TF Serving
    serves (the `champion` label in IMGTAG_MODEL_BASE/models.config) is the champion: the taggers
    use it and the gate compares challengers with it. The MLflow alias must name the same
    version; only `imgtag promote` and `imgtag rollback` (and the DAGs that run them) move either.
    Exit status 0 when they agree; 4 when they do not (the alias was moved by hand, e.g. in the
    MLflow UI: the gate then refuses to run), with a red line saying how to put it back; 1 when
    the model repository or MLflow cannot be read.
    """
    from mlflow.exceptions import MlflowException

    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.champion import champion_history, champion_status, model_versions

    # lazy: TF Serving's protos are not in the catalog image
    from serving.repository import RepositoryError

    try:
        status = champion_status(settings())
        entries = champion_history(settings(), last=history)
        registered = model_versions(settings(), last=versions)
    except RepositoryError as exc:  # documented: exit 1 when the repository cannot be read
        fail(str(exc), ExitCode.FAILED)
    except MlflowException as exc:  # MLflow unreachable or refusing: say so rather than guess
        fail(f"cannot read the MLflow registry from {settings().mlflow_tracking_uri}: {exc}", ExitCode.FAILED)
    summary = {**status.to_dict(), "history": entries, "versions": registered}
    if as_json:
        print_json(summary)
    else:
        _print_champion(status, entries, registered)
    if not status.agree:
        err.print(f"[bold red]champion divergence: {escape(status.reason)}[/bold red]")
        raise typer.Exit(ExitCode.CHAMPION_DIVERGED)


def _print_champion(status, entries: list[dict], registered: list[dict]) -> None:
    """``imgtag models`` as tables: the champion, the repository's history, the last versions."""
    table = Table(title=f"champion of {status.model_name}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("served by TF Serving", status.served)
    if status.serving_version is not None:
        previous = "none" if status.previous is None else f"version {status.previous}"
        table.add_row("previous (a rollback serves it)", previous)
        if status.mlflow_version is None:
            table.add_row("MLflow version", "none (not registered in MLflow)")
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
        log = Table(title=f"last {len(entries)} promotions and rollbacks (newest first)")
        for column in ("at (UTC)", "action", "version", "previous", "rolled back"):
            log.add_column(column, no_wrap=True)
        for e in entries:
            at = str(e.get("at", ""))[:16].replace("T", " ")  # 2026-12-03T06:17:18+00:00: 2026-12-03 06:17
            previous = "-" if e.get("previous") is None else str(e["previous"])
            shown = str(e["version"])
            if e.get("mlflow_version") and str(e["mlflow_version"]) != shown:  # a repository numbered apart
                shown += f" (MLflow {e['mlflow_version']})"
            log.add_row(at, str(e.get("action", "")), shown, previous, str(e.get("rolled_back", "-")))
        out.print(log)
    if registered:
        verdicts = Table(title=f"last {len(registered)} registered versions (newest first)")
        for column in ("version", "aliases", "gate", "challenger / champion", "reason"):
            verdicts.add_column(column, overflow="fold", no_wrap=column != "reason")
        for v in registered:
            figures = ""
            if v["gate_challenger"]:
                figures = f"{v['gate_metric']} {v['gate_challenger']}"
                if v["gate_champion"]:
                    figures += f" / {v['gate_champion']} (v{v['gate_champion_version']})"
            verdict = {"passed": "[green]passed[/green]", "rejected": "[yellow]rejected[/yellow]"}.get(
                v["gate"] or "", "starter" if v["starter"] else "-"
            )
            verdicts.add_row(
                str(v["version"]),
                ", ".join(v["aliases"]) or "-",
                verdict,
                figures,
                escape(v["gate_reason"] or ""),
            )
        out.print(verdicts)
