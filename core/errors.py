"""The project's error root and the exit codes of the ``imgtag`` command.

Every error the project raises on purpose derives from :class:`ImgtagError` and carries the exit
code the command ends with (:attr:`ImgtagError.exit_code`). The CLI turns these, and only these,
into a one-line message; anything else is a bug and shows its traceback.

:class:`ExitCode` is shared by the CLI and the DAGs (``dags/`` import it: a task fails at once
on ``USAGE``, is skipped on ``GATE_REJECTED``), so this module imports nothing but the standard
library: Airflow's stock image parses the DAG files without the project's dependencies.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What an ``imgtag`` command's exit status means.

    | code | name | meaning | what a DAG task does |
    |---|---|---|---|
    | 0 | ``OK`` | done | succeeds |
    | 1 | ``FAILED`` | it ran, but some of its input failed (images not tagged, checks that did not pass) | retries, then fails |
    | 2 | ``USAGE`` | bad input: a missing folder, a malformed manifest, an invalid option or setting; running it again cannot help | fails at once |
    | 3 | ``GATE_REJECTED`` | the training gate kept the champion: the challenger is not better | skipped, and the promotion with it |
    | 4 | ``CHAMPION_DIVERGED`` | what TF Serving serves and MLflow's ``champion`` alias disagree | fails at once |
    | 75 | ``UNAVAILABLE`` | a service it needs (RabbitMQ, the database, TF Serving, MLflow) did not answer; try again later (``EX_TEMPFAIL`` of ``sysexits.h``) | retries |
    """

    OK = 0
    FAILED = 1
    USAGE = 2
    GATE_REJECTED = 3
    CHAMPION_DIVERGED = 4
    UNAVAILABLE = 75


class ImgtagError(Exception):
    """The root of the project's own errors: the message says what went wrong and what to do.

    Subclasses set :attr:`exit_code`; most also derive from the built-in exception they refine
    (``ValueError``, ``ConnectionError`` ...), so code that catches those keeps working.
    """

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(ImgtagError):
    """Bad input or configuration: running the same command again cannot help."""

    exit_code = ExitCode.USAGE


class UnavailableError(ImgtagError):
    """A service the command needs did not answer: trying again later may help."""

    exit_code = ExitCode.UNAVAILABLE


class Busy(UnavailableError):
    """Busy with work that ends on its own: try again in ``retry_after`` seconds (the catalog
    answers 503 with ``Retry-After`` and ``reason``)."""

    reason = "busy"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class InvalidValue(UsageError, ValueError):
    """A value given to a command or a stage is out of range or malformed; the message says which
    and what is allowed. A ``ValueError`` too, for callers that catch that."""


class MissingFile(UsageError, FileNotFoundError):
    """A file or folder the command needs is not there; the message names it and what makes it.
    A ``FileNotFoundError`` too, for callers that catch that."""
