"""``imgtag starter``: the model that tags before any promotion, where it came from, and how to rebuild it."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import err, fail, settings
from pipelines.cli.output import emit

PANEL = "Data scientists and MLOps"
starter_app = typer.Typer(
    help="The starter model: what tags before any promotion (person, everyday objects and the general "
    "ImageNet tags), rebuilt from labelled photos by the project's own stages.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app = typer.Typer(rich_help_panel=PANEL)
app.add_typer(starter_app, name="starter", rich_help_panel=PANEL)


@starter_app.command("show")
def starter_show(as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON.")):
    """Where the shipped starter model came from: data, dataset hash, parameters, test metrics."""
    # lazy: TF Serving's protos are not in the catalog image
    from serving import starter

    head = starter.load_head(tagmap_dir=settings().tagmap_dir)
    if head is None:
        fail(f"{starter.STARTER_DIR}: no starter model is shipped; run `make starter-model`")
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
    emit(summary, as_json, "\n".join(lines))


@starter_app.command("install")
def starter_install(as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")):
    """Make the starter model a real model version: register it in MLflow (version 1 of a new
    install, with the alias `champion`) and serve it under that number from the TF Serving model
    repository (IMGTAG_MODEL_BASE), so TF Serving serves what the in-process tagger serves and
    `imgtag rollback` and `imgtag promote 1` can always return to it.

    Does nothing when a champion is already served (`imgtag platform` runs it on its first start,
    and the first `imgtag register` too). With IMGTAG_SERVING_STATUS_URL the label moves once TF
    Serving reports the version loaded."""
    # lazy: needs the training extra (MLflow), and TF Serving's protos, not in the catalog image
    from pipelines.training.registry import install_starter

    with err.status("Exporting and registering the starter model..."):
        summary = install_starter(settings())
    text = (
        f"version {summary['serving_version']} is the starter model ({summary['starter']}), "
        "served and registered as the champion"
        if summary["installed"]
        else f"nothing to do: {summary['reason']}"
    )
    emit(summary, as_json, text)


@starter_app.command("build")
def starter_build(
    data: Path = typer.Option(
        Path("../shared/data/dam-photos"),
        help="Labelled photos: manifest.csv (path,tags), boxes.csv, images/.",
    ),
    work: Path = typer.Option(
        Path("var/starter-build"), help="Working folder (its own MLflow, DVC, datasets)."
    ),
    crops: bool = typer.Option(True, "--crops/--no-crops", help="Also train on box crops of the photos."),
    epochs: int = typer.Option(40, help="Epochs of the head on the frozen backbone."),
    target_precision: float = typer.Option(
        0.9,
        help="The precision the emitted tags must reach on the validation pictures, weighted as a library.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON."),
):
    """Rebuild the starter model from labelled photos: prepare (tags, people, person-free and box
    crops, drawn non-photos) → ingest → validate → version → train → evaluate → register, then
    write serving/starter_model/ and the calibrated general thresholds
    (core/data/tag_thresholds.csv). About 40 minutes on 2 cores."""
    # lazy: needs the training extra (MLflow, DVC, GX)
    from pipelines.training.build_starter import build

    if not (data / "manifest.csv").is_file():
        fail(f"{data}: no manifest.csv; --data takes the dam-photos folder (../shared/data/dam-photos)")
    provenance = build(data, work, crops=crops, epochs=epochs, target_precision=target_precision)
    metrics = ", ".join(f"{k} {v}" for k, v in provenance["metrics"].items())
    emit(
        provenance,
        as_json,
        f"starter model written: {provenance['learned_tags']} learned tags; test: {metrics}",
    )
