"""Commands for similar images: ``imgtag embeddings backfill`` fills the embeddings of assets
tagged before the model made them (:mod:`catalog.services.embeddings`)."""

from __future__ import annotations

import json

import typer

from core.errors import ExitCode
from pipelines.cli.catalog import PANEL
from pipelines.cli.common import err, load_tagger, open_catalog, out

app = typer.Typer(rich_help_panel=PANEL)
embeddings_app = typer.Typer(
    help="Image embeddings (256 bytes an asset) for similar images and near-duplicates.", no_args_is_help=True
)
app.add_typer(embeddings_app, name="embeddings", rich_help_panel=PANEL)


@embeddings_app.command()
def backfill(
    batch: int = typer.Option(256, min=1, max=4096, help="Originals read and embedded at a time (one commit each)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"embedded", "failed": [{asset, filename, error}]}.'),
):
    """Embed the assets that have no embedding from the model that tags now (their tags stay).

    Run it once after upgrading, or after promoting a model without retagging: tagging (imports,
    uploads, the worker, the nightly retag) keeps embeddings current from then on. Runs again
    where it stopped. Exits with status 1 when an original could not be read.
    """
    # lazy: rich's progress bar only for this command
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # lazy: Django's models, importable once open_catalog has set Django up
    from catalog.services import embeddings

    open_catalog()
    tagger = load_tagger()
    todo = embeddings.assets_without_embedding(tagger.model_name, tagger.model_version).count()
    progress = Progress(
        TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, disable=not todo
    )
    with progress:
        task = progress.add_task("embed", total=todo)
        summary = embeddings.backfill(tagger, batch=batch, on_progress=lambda n: progress.advance(task, n))
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        out.print(
            f"Embedded {summary.embedded} assets with {tagger.model_name}:{tagger.model_version}, "
            f"failed {len(summary.failed)}."
        )
        for failure in summary.failed:
            out.print(f"  [red]failed[/red] asset {failure['asset']} ({failure['filename']}): {failure['error']}")
    raise typer.Exit(ExitCode.FAILED if summary.failed else ExitCode.OK)
