"""The ``imgtag`` command: tag, import, search and serve images, run the queue and the training stages.

Every stage of imgtag is a subcommand, so the same code runs from a terminal, an Airflow task and a
Kubernetes pod. One sub-app per audience, merged into one top-level ``app`` (every command keeps
its top-level name, ``imgtag import``, ``imgtag gate`` ...) and grouped by audience in ``imgtag
--help``:

=======================  =======================================================================
``catalog``              catalog users: tag, import, search, serve, migrate, createuser
``similar``              catalog users: similar, embeddings backfill
``queue``                queue operators: drain, worker, requeue, dead list / replay
``training``             data scientists: ingest, validate, version, train, evaluate
``models``, ``starter``  MLOps: register, gate, promote, rollback, models; starter show / install / build
``platform``             the whole platform on one machine
=======================  =======================================================================

``common`` holds what they share (the settings, read once per invocation and passed to every
stage; the consoles; opening the catalog; ``fail``), ``output`` the stage summary and Airflow's
XCom file. Settings come from the environment (see :mod:`core.settings`); ``IMGTAG_HOME`` (default
``./var``) holds the catalog database and the stored originals.

Errors: a project error (:class:`core.errors.ImgtagError`) ends the command with one red line, its
message, and its exit code (:class:`core.errors.ExitCode`); any other exception is a bug and shows
its traceback.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from core.errors import ImgtagError
from pipelines.cli import catalog, common, models, platform, queue, similar, starter, training

#: The audiences, in the order ``imgtag --help`` lists them (each module's ``PANEL``).
PANELS = (catalog.PANEL, queue.PANEL, training.PANEL, platform.PANEL)


class ImgtagGroup(TyperGroup):
    """The top-level command: project errors become a one-line message, help lists commands by audience."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImgtagError as exc:
            common.err.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
            raise typer.Exit(exc.exit_code) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One section per audience (the commands' ``rich_help_panel``), in the order of :data:`PANELS`."""
        sections: dict[str, list[tuple[str, str]]] = {panel: [] for panel in PANELS}
        limit = formatter.width - 6 - max((len(name) for name in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            sections.setdefault(panel, []).append((name, command.get_short_help_str(limit)))
        for panel, rows in sections.items():
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)


app = typer.Typer(
    name="imgtag",
    cls=ImgtagGroup,
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


@app.callback()
def _invocation() -> None:
    """Each invocation reads the settings afresh, once (``common.settings``)."""
    common.forget_settings()


for _audience in (catalog, similar, queue, training, models, starter, platform):
    app.add_typer(_audience.app)


def main() -> None:
    """The console script ``imgtag``."""
    import cv2  # only to quiet it: OpenCV is loaded anyway by the commands that read images

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # imgtag reports bad files itself
    app()


if __name__ == "__main__":
    sys.exit(main())
