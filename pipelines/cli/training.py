"""Commands for data scientists: the training stages from labelled images to a trained, evaluated model.

``ingest`` → ``validate`` → ``version`` → ``train`` → ``evaluate``; the training DAG runs them in
this order (then :mod:`pipelines.cli.models`' ``register``, ``gate`` and ``promote``). Each prints
its summary (JSON with ``--json``, handed to Airflow in a pod) and exits 2 on bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from core.errors import ExitCode
from pipelines.cli.common import err, fail, option, settings
from pipelines.cli.output import emit
from pipelines.training.layout import RunLayout

PANEL = "Data scientists and MLOps"
app = typer.Typer(rich_help_panel=PANEL)


def _path_list(values: list[str] | None) -> list[Path]:
    """Repeated options whose values may each hold several comma-separated paths (empties ignored).

    A value naming an existing file or folder is taken whole, so a path with a comma still works.
    """
    paths = []
    for value in values or []:
        parts = [value] if value.strip() and Path(value.strip()).exists() else value.split(",")
        paths.extend(Path(p.strip()) for p in parts if p.strip())
    return paths


@app.command(rich_help_panel=PANEL)
def ingest(
    folder: list[str] | None = option("folders", metavar="DIR"),
    manifest: list[str] | None = option("manifests", metavar="FILE"),
    catalog: bool = option("use_catalog"),
    out: Path | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="The dataset folder to write; a dataset already there is replaced.",
    ),
    run_name: str | None = typer.Option(
        None,
        "--run-name",
        metavar="NAME",
        help="Instead of --out: write <IMGTAG_RUNS_DIR>/<run name>/dataset (characters other than "
        "letters, digits, '.', '_' and '-' become '_', so an Airflow run id is a safe folder and S3 key).",
    ),
    split: str = typer.Option(
        "0.7,0.15,0.15",
        "--split",
        metavar="TRAIN,VAL,TEST",
        help="Train, val and test shares (summing to 1); by sha256, stable.",
    ),
    salt: str = typer.Option(
        "", "--salt", metavar="TEXT", help="Any text: a different (still stable) split assignment."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the summary as JSON (also written to /airflow/xcom/return.json in a pod).",
    ),
):
    """Gather labelled images into one dataset folder: images by sha256, manifest.jsonl, dataset.json.

    Duplicates (the same bytes from any sources) become one example with the union of their
    tags. The split follows from each image's sha256, so an image keeps its split in every
    run. Images whose header cannot be read are kept for `imgtag validate` to report.
    Only files under the allowed roots are read: IMGTAG_INGEST_ROOTS (':'-separated) where it is
    set, else the --folder folders and the manifests' folders; paths are resolved (symlinks and
    '..' too) first. Files elsewhere are not copied; `imgtag validate` names them and fails.
    Exit status 2 when a source cannot be read (the message names the file and line).
    """
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.ingest import ingest as run_ingest

    out = _dataset_folder(out, run_name)
    fractions = _fractions(split)
    folders, manifests = _path_list(folder), _path_list(manifest)
    # IMGTAG_INGEST_ROOTS (the platform's, the pods') is all there is; without it, what was given
    roots = settings().ingest_roots or (*folders, *(m.parent for m in manifests))
    result = run_ingest(
        out,
        folders=folders,
        manifests=manifests,
        catalog=catalog,
        fractions=fractions,
        salt=salt,
        progress=sys.stderr.isatty(),
        roots=roots,
    )
    summary = result.to_dict()
    for refusal in summary["refused"]:
        where = escape(f"{refusal['path']} ({refusal['source']})")
        err.print(f"[yellow]not read: {where} is outside the allowed roots[/yellow]", highlight=False)
    splits = ", ".join(f"{name} {count}" for name, count in summary["images_per_split"].items())
    emit(
        summary,
        as_json,
        f"dataset {summary['dataset']}: {summary['images']} images ({splits}), "
        f"{len(summary['tags'])} tags, {summary['negatives']} without a tag (negatives), "
        f"{summary['duplicates_merged']} duplicates merged, {summary['unreadable']} unreadable",
    )


def _dataset_folder(out: Path | None, run_name: str | None) -> Path:
    """``--out``, or the named run's dataset folder; exactly one of them must be given."""
    if (out is None) == (run_name is None):
        fail("say where the dataset goes: --out DIR or --run-name NAME (one of them)")
    if out is None:
        out = RunLayout.named(settings().runs_dir, run_name).dataset
    return out


def _fractions(split: str) -> tuple[float, ...]:
    """The ``--split`` shares as numbers (their sum and count are checked by ingest)."""
    try:
        return tuple(float(share) for share in split.split(","))
    except ValueError:  # float() of the user's text, nothing else
        fail(f"--split {split!r}: expected three numbers such as 0.7,0.15,0.15")


@app.command(rich_help_panel=PANEL)
def validate(
    dataset: Path = typer.Argument(..., help="A dataset folder written by `imgtag ingest`."),
    report: Path | None = typer.Option(None, help="Report folder (default: <dataset>/../validation)."),
    min_examples: int = option("min_examples_per_tag"),
    allowed_tags: Path | None = typer.Option(
        None, help="File of allowed tags, one per line (# comments); any other tag fails."
    ),
    min_side: int = typer.Option(32, help="Smallest width and height, in pixels."),
    drop_rare_tags: bool = option("drop_rare_tags"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Validate a dataset with Great Expectations and decode every image; write the report.

    Rules: schema, tag names, allowed tags, examples per tag, no split leakage, image sizes,
    files present and decodable. Images without a tag are negatives (counted in the report).
    Writes report.md, report.json and gx_result.json. Exits 1 when a rule fails: the report,
    naming each bad file and tag (and, for tags with too few images, the --drop-rare-tags
    option), goes to stderr and the JSON summary to stdout.
    """
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training import validate as validation

    if allowed_tags is not None and not allowed_tags.is_file():
        fail(f"--allowed-tags {allowed_tags}: no such file")
    result = validation.validate(
        dataset,
        report or validation.default_report_dir(dataset),
        min_examples_per_tag=min_examples,
        allowed_tags=validation.read_allowed_tags(allowed_tags) if allowed_tags else None,
        min_side=min_side,
        drop_rare_tags=drop_rare_tags,
        progress=sys.stderr.isatty(),
    )
    summary = result.to_dict()
    if result.dropped_tags:  # in the stage's log too, not only in the report
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(result.dropped_tags.items()))
        err.print(
            f"dropped {len(result.dropped_tags)} tags with fewer than {min_examples} images: {shown}",
            markup=False,
            highlight=False,
        )
    if not result.passed:
        err.print(result.text(), markup=False, highlight=False)
        emit(summary, True, "")
        raise typer.Exit(ExitCode.FAILED)
    dropped = (
        f"; dropped {len(summary['dropped_tags'])} rare tags: {', '.join(summary['dropped_tags'])}"
        if summary["dropped_tags"]
        else ""
    )
    emit(
        summary,
        as_json,
        f"dataset {dataset} passed validation: {summary['images_checked']} images "
        f"({summary['negatives']} without a tag), {len(summary['tags'])} tags{dropped}; "
        f"report {summary['report']}",
    )


@app.command("version", rich_help_panel=PANEL)
def version_(
    dataset: Path = typer.Argument(..., help="A dataset folder written by `imgtag ingest`."),
    remote: str | None = typer.Option(
        None, help="DVC remote to push to (default IMGTAG_DVC_REMOTE; '' for none)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Version a dataset with DVC (dvc add, dvc push); prints its hash.

    The hash names the exact images and labels a model was trained on: the training run and
    the registered model carry it, and `dvc pull` brings the data back.
    """
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.versioning import version_dataset

    summary = version_dataset(dataset, remote=remote, settings=settings())
    emit(summary, as_json, f"dataset {summary['dataset']}: DVC hash {summary['dataset_hash']}")


@app.command(rich_help_panel=PANEL)
def train(
    dataset: Path = typer.Argument(..., help="A dataset folder written by `imgtag ingest`."),
    out: Path | None = typer.Option(None, help="Model folder (default: <dataset>/../model)."),
    dataset_hash: str | None = typer.Option(None, help="The dataset's DVC hash (`imgtag version`)."),
    epochs: int = option("epochs"),
    learning_rate: float = option("learning_rate"),
    batch_size: int = option("batch_size"),
    image_size: int = option("image_size"),
    fine_tune_blocks: int = option("fine_tune_blocks"),
    fine_tune_epochs: int = option("fine_tune_epochs"),
    distill_weight: float = option("distill_weight"),
    seed: int = option("seed"),
    base: str = option("base"),
    run_name: str | None = typer.Option(None, help="MLflow run name (the DAG passes its run id)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Keras' progress bar per epoch."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Train the tagger on a dataset: the learned head first, then optionally the top blocks.

    Logs parameters, per-epoch metrics, training curves and the dataset hash to an MLflow run
    (MLFLOW_TRACKING_URI, default a SQLite file in IMGTAG_HOME) and writes the model folder.
    """
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training import train as training

    params = training.TrainParams(
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
    with err.status(f"Training on {dataset}..."):
        result = training.train(
            dataset,
            out,
            params,
            dataset_hash=dataset_hash,
            run_name=run_name,
            settings=settings(),
            verbose=2 if verbose else 0,
        )
    summary = result.to_dict()
    emit(summary, as_json, f"model {summary['model']} (MLflow run {summary['run_id']}): {summary['final']}")


@app.command(rich_help_panel=PANEL)
def evaluate(
    model: Path = typer.Argument(..., help="A model folder written by `imgtag train`."),
    dataset: Path = typer.Argument(..., help="The dataset it was trained on."),
    run_id: str | None = typer.Option(None, help="MLflow run to log metrics and plots to."),
    target_precision: float = option("target_precision"),
    min_positives: int = option("min_positives"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Evaluate a trained model: per-tag thresholds on val (learned and general tags), quality on test.

    Prints mAP, the share of test images with a correct tag and with no tag, the precision of
    emitted tags and person AP; per_tag.csv, plots and predictions.jsonl go to the report folder.
    """
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.evaluate import evaluate as run_evaluation

    with err.status("Evaluating..."):
        result = run_evaluation(
            model,
            dataset,
            run_id=run_id,
            target_precision=target_precision,
            min_positives=min_positives,
            settings=settings(),
        )
    summary = result.to_dict()
    person = "" if summary["person_ap"] is None else f", person AP {summary['person_ap']}"
    emit(
        summary,
        as_json,
        f"test mAP {summary['map']} (common tags {summary['map_common']}), micro F1 "
        f"{summary['micro_f1']}; images with a correct tag {summary['images_with_correct_tag']}, "
        f"with no tag {summary['no_tag']}, precision {summary['precision']}{person}; "
        f"{len(summary['tags_off'])} tags off; report in {summary['report']}",
    )
