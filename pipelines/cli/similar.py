"""Commands for similar images: ``imgtag similar FILE`` lists the assets most like a file,
``imgtag embeddings backfill`` fills the embeddings of assets tagged before the model made them
(:mod:`catalog.services.embeddings`, :mod:`catalog.similar`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from core.errors import ExitCode
from pipelines.cli.catalog import PANEL
from pipelines.cli.common import err, fail, load_tagger, open_catalog, out

TOP = 24  # as the API and the asset page (catalog.similar.TOP, not imported: Django is not set up yet)

app = typer.Typer(rich_help_panel=PANEL)
embeddings_app = typer.Typer(
    help="Image embeddings (256 bytes an asset) for similar images and near-duplicates.", no_args_is_help=True
)
app.add_typer(embeddings_app, name="embeddings", rich_help_panel=PANEL)


@embeddings_app.command()
def backfill(
    batch: int = typer.Option(
        256, min=1, max=4096, help="Originals read and embedded at a time (one commit each)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"embedded", "failed": [{asset, filename, error}]}.'
    ),
):
    """Embed the assets that have no embedding from the model that tags now (their tags stay).

    Run it once after upgrading, or after promoting a model without retagging: tagging (imports,
    uploads, the worker, the nightly retag) keeps embeddings current from then on. Runs again
    where it stopped. Exits with status 1 when an original could not be read.
    """
    # lazy: rich's progress bar only for this command
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    open_catalog()
    # lazy: Django's models, importable once open_catalog has set Django up
    from catalog import similar
    from catalog.services import embeddings  # lazy: as catalog.similar

    tagger = load_tagger()
    todo = embeddings.assets_without_embedding(tagger.model_name, tagger.model_version).count()
    progress = Progress(
        TextColumn("embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not todo,
    )
    with progress:
        task = progress.add_task("embed", total=todo)
        summary = embeddings.backfill(tagger, batch=batch, on_progress=lambda n: progress.advance(task, n))
    with err.status("Saving the similar-images index..."):
        similar.save_index(tagger.model_name, tagger.model_version)  # so that no search builds it
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        out.print(
            f"Embedded {summary.embedded} assets with {tagger.model_name}:{tagger.model_version}, "
            f"failed {len(summary.failed)}."
        )
        for failure in summary.failed:
            out.print(
                f"  [red]failed[/red] asset {failure['asset']} ({failure['filename']}): {failure['error']}"
            )
    raise typer.Exit(ExitCode.FAILED if summary.failed else ExitCode.OK)


@app.command("similar", rich_help_panel=PANEL)
def similar_(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="An image file (it need not be in the catalog)."
    ),
    top: int = typer.Option(TOP, min=1, max=100, help="How many assets to list."),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list of the nearest assets, best first: {id, filename, score}."
    ),
):
    """List the catalog's assets most like an image file, best first, with their scores
    (cosine similarity: 1 is the same picture, a near-duplicate scores above about 0.7).

    Compares the embedding the model that tags now makes of the file with the assets' embeddings
    from that model (`imgtag embeddings backfill` fills them for assets tagged before).
    """
    open_catalog()
    # lazy: Django's models, importable once open_catalog has set Django up
    from catalog import similar

    tagger = load_tagger()
    [result] = tagger.tag_images([(str(file), file, str(file))])
    if not result.ok:
        fail(str(result.error), ExitCode.FAILED)
    if result.embedding is None:
        fail(
            f"the model that tags now ({tagger.model_name}:{tagger.model_version}) makes no embeddings; "
            "tag in process with the starter or a model exported by this version (IMGTAG_PREDICTOR=inprocess)"
        )
    found = similar.similar_to_vector(result.embedding, tagger.model_name, tagger.model_version, top)
    if as_json:
        print(
            json.dumps(
                [{"id": s.asset.pk, "filename": s.asset.filename, "score": s.score} for s in found], indent=2
            )
        )
        return
    if not found:
        out.print(f"No asset has an embedding from {tagger.model_name}:{tagger.model_version} yet.")
        return
    table = Table()
    for column in ("id", "filename", "score"):
        table.add_column(column)
    for s in found:
        table.add_row(str(s.asset.pk), s.asset.filename, f"{s.score:.3f}")
    out.print(table)
