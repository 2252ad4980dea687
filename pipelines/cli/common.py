"""What every ``imgtag`` command shares: the settings of this invocation, the consoles, the catalog.

Commands import the stage they run inside their function, here and in every module of this
package: ``imgtag --help`` and the light commands must not load TensorFlow, Django or MLflow,
and the catalog's modules can only be imported once :func:`open_catalog` has configured Django.
"""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from core import cgroup, decode_budget, tf_runtime, training_limits
from core.errors import ExitCode
from core.settings import Settings

out = Console(soft_wrap=True)  # long paths and messages stay on one line
err = Console(stderr=True, soft_wrap=True)

_settings: Settings | None = None


def forget_settings() -> None:
    """Start an invocation: the next :func:`settings` reads the environment again (the root
    callback calls this, so each command, and each ``CliRunner.invoke`` in a test, gets its own)."""
    global _settings
    _settings = None


def settings() -> Settings:
    """The settings of this invocation, read from the environment once and passed to every stage.

    Raises:
        core.errors.UsageError: an ``IMGTAG_*`` variable has a value it cannot take.
    """
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
        tf_runtime.configure(verbose=_settings.tf_verbose, threads=cgroup.available_cpus())
        decode_budget.configure(_settings.decode_memory_bytes)  # every decode of this process shares it
    return _settings


def option(name: str, **extra: Any) -> Any:
    """The ``typer.Option`` of the training parameter ``name``: the flag, default and help its one
    declaration gives (:data:`core.training_limits.TUNABLES`), so the command and the trigger
    form cannot drift apart. A list's default is None (nothing given), the form's empty list."""
    tunable = training_limits.TUNABLE[name]
    default = None if tunable.type == "array" else tunable.command_default
    return typer.Option(default, tunable.flag, help=tunable.described(tunable.cli_hint), **extra)


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """Say what went wrong in red on stderr and end the command with ``code``."""
    err.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(code)


def open_catalog(migrate: bool | None = None) -> None:
    """Open the catalog: on SQLite migrated as needed, on PostgreSQL only checked (see catalog.runtime).

    Raises:
        catalog.runtime.CatalogUnavailable: the database cannot be reached or its schema is behind.
    """
    # lazy: Django, which --help and the stages do not need
    from catalog import runtime

    runtime.setup(migrate=migrate)


def load_tagger():
    """The tagger of the model that tags now, with a spinner while it loads."""
    # lazy: TF Serving's protos are not in the catalog image
    from serving.current import get_tagger

    with err.status("Loading the tagging model..."):
        return get_tagger(settings())
