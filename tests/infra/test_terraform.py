"""Static checks of infra/terraform: it parses, every variable is used, module calls match.

Nothing here talks to AWS or to the Terraform registry: the files are read with python-hcl2,
and ``terraform fmt -check`` runs only where the terraform binary is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is needed to read the Terraform files")

ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = ROOT / "infra" / "terraform"
MODULES = TF_ROOT / "modules"
ENVS = TF_ROOT / "envs"

#: Arguments of a ``module`` block that are Terraform's, not the module's variables.
MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}

#: Every module is a variables.tf / main.tf / outputs.tf triple.
MODULE_FILES = ("variables.tf", "main.tf", "outputs.tf")


def _tf_files(root: Path = TF_ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def _unquote(key: str) -> str:
    """python-hcl2 keeps the quotes of block labels (``'"aws_s3_bucket"'``)."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _clean(node):
    """Drop python-hcl2's bookkeeping (``__is_block__``, ``__comments__`` ...) and unquote keys.

    Comments are dropped on purpose: a ``var.x`` that only appears in a comment is not a use.
    """
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


@cache
def _parse(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return _clean(hcl2.load(fh))


def _blocks(path: Path, kind: str) -> dict[str, dict]:
    """``{label: body}`` of the one-label blocks ``kind`` (variable, module, output) in a file."""
    found: dict[str, dict] = {}
    for entry in _parse(path).get(kind, []):
        for label, body in entry.items():
            assert label not in found, f"{path}: {kind} {label!r} declared twice"
            found[label] = body
    return found


def _dir_blocks(directory: Path, kind: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for path in sorted(directory.glob("*.tf")):
        for label, body in _blocks(path, kind).items():
            assert label not in found, f"{directory}: {kind} {label!r} declared in two files"
            found[label] = body
    return found


def _references(directory: Path) -> str:
    """Everything of a directory's .tf files except the variable declarations, as one string."""
    parts = []
    for path in sorted(directory.glob("*.tf")):
        parts.append(json.dumps({k: v for k, v in _parse(path).items() if k != "variable"}))
    return "\n".join(parts)


def _uses(haystack: str, name: str) -> bool:
    return re.search(rf"(?<![\w.-])var\.{re.escape(name)}(?![\w-])", haystack) is not None


def unused_variables(directory: Path) -> list[str]:
    haystack = _references(directory)
    return sorted(name for name in _dir_blocks(directory, "variable") if not _uses(haystack, name))


def _dirs_with_variables() -> list[Path]:
    dirs = {p.parent for p in _tf_files() if _blocks(p, "variable")}
    return sorted(dirs)


def _module_calls() -> list[tuple[Path, str, dict]]:
    calls = []
    for env in sorted(p for p in ENVS.iterdir() if p.is_dir()):
        for name, body in _dir_blocks(env, "module").items():
            calls.append((env, name, body))
    return calls


def _rel(path: Path) -> str:
    return str(path.relative_to(TF_ROOT))


# --- the tree is there (so the parametrized tests below are not vacuous) ---


def test_layout():
    modules = {"cluster", "buckets", "database", "broker", "workload_identity", "efs"}
    assert modules <= {p.name for p in MODULES.iterdir() if p.is_dir()}
    assert {"prod", "dev"} <= {p.name for p in ENVS.iterdir() if p.is_dir()}
    for module in modules:
        for name in MODULE_FILES:
            assert (MODULES / module / name).is_file(), f"modules/{module}/{name} is missing"
    for env in ("prod", "dev"):
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "terraform.tfvars.example"):
            assert (ENVS / env / name).is_file(), f"envs/{env}/{name} is missing"


# --- (a) every file parses ---


@pytest.mark.parametrize("path", _tf_files(), ids=_rel)
def test_tf_file_parses(path):
    assert isinstance(_parse(path), dict)


# --- (b) every declared variable is used in its directory ---


@pytest.mark.parametrize("directory", _dirs_with_variables(), ids=_rel)
def test_every_variable_is_used(directory):
    assert unused_variables(directory) == [], f"{_rel(directory)}: declared but never used as var.<name>"


@pytest.mark.parametrize("directory", _dirs_with_variables(), ids=_rel)
def test_variables_have_description_and_type(directory):
    for name, body in _dir_blocks(directory, "variable").items():
        assert body.get("description"), f"{_rel(directory)}: variable {name} has no description"
        assert body.get("type"), f"{_rel(directory)}: variable {name} has no type"


@pytest.mark.parametrize("module", sorted(p for p in MODULES.iterdir() if p.is_dir()), ids=_rel)
def test_module_takes_tags(module):
    assert "tags" in _dir_blocks(module, "variable"), f"{_rel(module)} has no tags variable"


def test_unused_variable_is_caught(tmp_path):
    """The check of (b) fails on a variable nobody reads, and ignores comments and validations."""
    (tmp_path / "variables.tf").write_text(
        'variable "used" {\n  type = string\n}\n\n'
        'variable "unused" {\n  type = string\n\n  validation {\n'
        '    condition     = length(var.unused) > 0\n    error_message = "empty"\n  }\n}\n\n'
        'variable "used_prefix" {\n  type = string\n}\n'
    )
    (tmp_path / "main.tf").write_text(
        "# var.unused is only mentioned in this comment\n"
        'locals {\n  a = var.used\n  b = "${var.used_prefix_not}-x"\n}\n'
    )
    assert unused_variables(tmp_path) == ["unused", "used_prefix"]


# --- (c) module calls of the environments match the modules ---


@pytest.mark.parametrize(
    "env, name, body", _module_calls(), ids=[f"{_rel(e)}:{n}" for e, n, _ in _module_calls()]
)
def test_module_call_matches_module(env, name, body):
    source = _unquote(str(body.get("source", "")))
    assert source.startswith(("./", "../")), (
        f"{_rel(env)} module {name}: source {source!r} must be a local path (no registry modules)"
    )
    module_dir = (env / source).resolve()
    assert module_dir.is_dir() and list(module_dir.glob("*.tf")), (
        f"{_rel(env)} module {name}: {source} does not exist"
    )

    declared = _dir_blocks(module_dir, "variable")
    passed = set(body) - MODULE_META_ARGUMENTS
    unknown = sorted(passed - set(declared))
    assert unknown == [], f"{_rel(env)} module {name} passes arguments {module_dir.name} does not declare"

    required = {n for n, v in declared.items() if "default" not in v}
    missing = sorted(required - passed)
    assert missing == [], f"{_rel(env)} module {name} leaves required variables of {module_dir.name} unset"


def test_every_module_is_called():
    called = defaultdict(list)
    for env, name, body in _module_calls():
        called[(env / _unquote(body["source"])).resolve()].append(f"{env.name}:{name}")
    for module in (p for p in MODULES.iterdir() if p.is_dir()):
        assert called.get(module.resolve()), f"{_rel(module)} is not used by any environment"


# --- versions and state ---


@pytest.mark.parametrize("env", sorted(p for p in ENVS.iterdir() if p.is_dir()), ids=_rel)
def test_env_pins_providers_and_locks_state(env):
    terraform = [block for path in env.glob("*.tf") for block in _parse(path).get("terraform", [])]
    assert len(terraform) == 1, f"{_rel(env)}: expected exactly one terraform block"
    settings = terraform[0]
    providers = {}
    for entry in settings["required_providers"]:
        providers.update(entry)
    assert _unquote(providers["aws"]["version"]).startswith("~> 6."), "aws provider must be pinned to ~> 6.x"
    assert "random" in providers
    backend = settings["backend"][0]
    assert list(backend) == ["s3"], "the state lives in the s3 backend"
    assert backend["s3"].get("use_lockfile") is True, "S3 native state locking (use_lockfile = true)"
    assert "dynamodb_table" not in backend["s3"], "DynamoDB locking is deprecated"


# --- (d) formatting ---


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform binary not installed: `terraform fmt -check` not run")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform fmt -check failed:\n{result.stdout}\n{result.stderr}"
