"""Commands for the catalog's users: tag files, import folders, search, serve the web pages, add users."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from core.errors import ExitCode
from pipelines.cli.common import err, fail, load_tagger, open_catalog, out, settings
from pipelines.cli.output import print_json

PANEL = "Catalog users"
app = typer.Typer(rich_help_panel=PANEL)


def _format_tags(tags, limit: int = 6) -> str:
    return ", ".join(f"{t.name} {t.score:.2f}" for t in tags[:limit]) or "(no tag above its threshold)"


@app.command(rich_help_panel=PANEL)
def tag(
    files: list[Path] = typer.Argument(..., help="Image files to tag (JPEG, PNG, WebP, BMP, TIFF, GIF)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list: {path, tags:[{name, score}]} or {path, error}."
    ),
):
    """Tag image files and print their tags, without storing anything.

    Exits with status 1 when any file could not be tagged (the others are still tagged).
    """
    tagger = load_tagger()
    results = list(tagger.tag_images((str(p), Path(p), str(p)) for p in files))
    if as_json:
        print(
            json.dumps(
                [
                    {"path": r.key, "tags": [{"name": t.name, "score": t.score} for t in r.tags]}
                    if r.ok
                    else {"path": r.key, "error": str(r.error)}
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        table = Table(expand=True)
        table.add_column("file", overflow="fold", ratio=1)
        table.add_column("tags", ratio=2)
        for r in results:
            table.add_row(r.key, _format_tags(r.tags, 10) if r.ok else f"[red]error: {r.error}[/red]")
        out.print(table)
    raise typer.Exit(ExitCode.FAILED if any(not r.ok for r in results) else ExitCode.OK)


@app.command("import", rich_help_panel=PANEL)
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
    stay pending and `imgtag requeue --pending` publishes them later. Images already in the
    catalog and still pending are not published again (their message is queued already).

    Running it again on the same folder imports nothing new. Exits with status 1 when any
    file failed; the summary names each one and why.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # lazy: the tagger engine, loaded by the commands that tag
    from pipelines.tagging.importer import collect_files, import_files, queue_files

    files = collect_files(paths)
    open_catalog()
    tagger = None if queue else load_tagger()
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
            summary = queue_files(files, settings(), on_progress=advance)
        else:
            summary = import_files(files, tagger, on_progress=advance)
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        pending = (
            f" ({summary.already_pending} still pending, not published again)"
            if summary.already_pending
            else ""
        )
        out.print(
            f"Imported {summary.imported}, duplicates {summary.duplicates}{pending}, failed {len(summary.failed)} "
            f"(of {len(files)} files)."
        )
        for failure in summary.failed:
            out.print(f"  [red]failed[/red] {failure['error']}")
    raise typer.Exit(ExitCode.FAILED if summary.failed else ExitCode.OK)


@app.command(rich_help_panel=PANEL)
def search(
    query: str = typer.Argument(
        ..., help="Tags with AND / OR / NOT and parentheses, e.g. 'cat AND NOT \"coffee mug\"'."
    ),
    min_score: float = typer.Option(0.0, help="Only tags scored at least this."),
    source: str | None = typer.Option(None, help="Only tags from this source: model or human."),
    review: str | None = typer.Option(
        None, help="Only tags in this review state: suggested, accepted or rejected."
    ),
    limit: int = typer.Option(50, help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    """Find assets in the catalog by tag."""
    open_catalog()
    # after open_catalog(): Django is set up
    from catalog.listing import search_page

    total, rows = search_page(query, limit=limit, min_score=min_score, source=source, review=review)
    if as_json:
        print_json({"count": total.count, "count_exact": total.exact, "results": rows})
        return
    table = Table("id", "file", "size", "tags", title=f"{total} asset(s) match {query!r}")
    for row in rows:
        tags = ", ".join(f"{t['name']} {t['score']:.2f}" for t in row["tags"][:6])
        table.add_row(str(row["id"]), row["filename"], f"{row['width']}x{row['height']}", tags)
    out.print(table)


@app.command(rich_help_panel=PANEL)
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
):
    """Serve the web pages (/), the REST API (/api/, schema at /api/schema/) and the admin (/admin/).

    Sign in with a user from `imgtag createuser NAME --password ...`. Static files (CSS, JS) are
    served by WhiteNoise; no collectstatic is needed.
    """
    open_catalog()
    from django.core.management import call_command

    base = f"http://{host}:{port}"
    out.print(f"web pages on {base}/  API on {base}/api/  admin on {base}/admin/  (Ctrl+C stops)")
    call_command("runserver", f"{host}:{port}", use_reloader=False, use_static_handler=False)


@app.command(rich_help_panel=PANEL)
def migrate():
    """Create or update the catalog's database schema (SQLite file or DATABASE_URL).

    On PostgreSQL this is the only command that migrates (the others check the schema and say to
    run it); it holds an advisory lock, so several started together migrate once."""
    open_catalog(migrate=True)
    from django.conf import settings as django_settings

    database = django_settings.DATABASES["default"]
    out.print(
        f"the catalog's schema is up to date ({database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']})"
    )


class Role(StrEnum):
    """The roles of :mod:`catalog.roles`."""

    content_manager = "content_manager"
    end_user = "end_user"


@app.command(rich_help_panel=PANEL)
def createuser(
    username: str = typer.Argument(..., help="Name of the new user."),
    role: Role = typer.Option(
        Role.content_manager,
        "--role",
        help="content_manager: upload, review tags and everything an end user does; "
        "end_user: search, view and download.",
    ),
    password: str | None = typer.Option(
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
        fail("give the password with --password or --password-stdin, not both")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("--password-stdin: the first line of standard input is empty")
    open_catalog()
    # after open_catalog(): Django is set up
    from catalog import accounts

    accounts.check_new_username(username)
    if superuser and not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    token = accounts.create_user(username, role=role.value, password=password, superuser=superuser)
    kind = "superuser" if superuser else f"role {role.value}"
    sign_in = "" if password else "; no password, so API only"
    out.print(f"created {username} ({kind}{sign_in}); API token: {token}")
