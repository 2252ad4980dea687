"""The layout holds: import contracts, one linter, imports at the top, DAG files the stock Airflow reads.

- ``lint-imports`` checks the contracts in setup.cfg (``[importlinter]``): the layers
  dags > pipelines > catalog > serving > core, what core and the catalog may not import, the
  DAGs' few core modules, no cycle inside a package. A broken copy of the code shows each
  contract able to fail.
- ``ruff check`` with pyproject.toml's rule set, on the code and the tests, and ``ruff format --check``.
- The project's own modules are imported at the top of a module; one imported inside a function
  carries a comment saying why (a heavy optional dependency, after ``django.setup()`` ...).
- The DAG files and the core modules they import use the standard library alone (besides
  Airflow): Airflow's stock image parses them without imgtag's dependencies.
- No function is longer than 60 lines unless its docstring says why ("Long because ..."); the
  ones that still are, for now, are listed by name (``LONG_FOR_NOW``, issue 26).
- Tests mirror the code: ``tests/<package>/test_<module>.py`` (subpackages as folders), except a
  short list of cross-cutting tests (``CROSS_CUTTING``, each with why).

These run first in ``make test`` (``make lint``) and again with the whole suite, so CI and a
plain ``pytest`` see them too.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("core", "serving", "catalog", "pipelines")
LINTED = (*PACKAGES, "dags", "tests")
# The core modules a DAG file may import (setup.cfg's dags-thin contract names them too).
DAG_CORE_MODULES = ("core.errors", "core.settings", "core.training_limits", "core.cgroup")
# What else a DAG file imports: Airflow and its Kubernetes provider, the sibling imgtag_stage.py.
DAG_IMPORTS = ("airflow", "kubernetes", "imgtag_stage")


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {BIN}: run `make install` (setup.cfg's test extra)")
    return str(path)


def _run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------- import contracts


def test_import_contracts_are_kept():
    out = _run([_tool("lint-imports"), "--no-cache", "--no-logo"])
    assert out.returncode == 0, f"lint-imports: a contract in setup.cfg is broken\n{out.stdout}{out.stderr}"


# (contract id, file, line added): a copy of the code broken the way the contract catches.
BROKEN = [
    ("layers", "catalog/models.py", "import pipelines"),
    ("layers", "core/results.py", "from serving import current"),
    ("layers", "serving/export.py", "def later():\n    from catalog import models"),
    ("core-light", "core/imageio.py", "import django"),
    ("catalog-slim", "catalog/query.py", "import tensorflow"),
    ("dags-thin", "dags/nightly_retag.py", "from core import tagger"),
    ("dags-thin", "dags/imgtag_stage.py", "import serving"),
    ("data-paths", "pipelines/tagging/worker.py", "from pipelines.training import train"),
    ("no-cycles", "serving/starter.py", "from serving import current"),
]


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layout")
    for name in (*PACKAGES, "dags"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "setup.cfg", root / "setup.cfg")
    return root


@pytest.mark.parametrize(("contract", "path", "line"), BROKEN, ids=[f"{b[0]}-{b[1]}" for b in BROKEN])
def test_contract_catches_a_broken_copy(code_copy, contract, path, line):
    target = code_copy / path
    original = target.read_text()
    try:
        target.write_text(f"{original}\n{line}\n")
        out = _run([_tool("lint-imports"), "--no-cache", "--no-logo", "--contract", contract], cwd=code_copy)
    finally:
        target.write_text(original)
    assert out.returncode == 1 and "BROKEN" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- ruff


def test_ruff_finds_nothing():
    out = _run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", *LINTED])
    assert out.returncode == 0, (
        f"ruff check {' '.join(LINTED)} (rules: pyproject.toml [tool.ruff]); "
        f"`ruff check --fix` fixes those marked [*]\n{out.stdout}{out.stderr}"
    )


def test_the_code_is_formatted():
    """One formatter (``ruff format``, pyproject.toml's line length): a diff shows only what changed."""
    out = _run([_tool("ruff"), "format", "--check", "--no-cache", *LINTED])
    assert out.returncode == 0, f"`ruff format {' '.join(LINTED)}` formats these:\n{out.stdout}{out.stderr}"


# ---------------------------------------------------------------- imports inside functions


def _python_files(*folders: str) -> list[Path]:
    return sorted(
        p for folder in folders for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts
    )


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: within the package
        return [node.module or "."]
    return [node.module or ""]


def _imports_in_functions(tree: ast.AST):
    """Every import statement inside a function body (nested ones too)."""
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def _has_comment(lines: list[str], lineno: int) -> bool:
    """A ``#`` comment at the end of the import's first line, or a comment line just above it."""
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return "#" in lines[lineno - 1] or above.startswith("#")


def project_imports_in_functions(*folders: str) -> list[str]:
    """``file:line module`` of each import of core/serving/catalog/pipelines inside a function
    that has no comment on its line or the line above saying why."""
    found = set()
    for path in _python_files(*folders):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in _imports_in_functions(ast.parse(text, str(path))):
            modules = _imported_modules(node)
            own = [m for m in modules if m.split(".")[0] in PACKAGES or m.startswith(".")]
            if own and not _has_comment(lines, node.lineno):
                found.add(f"{path.relative_to(REPO)}:{node.lineno} {', '.join(own)}")
    return sorted(found, key=lambda s: (s.split(":")[0], int(s.split(":")[1].split()[0])))


def test_project_modules_are_imported_at_the_top():
    found = project_imports_in_functions(*PACKAGES, "dags")
    assert not found, (
        f"{len(found)} imports of the project's own modules inside a function without a comment "
        "saying why (on the line or the line above; e.g. `# heavy: TensorFlow`). Move them to the "
        "top of the module:\n" + "\n".join(found)
    )


def test_the_function_import_check_finds_what_it_should(tmp_path, monkeypatch):
    sample = tmp_path / "core" / "sample.py"
    sample.parent.mkdir()
    sample.write_text(
        "import os\n"
        "from core import tagmap\n"
        "def a():\n"
        "    from core.vocabulary import Vocabulary\n"
        "    import numpy\n"
        "def b():\n"
        "    # heavy: TensorFlow\n"
        "    from core import model\n"
        "    from serving import export  # after django.setup()\n"
        "    from . import results\n"
        "    x = lambda: __import__('json')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert project_imports_in_functions("core") == ["core/sample.py:4 core.vocabulary", "core/sample.py:10 ."]


# ---------------------------------------------------------------- what Airflow's stock image parses


def _top_level_imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (absolute names; relative ones as ``.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(_imported_modules(node))
    return found


def _allowed(module: str, extra: tuple[str, ...]) -> bool:
    top = module.split(".")[0]
    return (
        top in sys.stdlib_module_names
        or top == "__future__"
        or any(module == e or module.startswith(e + ".") for e in (*DAG_CORE_MODULES, *extra))
        or (
            module == "core" and extra is DAG_IMPORTS
        )  # `from core import errors`: the names are checked below
    )


@pytest.mark.parametrize("module", DAG_CORE_MODULES)
def test_dag_core_modules_use_the_standard_library_alone(module):
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    if not path.exists():
        pytest.skip(f"{module} is not there yet")
    others = sorted(m for m in _top_level_imports(path) if not _allowed(m, ()))
    assert not others, f"{module} is imported by the DAG files: standard library only, not {others}"


@pytest.mark.parametrize("path", _python_files("dags"), ids=lambda p: p.name)
def test_dag_files_import_airflow_the_stdlib_and_stdlib_only_core_modules(path):
    others = sorted(m for m in _top_level_imports(path) if not _allowed(m, DAG_IMPORTS))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # `from core import errors` names the module in the alias
        if isinstance(node, ast.ImportFrom) and node.module == "core":
            others += [f"core.{a.name}" for a in node.names if f"core.{a.name}" not in DAG_CORE_MODULES]
    assert not others, (
        f"{path.name} imports {others}: Airflow's stock image has neither imgtag's dependencies nor "
        f"its other modules; a DAG runs the `imgtag` command instead (allowed: {DAG_CORE_MODULES})"
    )


# ---------------------------------------------------------------- function length

#: A function longer than this says why in its docstring, with the phrase below.
MAX_FUNCTION_LINES = 60
LONG_BECAUSE = "Long because"
#: Functions over the limit, named ``path:Qualified.name``, that are still to split (or to give a
#: reason). None are left (issue 26); a name added here must be removed once its function is
#: short: the test fails on a name that no longer needs to be here.
LONG_FOR_NOW: frozenset[str] = frozenset()


def _functions(tree: ast.AST, prefix: str = ""):
    """``(qualified name, node)`` of every function and method, nested ones too."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield name, child
            yield from _functions(child, name + ".")
        else:
            yield from _functions(child, prefix)


def long_functions(*folders: str) -> dict[str, int]:
    """``{"path:Qualified.name": lines}`` of the functions whose body is longer than
    MAX_FUNCTION_LINES (from the first statement after the docstring to the last line: a
    signature of many options, one per line as ``ruff format`` writes them, and the docstring
    do not count) and whose docstring does not say why (LONG_BECAUSE)."""
    found = {}
    for path in _python_files(*folders):
        for name, node in _functions(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
            lines = node.end_lineno - body[0].lineno + 1
            if lines > MAX_FUNCTION_LINES and LONG_BECAUSE not in (ast.get_docstring(node) or ""):
                found[f"{path.relative_to(REPO)}:{name}"] = lines
    return found


def test_no_function_is_long_without_a_reason():
    found = long_functions(*PACKAGES, "dags")
    new = sorted(f"{name} ({lines} lines)" for name, lines in found.items() if name not in LONG_FOR_NOW)
    assert not new, (
        f"functions over {MAX_FUNCTION_LINES} lines: split them, or say why in the docstring "
        f"({LONG_BECAUSE!r} ...):\n" + "\n".join(new)
    )
    short_now = sorted(LONG_FOR_NOW - set(found))
    assert not short_now, "short now (or gone, or explained): remove them from LONG_FOR_NOW:\n" + "\n".join(
        short_now
    )


def test_the_length_check_finds_what_it_should(tmp_path, monkeypatch):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES + 1))
    options = "".join(f"    option{i}: int = {i},\n" for i in range(20))
    docstring = '    """What it does.\n' + "    More.\n" * 20 + '    """\n'
    sample = tmp_path / "core" / "sample.py"
    sample.parent.mkdir()
    sample.write_text(
        f"def short():\n    return 1\n"
        f"def long():\n{body}"
        f"def explained():\n    '''{LONG_BECAUSE} it is one table.'''\n{body}"
        f"class Holder:\n    def method(self):\n{body.replace('    ', '        ')}"
        f"def many_options(\n{options}):\n{docstring}{body[: body.index('    x60')]}"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert long_functions("core") == {
        "core/sample.py:long": MAX_FUNCTION_LINES + 1,
        "core/sample.py:Holder.method": MAX_FUNCTION_LINES + 1,
    }


# ---------------------------------------------------------------- tests mirror the code

#: Code folders whose tests mirror them: ``tests/<folder>/[<subpackage>/]test_<module>.py`` tests
#: ``<folder>/[<subpackage>/]<module>.py`` (or the subpackage ``<module>/``). A module with more
#: than one test file adds an aspect: ``test_<module>_<aspect>.py`` (``test_query_limits.py``).
MIRRORED = (*PACKAGES, "dags")
#: Tests of no one module: cross-cutting, so named after what they check. A path ending in ``/``
#: covers its folder. Keep it short; every entry must exist.
CROSS_CUTTING = {
    "tests/test_layout.py": "the repository's layout itself",
    "tests/e2e/": "the platform and, in tests/e2e/web, the web UI in a browser, end to end",
    "tests/infra/": "the deployment files under infra/ (Kubernetes, Terraform, Docker, alerts)",
    "tests/catalog/test_slim.py": "the whole catalog without the tagger and training extras",
    "tests/dags/test_dag_integrity.py": "every DAG file parses and is documented, owned, tagged",
    "tests/dags/test_dag_schedule.py": "what Airflow does with every DAG when it first sees it",
    "tests/dags/test_dag_run.py": "both tagging DAGs run whole with dag.test() on RabbitMQ",
    # catalog.services.dispatch through the API, the broker and the queue: it needs this
    # folder's RabbitMQ fixtures (tests/pipelines/tagging/conftest.py)
    "tests/pipelines/tagging/test_api_publish.py": "uploads published to the real RabbitMQ",
    "tests/pipelines/training/test_notebook.py": "notebooks/evaluation.ipynb on a trained model",
}


def _names_a_module(folder: Path, name: str) -> bool:
    """``name`` is a module or subpackage of ``folder``, or one followed by ``_<aspect>``."""
    words = name.split("_")
    for end in range(len(words), 0, -1):
        module = "_".join(words[:end])
        if (folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file():
            return True
    return False


def misplaced_tests() -> list[str]:
    """``path: why`` of each test file under tests/ that names no module of the code it mirrors
    and is not in CROSS_CUTTING."""
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        relative = path.relative_to(REPO).as_posix()
        if any(
            relative == entry or (entry.endswith("/") and relative.startswith(entry))
            for entry in CROSS_CUTTING
        ):
            continue
        folder = path.parent.relative_to(REPO / "tests")
        if not folder.parts or folder.parts[0] not in MIRRORED:
            found.append(f"{relative}: not under tests/<package>/ ({', '.join(MIRRORED)})")
        elif not (REPO / folder).is_dir():
            found.append(f"{relative}: there is no {folder.as_posix()}/ to mirror")
        elif not _names_a_module(REPO / folder, path.stem.removeprefix("test_")):
            found.append(
                f"{relative}: {folder.as_posix()}/ has no module {path.stem.removeprefix('test_')}.py"
            )
    return found


def test_tests_mirror_the_code():
    found = misplaced_tests()
    assert not found, (
        "a test file is named after the module it tests, in the folder that mirrors the module's "
        "(tests/<package>/test_<module>[_<aspect>].py), or is cross-cutting (CROSS_CUTTING, with "
        "why):\n" + "\n".join(found)
    )
    stale = sorted(entry for entry in CROSS_CUTTING if not (REPO / entry).exists())
    assert not stale, "gone: remove them from CROSS_CUTTING:\n" + "\n".join(stale)


def test_the_mirror_check_finds_what_it_should(tmp_path, monkeypatch):
    for name in (
        "core/imageio.py",
        "core/cli/__init__.py",
        "dags/nightly.py",
        "tests/core/test_imageio.py",
        "tests/core/test_imageio_exif.py",
        "tests/core/test_cli.py",
        "tests/dags/test_nightly.py",
        "tests/core/test_core_imageio.py",
        "tests/core/cli/test_main.py",
        "tests/misc/test_x.py",
        "tests/serving/test_predictors.py",
        "tests/test_layout.py",
        "tests/e2e/test_anything.py",
        "tests/core/helpers.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert misplaced_tests() == [
        "tests/core/cli/test_main.py: core/cli/ has no module main.py",
        "tests/core/test_core_imageio.py: core/ has no module core_imageio.py",
        "tests/misc/test_x.py: not under tests/<package>/ (core, serving, catalog, pipelines, dags)",
        "tests/serving/test_predictors.py: there is no serving/ to mirror",
    ]
