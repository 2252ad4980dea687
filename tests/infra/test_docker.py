"""The container images, checked without a Docker engine: what a reviewer checks in the Dockerfiles.

Each rule is a ``problems_*`` function returning what is wrong (empty: nothing). The real
Dockerfiles must have no problem; a broken copy of each (``BROKEN`` below, written to a tmp
folder) must have the problem its rule looks for, so every rule is shown able to fail.

Dockerfiles are parsed with ``dockerfile-parse``; ``.dockerignore`` is matched the way Docker
matches it (last matching pattern wins, a pattern also matches everything under a folder).
"""

from __future__ import annotations

import ast
import configparser
import http.server
import importlib.util
import io
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "infra" / "docker"
REGISTRY = "ghcr.io/imgtag"
# Contract (infra/README.md): which Dockerfile builds which image.
IMAGES = {
    "pipelines.Dockerfile": f"{REGISTRY}/imgtag-pipelines",
    "catalog.Dockerfile": f"{REGISTRY}/imgtag-catalog",
}
UID_GID = "10001:10001"
SECRET_WORDS = {"PASSWORD", "PASSWD", "PASS", "SECRET", "TOKEN", "KEY", "APIKEY", "CREDENTIALS", "PRIVATE"}
# An exact version: 3.11.17, 3.11.17-slim-bookworm, 17.2 (no "latest", no floating "3.11").
EXACT_TAG = re.compile(r"^v?\d+\.\d+\.\d+([.\-+_][\w.\-]*)?$")


# ---------------------------------------------------------------- parsing


@dataclass
class Instruction:
    name: str  # FROM, RUN, ... (upper case)
    value: str
    line: int  # 1-based


@dataclass
class Stage:
    base: str  # image or earlier stage name
    alias: str | None
    instructions: list[Instruction]


def parse(path: Path) -> list[Stage]:
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()), env_replace=False)
    stages: list[Stage] = []
    for item in parser.structure:
        name = item["instruction"].upper()
        if name == "COMMENT":
            continue
        instruction = Instruction(name, item["value"].strip(), item["startline"] + 1)
        if name == "FROM":
            words = [w for w in instruction.value.split() if not w.startswith("--platform")]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], alias, [instruction]))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif name != "ARG":  # only ARG may come before the first FROM
            raise ValueError(f"{path}:{instruction.line}: {name} before FROM")
    return stages


def arguments(value: str) -> list[str]:
    """Exec form (JSON array) or shell form of ENTRYPOINT/CMD/HEALTHCHECK CMD."""
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return shlex.split(value)


def flags_and_rest(value: str) -> tuple[dict[str, str], list[str]]:
    """``--from=builder --chown=1:1 a b c`` -> ({from: builder, chown: 1:1}, [a, b, c])."""
    words = arguments(value) if value.lstrip().startswith("[") else shlex.split(value)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, val = words.pop(0)[2:].partition("=")
        flags[key] = val
    return flags, words


def variable_names(instruction: Instruction) -> list[str]:
    """Names an ENV or ARG instruction defines (``A=1 B=2``, legacy ``A 1``, ``ARG A``)."""
    words = shlex.split(instruction.value)
    if instruction.name == "ENV" and words and "=" not in words[0]:
        return [words[0]]  # legacy form: ENV NAME value with spaces
    return [word.split("=", 1)[0] for word in words]


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


# ---------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # "**/" : zero or more folders
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.find("]", i)
            if end == -1:
                out += re.escape(char)
            else:
                body = pattern[i + 1 : end]
                out += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per pattern, in order."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line[1:].strip() if exception else line
        pattern = re.sub(r"/+", "/", pattern).strip("/")  # Docker cleans the path
        pattern = "/".join(p for p in pattern.split("/") if p not in ("", "."))
        if pattern:
            rules.append((exception, _pattern_regex(pattern)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = Path(path).as_posix().strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for exception, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not exception
    return ignored


# ---------------------------------------------------------------- rules


def problems_pinned_bases(stages: list[Stage]) -> list[str]:
    names = set()
    problems = []
    for stage in stages:
        if stage.base not in names:  # an image, not an earlier stage
            image, _, digest = stage.base.partition("@")
            tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
            if "$" in stage.base:
                problems.append(f"FROM {stage.base}: build-arg in the base image; pin it literally")
            elif not (digest.startswith("sha256:") or EXACT_TAG.match(tag)):
                problems.append(f"FROM {stage.base}: not pinned to an exact version tag or a digest")
        if stage.alias:
            names.add(stage.alias)
    return problems


def problems_user(stages: list[Stage]) -> list[str]:
    users = [i.value for i in stages[-1].instructions if i.name == "USER"]
    if not users:
        return ["final stage has no USER: the container would run as root"]
    user = users[-1]
    if not re.fullmatch(r"\d+(:\d+)?", user):
        return [f"USER {user}: not numeric (Kubernetes runAsNonRoot cannot verify a name)"]
    if any(part == "0" for part in user.split(":")):
        return [f"USER {user}: root"]
    if user != UID_GID:
        return [f"USER {user}: the contract (infra/README.md) is {UID_GID}"]
    return []


def problems_healthcheck(stages: list[Stage]) -> list[str]:
    checks = [i for i in stages[-1].instructions if i.name == "HEALTHCHECK"]
    if not checks:
        return ["final stage has no HEALTHCHECK"]
    value = checks[-1].value
    if value.upper() == "NONE" or "CMD" not in value.upper().split():
        return [f"HEALTHCHECK {value}: no command"]
    return []


def copy_sources(stages: list[Stage]) -> list[tuple[Instruction, str]]:
    """(instruction, source) of every COPY/ADD reading from the build context."""
    found = []
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.name not in ("COPY", "ADD"):
                continue
            flags, words = flags_and_rest(instruction.value)
            if "from" in flags or instruction.value.lstrip().startswith("<<"):
                continue  # from another stage or image; heredoc
            found.extend((instruction, source) for source in words[:-1])
    return found


def problems_copy_sources(stages: list[Stage], root: Path = REPO) -> list[str]:
    dockerignore = root / ".dockerignore"
    rules = dockerignore_rules(dockerignore.read_text()) if dockerignore.exists() else []
    problems = []
    for instruction, source in copy_sources(stages):
        if instruction.name == "ADD":
            problems.append(
                f"line {instruction.line}: ADD {source}: use COPY (ADD fetches URLs, unpacks archives)"
            )
        matches = sorted(root.glob(source.lstrip("/"))) if source.strip("/") else []
        if not matches:
            problems.append(f"line {instruction.line}: COPY source {source} does not exist in the repository")
            continue
        for match in matches:
            relative = match.relative_to(root).as_posix()
            if is_ignored(relative, rules):
                problems.append(
                    f"line {instruction.line}: COPY source {relative} is excluded by .dockerignore"
                )
    return problems


def problems_secret_names(stages: list[Stage]) -> list[str]:
    problems = []
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.name not in ("ENV", "ARG"):
                continue
            for name in variable_names(instruction):
                words = set(re.split(r"[_\W]+", name.upper()))
                if words & SECRET_WORDS:
                    problems.append(
                        f"line {instruction.line}: {instruction.name} {name} looks like a secret: "
                        "secrets are given at run time (Secret imgtag-secrets), never baked into layers"
                    )
    return problems


def installed_extras(stages: list[Stage]) -> set[str]:
    extras: set[str] = set()
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.name != "RUN":
                continue
            for group in re.findall(r"\.\[([\w,\s-]+)\]", instruction.value):
                extras.update(e.strip() for e in group.split(",") if e.strip())
            extras.update(re.findall(r"extras_require'\]\['([\w-]+)'\]", instruction.value))
    return extras


def problems_extras(stages: list[Stage]) -> list[str]:
    declared = set(setup_cfg()["options.extras_require"])
    return [
        f"extra [{extra}] is not in setup.cfg (has: {sorted(declared)})"
        for extra in sorted(installed_extras(stages) - declared)
    ]


def command_line(stages: list[Stage]) -> list[str]:
    final = stages[-1].instructions
    entrypoint = [i for i in final if i.name == "ENTRYPOINT"]
    cmd = [i for i in final if i.name == "CMD"]
    return (arguments(entrypoint[-1].value) if entrypoint else []) + (arguments(cmd[-1].value) if cmd else [])


def _module_defines(module: str, attribute: str) -> str | None:
    """None when ``module`` (a file or a package in the repository) binds ``attribute`` at top level."""
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    if not path.exists() and (path.with_suffix("") / "__init__.py").exists():
        path = path.with_suffix("") / "__init__.py"
    if not path.exists():
        return f"module {module} does not exist ({path.relative_to(REPO)})"
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign):
            names = [getattr(node.target, "id", "")]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        else:
            names = []
        if attribute in names:
            return None
    return f"{module} does not define {attribute}"


def problems_wsgi(stages: list[Stage]) -> list[str]:
    argv = command_line(stages)
    if not argv or Path(argv[0]).name != "gunicorn":
        return [f"the catalog image does not start gunicorn: {argv}"]
    apps = [a for a in argv[1:] if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", a)]  # not 0.0.0.0:8000
    if len(apps) != 1:
        return [f"gunicorn is not given one WSGI application MODULE:NAME: {argv}"]
    module, attribute = apps[0].split(":")
    problem = _module_defines(module, attribute)
    return [problem] if problem else []


def problems_console_script(stages: list[Stage]) -> list[str]:
    argv = command_line(stages)
    scripts = dict(
        line.replace(" ", "").split("=", 1)
        for line in setup_cfg()["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    if not argv or argv[0] not in scripts:
        return [f"the image does not start a console script of setup.cfg {sorted(scripts)}: {argv}"]
    module, attribute = scripts[argv[0]].split(":")
    problem = _module_defines(module, attribute)
    return [problem] if problem else []


# ---------------------------------------------------------------- the real Dockerfiles

DOCKERFILES = sorted(IMAGES)
GENERIC_RULES = {
    "pinned_bases": problems_pinned_bases,
    "user": problems_user,
    "healthcheck": problems_healthcheck,
    "copy_sources": problems_copy_sources,
    "secret_names": problems_secret_names,
    "extras": problems_extras,
}


def test_both_images_have_a_dockerfile():
    assert sorted(p.name for p in DOCKER_DIR.glob("*.Dockerfile")) == DOCKERFILES


@pytest.mark.parametrize("rule", sorted(GENERIC_RULES))
@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_rules(dockerfile, rule):
    assert GENERIC_RULES[rule](parse(DOCKER_DIR / dockerfile)) == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_multi_stage_with_one_base(dockerfile):
    """Builder and runtime on the same base: the venv's compiled files meet the same Python."""
    stages = parse(DOCKER_DIR / dockerfile)
    assert len(stages) >= 2
    assert {s.base for s in stages if s.base not in {t.alias for t in stages}} == {stages[-1].base}
    assert any(
        i.name == "COPY" and "--from=" in i.value and "/opt/venv" in i.value for i in stages[-1].instructions
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_runtime_environment(dockerfile):
    """What the Kubernetes manifests rely on: IMGTAG_HOME=/data, HOME on the /tmp emptyDir."""
    env = {}
    for instruction in parse(DOCKER_DIR / dockerfile)[-1].instructions:
        if instruction.name == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(instruction.value) if "=" in word)
    assert env["IMGTAG_HOME"] == "/data"
    assert env["HOME"] == "/tmp"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert env["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_oci_labels(dockerfile):
    text = (DOCKER_DIR / dockerfile).read_text()
    for label in ("source", "licenses", "title"):
        assert f"org.opencontainers.image.{label}=" in text
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in text
    assert setup_cfg()["metadata"]["license"] == "Apache-2.0"


# ---------------------------------------------------------------- what each image installs

# The extras of setup.cfg whose packages the catalog image must not carry (TensorFlow ...).
HEAVY_EXTRAS = ("tagger", "training")
SELF = re.compile(r"^imgtag\[([\w,\s-]+)\]$")


def _requirements(section: str) -> list[str]:
    return [
        line.strip() for line in section.splitlines() if line.strip() and not line.strip().startswith("#")
    ]


def extra_requirements(extras: set[str]) -> set[str]:
    """The requirements the named extras add, following ``imgtag[...]`` references."""
    declared = setup_cfg()["options.extras_require"]
    found: set[str] = set()
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in _requirements(declared[extra]):
            if match := SELF.match(requirement):
                todo.extend(e.strip() for e in match.group(1).split(","))
            else:
                found.add(requirement)
    return found


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_extras_split_the_dependencies():
    """Base: what core, serving and the catalog import; the model and the training tools are
    extras; `make install` (the test extra) still gets everything."""
    config = setup_cfg()
    base = {_name(r) for r in _requirements(config["options"]["install_requires"])}
    heavy = {
        "tensorflow",
        "keras",
        "ai-edge-litert",
        "tensorflow-serving-api",
        "mlflow",
        "dvc",
        "great-expectations",
    }
    assert not base & heavy, (
        f"install_requires has {sorted(base & heavy)}: the catalog image would carry them"
    )
    tagger = {_name(r) for r in extra_requirements({"tagger"})}
    assert {"tensorflow", "keras", "ai-edge-litert", "tensorflow-serving-api"} <= tagger
    training = {_name(r) for r in extra_requirements({"training"})}
    assert tagger | {"mlflow", "dvc", "great-expectations", "pandas", "scikit-learn"} <= training
    assert training <= {_name(r) for r in extra_requirements({"test"})}
    declared = set(config["options.extras_require"])
    for extra in declared:
        for requirement in _requirements(config["options.extras_require"][extra]):
            if match := SELF.match(requirement):
                assert {e.strip() for e in match.group(1).split(",")} <= declared, requirement


def test_catalog_image_installs_no_model_or_training_packages():
    catalog = installed_extras(parse(DOCKER_DIR / "catalog.Dockerfile"))
    assert catalog == {"server"}, (
        f"the catalog image installs {sorted(catalog)}: {HEAVY_EXTRAS} bring TensorFlow"
    )
    assert {"server", *HEAVY_EXTRAS} <= installed_extras(parse(DOCKER_DIR / "pipelines.Dockerfile"))


def test_catalog_image_reads_models_config_with_the_tagger_extras_serving_protos():
    """The catalog reads which version is champion with TF Serving's config protos: the
    image installs tensorflow-serving-api as the tagger extra pins it, without its
    dependencies (TensorFlow), and protobuf comes with the base requirements."""
    runs = [
        i.value
        for stage in parse(DOCKER_DIR / "catalog.Dockerfile")
        for i in stage.instructions
        if i.name == "RUN"
    ]
    installs = [words for words in map(shlex.split, runs) if "tensorflow-serving-api" in " ".join(words)]
    assert len(installs) == 1, runs
    (pinned,) = [w for w in installs[0] if w.startswith("tensorflow-serving-api")]
    tagger = [
        r
        for r in _requirements(setup_cfg()["options.extras_require"]["tagger"])
        if _name(r) == "tensorflow-serving-api"
    ]
    assert [pinned] == tagger
    assert "--no-deps" in installs[0]
    base = {_name(r) for r in _requirements(setup_cfg()["options"]["install_requires"])}
    assert "protobuf" in base


def _dependency_layer_script(stages: list[Stage]) -> str:
    """The ``python -c`` program of the RUN that writes /tmp/requirements.txt."""
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.name == "RUN" and "/tmp/requirements.txt" in instruction.value:
                words = shlex.split(instruction.value)
                return words[words.index("-c") + 1]
    raise AssertionError("no RUN writes /tmp/requirements.txt")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dependency_layer_holds_what_the_package_install_needs(tmp_path, dockerfile):
    """The cached layer installs exactly the requirements of the extras the image installs the
    package with, so that install adds nothing."""
    stages = parse(DOCKER_DIR / dockerfile)
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    script = _dependency_layer_script(stages)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    listed = set(out.stdout.splitlines()) - {""}
    wanted = set(_requirements(setup_cfg()["options"]["install_requires"]))
    wanted |= extra_requirements(installed_extras(stages))
    assert listed == wanted


def test_catalog_serves_an_existing_wsgi_application():
    assert problems_wsgi(parse(DOCKER_DIR / "catalog.Dockerfile")) == []


def test_catalog_port_and_healthcheck_agree():
    stages = parse(DOCKER_DIR / "catalog.Dockerfile")
    final = stages[-1].instructions
    argv = command_line(stages)
    bind = argv[argv.index("--bind") + 1]
    port = bind.rsplit(":", 1)[1]
    assert [i.value for i in final if i.name == "EXPOSE"] == [port] == ["8000"]
    healthcheck = next(i.value for i in final if i.name == "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck
    assert "/healthz" in (REPO / "catalog" / "health.py").read_text()


def test_pipelines_runs_the_imgtag_command():
    stages = parse(DOCKER_DIR / "pipelines.Dockerfile")
    assert problems_console_script(stages) == []
    assert command_line(stages)[0] == "imgtag"


def test_pipelines_healthcheck_probes_the_worker_metrics_port():
    """The script's default port is the worker's default --metrics-port (pipelines/cli/queue.py)."""
    cli = (REPO / "pipelines" / "cli" / "queue.py").read_text()
    worker = cli[cli.index("def worker(") :]
    default = re.search(r"metrics_port: (?:Optional\[int\]|int \| None) = typer\.Option\((\d+)", worker)
    assert default and int(default.group(1)) == healthcheck_module().DEFAULT_WORKER_PORT == 9100
    final = parse(DOCKER_DIR / "pipelines.Dockerfile")[-1].instructions
    assert [i.value for i in final if i.name == "EXPOSE"] == ["9100"]


def test_dockerignore_keeps_local_state_out():
    rules = dockerignore_rules((REPO / ".dockerignore").read_text())
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".venv-ci/bin/python",
        "var/catalog.sqlite3",
        "tests/artifacts/report.html",
        "pipelines/cli/__pycache__/queue.cpython-311.pyc",
        "catalog/__pycache__/x.pyc",
        ".pytest_cache/v/cache",
        "notebooks/evaluation.ipynb",
        "imgtag.egg-info/PKG-INFO",
        ".env",
    ):
        assert is_ignored(path, rules), path
    for path in (
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "pipelines/cli/queue.py",
        "core/data/imagenet_tags.csv",
        "catalog/wsgi.py",
        "serving/predictors.py",
    ):
        assert not is_ignored(path, rules), path


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        ("*\n!pipelines/", "pipelines/cli/queue.py", False),
        ("*\n!pipelines/", "tests/pipelines/test_cli.py", True),
        ("**/__pycache__", "a/b/__pycache__/c.pyc", True),
        ("**/__pycache__", "__pycache__/c.pyc", True),
        ("*.pyc", "a/b.pyc", False),  # Docker anchors patterns at the context root
        ("**/*.pyc", "a/b.pyc", True),
        ("var/", "var/x", True),
        ("/var", "pipelines/var", False),
        ("tests\n!tests/keep.py", "tests/keep.py", False),
        ("!tests/keep.py\ntests", "tests/keep.py", True),  # the last match wins
        ("file?.txt", "file1.txt", True),
        ("file[0-9].txt", "filex.txt", False),
    ],
)
def test_dockerignore_matcher_follows_docker(patterns, path, ignored):
    assert is_ignored(path, dockerignore_rules(patterns)) is ignored


# ---------------------------------------------------------------- the rules can fail

# (rule, Dockerfile, regex, replacement): a copy of the real file broken the way the rule catches.
BROKEN = [
    (
        "pinned_bases",
        "pipelines.Dockerfile",
        r"python:3\.11\.\d+-slim-bookworm AS runtime",
        "python:latest AS runtime",
    ),
    (
        "pinned_bases",
        "catalog.Dockerfile",
        r"python:3\.11\.\d+-slim-bookworm AS builder",
        "python:3.11-slim AS builder",
    ),
    (
        "pinned_bases",
        "catalog.Dockerfile",
        r"FROM python:3\.11\.\d+-slim-bookworm AS runtime",
        "FROM python AS runtime",
    ),
    ("user", "pipelines.Dockerfile", r"USER 10001:10001", "USER root"),
    ("user", "catalog.Dockerfile", r"USER 10001:10001", "USER imgtag"),
    ("user", "catalog.Dockerfile", r"USER 10001:10001", "USER 0:0"),
    ("user", "pipelines.Dockerfile", r"USER 10001:10001\n", ""),
    ("healthcheck", "catalog.Dockerfile", r"HEALTHCHECK [^\n]*\\\n[^\n]*\n", ""),
    ("healthcheck", "pipelines.Dockerfile", r"HEALTHCHECK [^\n]*\\\n[^\n]*\n", "HEALTHCHECK NONE\n"),
    ("copy_sources", "catalog.Dockerfile", r"COPY serving \./serving", "COPY servings ./serving"),
    ("copy_sources", "pipelines.Dockerfile", r"COPY README\.md \./", "COPY tests/conftest.py ./"),
    ("copy_sources", "pipelines.Dockerfile", r"COPY README\.md \./", "ADD README.md ./"),
    (
        "secret_names",
        "catalog.Dockerfile",
        r"ARG IMGTAG_GIT_COMMIT=unknown",
        "ARG IMGTAG_SECRET_KEY=change-me",
    ),
    ("secret_names", "pipelines.Dockerfile", r"PYTHONUNBUFFERED=1", "GITHUB_TOKEN=abc PYTHONUNBUFFERED=1"),
    ("extras", "pipelines.Dockerfile", r"'\.\[server,tagger,training\]'", "'.[server,tagger,training,gpu]'"),
    ("extras", "catalog.Dockerfile", r"\['server'\]", "['servers']"),
    ("wsgi", "catalog.Dockerfile", r"catalog\.wsgi:application", "catalog.asgi:application"),
    ("wsgi", "catalog.Dockerfile", r"catalog\.wsgi:application", "catalog.wsgi:app"),
    ("console_script", "pipelines.Dockerfile", r'ENTRYPOINT \["imgtag"\]', 'ENTRYPOINT ["imgtagger"]'),
]
ALL_RULES = {**GENERIC_RULES, "wsgi": problems_wsgi, "console_script": problems_console_script}


@pytest.mark.parametrize(
    ("rule", "dockerfile", "pattern", "replacement"), BROKEN, ids=[f"{b[0]}-{b[3][:30]}" for b in BROKEN]
)
def test_rule_catches_a_broken_copy(tmp_path, rule, dockerfile, pattern, replacement):
    original = (DOCKER_DIR / dockerfile).read_text()
    broken, count = re.subn(pattern, replacement, original, count=1)
    assert count == 1, f"the mutation {pattern!r} no longer applies to {dockerfile}: update BROKEN"
    copy = tmp_path / dockerfile
    copy.write_text(broken)
    assert ALL_RULES[rule](parse(DOCKER_DIR / dockerfile)) == []
    assert ALL_RULES[rule](parse(copy)) != []


def test_copy_rule_reads_the_dockerignore(tmp_path):
    """A COPY source that exists but the context leaves out is a build failure: caught."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11.17-slim-bookworm\nCOPY app /app\nUSER 10001:10001\n")
    assert problems_copy_sources(parse(dockerfile), root=tmp_path) == []
    (tmp_path / ".dockerignore").write_text("*\n!README.md\n")
    assert problems_copy_sources(parse(dockerfile), root=tmp_path) != []


# ---------------------------------------------------------------- images used elsewhere


def _k8s_image_references() -> set[tuple[str, str]]:
    """(image, tag) of every ghcr.io/imgtag/... reference in infra/k8s (tag "" when none)."""
    found = set()
    for path in (REPO / "infra" / "k8s").rglob("*.y*ml"):
        for image, tag in re.findall(rf"({re.escape(REGISTRY)}/[\w.\-]+)(?::([\w.\-]+))?", path.read_text()):
            found.add((image, tag))
    return found


def test_kubernetes_manifests_use_the_images_built_here():
    if not (REPO / "infra" / "k8s").is_dir():
        pytest.skip("infra/k8s is not there yet")
    references = _k8s_image_references()
    unknown = {image for image, _ in references} - set(IMAGES.values())
    assert not unknown, f"infra/k8s uses images no Dockerfile here builds: {sorted(unknown)}"
    # Tags CI pushes: X.Y.Z from a release tag vX.Y.Z (the setup.cfg version), sha-<commit>.
    version = setup_cfg()["metadata"]["version"]
    stray = {
        f"{image}:{tag}"
        for image, tag in references
        if tag and tag != version and not re.fullmatch(r"sha-[0-9a-f]{7,40}", tag)
    }
    assert not stray, f"infra/k8s pins tags CI never pushes (release {version}, or sha-<commit>): {stray}"


def test_ci_builds_every_image_from_its_dockerfile():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    builds = {
        (entry["dockerfile"], entry["image"])
        for entry in workflow["jobs"]["images"]["strategy"]["matrix"]["include"]
    }
    assert builds == {(f"infra/docker/{name}", image) for name, image in IMAGES.items()}
    for dockerfile, _ in builds:
        assert (REPO / dockerfile).is_file()
    steps = workflow["jobs"]["images"]["steps"]
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["context"] == "."
    assert "IMGTAG_GIT_COMMIT=" in build["with"]["build-args"]
    meta = next(s for s in steps if s.get("uses", "").startswith("docker/metadata-action@"))
    assert "type=semver,pattern={{version}}" in meta["with"]["tags"]  # vX.Y.Z -> X.Y.Z
    assert "type=sha" in meta["with"]["tags"]
    on = workflow.get("on", workflow.get(True))  # PyYAML reads the key `on` as True
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"] == ["v*.*.*"]
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["images"]["permissions"] == {"contents": "read", "packages": "write"}
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@[0-9a-f]{40}$", step["uses"]), f"not pinned by commit: {step['uses']}"


# ---------------------------------------------------------------- the pipelines HEALTHCHECK script


def healthcheck_module():
    spec = importlib.util.spec_from_file_location(
        "pipelines_healthcheck", DOCKER_DIR / "pipelines-healthcheck.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_proc(root: Path, *processes: list[str]) -> Path:
    for pid, argv in enumerate(processes, start=1):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (root / "self").mkdir()
    return root


@pytest.fixture
def metrics_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(b"imgtag_up 1\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("args", "port"),
    [
        (["worker"], 9100),
        (["worker", "--metrics-port", "9200"], 9200),
        (["worker", "--metrics-port=0"], None),
        (["drain", "--json"], None),
        (["drain", "--metrics-port", "9300"], 9300),
        (["train", "--json"], None),
        (["--help"], None),
    ],
)
def test_healthcheck_metrics_port(args, port):
    assert healthcheck_module().metrics_port(args) == port


def test_healthcheck_finds_imgtag_behind_an_init(tmp_path):
    proc = fake_proc(
        tmp_path,
        ["/sbin/docker-init", "--", "imgtag", "worker"],
        ["/opt/venv/bin/python", "/opt/venv/bin/imgtag", "worker", "--metrics-port", "9200"],
    )
    assert healthcheck_module().imgtag_argv(proc) == ["worker"]
    proc = fake_proc(tmp_path / "b", ["/opt/venv/bin/python", "/opt/venv/bin/imgtag", "worker"])
    assert healthcheck_module().imgtag_argv(proc) == ["worker"]
    proc = fake_proc(tmp_path / "c", ["python", "-m", "pipelines.cli", "worker"])
    assert healthcheck_module().imgtag_argv(proc) == ["worker"]


def test_healthcheck_worker_healthy_while_metrics_answer(tmp_path, metrics_server):
    hc = healthcheck_module()
    up = fake_proc(
        tmp_path / "up",
        ["/opt/venv/bin/python", "/opt/venv/bin/imgtag", "worker", f"--metrics-port={metrics_server}"],
    )
    assert hc.main(up, timeout=2) == 0


def test_healthcheck_worker_unhealthy_without_metrics(tmp_path):
    hc = healthcheck_module()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    down = fake_proc(
        tmp_path, ["/opt/venv/bin/python", "/opt/venv/bin/imgtag", "worker", "--metrics-port", str(free)]
    )
    assert hc.main(down, timeout=2) == 1


def test_healthcheck_stage_containers_are_healthy(tmp_path):
    hc = healthcheck_module()
    assert hc.main(fake_proc(tmp_path / "a", ["/opt/venv/bin/python", "/opt/venv/bin/imgtag", "--help"])) == 0
    assert (
        hc.main(
            fake_proc(tmp_path / "b", ["/opt/venv/bin/python", "/opt/venv/bin/imgtag", "train", "--json"])
        )
        == 0
    )
