"""The one settings object: every IMGTAG_* variable is read in core/settings.py, a bad value is a
UsageError naming the variable, and no other module reads the environment for itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import ExitCode, UsageError
from core.settings import ServingSettings, Settings, WebSettings

ROOT = Path(__file__).resolve().parents[2]
#: Where the project's code lives, and the two modules allowed to read IMGTAG_* variables:
#: core/settings.py (imgtag's), dags/imgtag_stage.py's StageSettings (Airflow's: where stage pods run).
PACKAGES = ("core", "serving", "catalog", "pipelines", "dags")
ENV_READERS = {"core/settings.py", "dags/imgtag_stage.py"}


def test_the_defaults_and_the_sections():
    settings = Settings.from_env({"IMGTAG_HOME": "/srv/imgtag"})
    assert settings.home == Path("/srv/imgtag") and settings.cache_dir == Path("/srv/imgtag/cache")
    assert settings.tagmap_dir is None and not settings.tf_verbose and settings.git_commit == ""
    assert settings.serving == ServingSettings() and settings.web == WebSettings()
    assert settings.web.allowed_hosts == ("127.0.0.1", "localhost")


def test_the_variables_moved_in_are_read_here():
    settings = Settings.from_env(
        {
            "IMGTAG_TAGMAP_DIR": "/srv/tagmap",
            "IMGTAG_TF_VERBOSE": "1",
            "IMGTAG_GIT_COMMIT": "abc123",
            "IMGTAG_PROMETHEUS": "/opt/prometheus",
            "IMGTAG_PREDICTOR": "rest",
            "IMGTAG_SERVING_LABEL": "7",
            "IMGTAG_SECRET_KEY": "s3cret",
            "IMGTAG_ALLOWED_HOSTS": "a.example, b.example,",
            "IMGTAG_HTTPS": "yes",
            "IMGTAG_NUM_PROXIES": "1",
            "IMGTAG_STATIC_ROOT": "/srv/static",
            "IMGTAG_REQUIRE_SECRET_KEY": "true",
        }
    )
    assert settings.tagmap_dir == Path("/srv/tagmap") and settings.tf_verbose
    assert (settings.git_commit, settings.prometheus) == ("abc123", "/opt/prometheus")
    assert (settings.serving.predictor, settings.serving.url, settings.serving.version) == (
        "rest",
        "http://127.0.0.1:8501",
        7,
    )
    web = settings.web
    assert (web.secret_key, web.allowed_hosts, web.https, web.num_proxies) == (
        "s3cret",
        ("a.example", "b.example"),
        True,
        1,
    )
    assert web.static_root == "/srv/static" and web.require_secret_key and not web.debug
    assert "s3cret" not in repr(settings)  # the secret key stays out of logs and tracebacks


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("IMGTAG_UPLOAD_TAGGING", "later", "expected one of queue, inprocess"),
        ("IMGTAG_RUNTIME", "onnx", "expected one of litert, tensorflow"),
        ("IMGTAG_STARTER", "maybe", "expected one of on, off"),
        ("IMGTAG_BATCH_SIZE", "lots", "expected a whole number of at least 1"),
        ("IMGTAG_DELIVERY_LIMIT", "0", "expected a whole number of at least 1"),
        ("IMGTAG_MAX_UPLOAD_MB", "-5", "expected a positive number"),
        ("IMGTAG_NUM_PROXIES", "-1", "expected a whole number of at least 0"),
        ("IMGTAG_HTTPS", "ture", "expected yes or no"),
        ("IMGTAG_TF_VERBOSE", "loud", "expected yes or no"),
        ("IMGTAG_PREDICTOR", "torchserve", "expected one of inprocess, rest, grpc"),
        ("IMGTAG_SERVING_TIMEOUT", "0", "expected a positive number of seconds"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_the_variable_and_what_it_takes(name, value, expected):
    with pytest.raises(UsageError) as refused:
        Settings.from_env({name: value})
    assert str(refused.value).startswith(f"{name}=") and expected in str(refused.value)
    assert refused.value.exit_code == ExitCode.USAGE
    assert isinstance(refused.value, ValueError)  # what callers caught before UsageError existed


def test_an_empty_variable_means_its_default():
    settings = Settings.from_env({"IMGTAG_UPLOAD_TAGGING": "", "IMGTAG_NUM_PROXIES": "", "IMGTAG_HTTPS": ""})
    assert (settings.upload_tagging, settings.web.num_proxies, settings.web.https) == ("queue", 0, False)


def test_the_serving_label_default_is_the_repositorys_champion_label():
    from serving.repository import CHAMPION

    assert ServingSettings().label == CHAMPION


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _may_be_imgtag(key: ast.AST | None) -> bool:
    """A key naming an ``IMGTAG_`` variable, or one computed at run time (it could)."""
    return not (
        isinstance(key, ast.Constant) and isinstance(key.value, str) and not key.value.startswith("IMGTAG_")
    )


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines reading an ``IMGTAG_*`` (or a computed) variable: ``os.environ.get(k)``,
    ``os.environ[k]``, ``k in os.environ``, ``os.getenv(k)``, and ``os.environ if env is None``
    (a settings reader's idiom). Writes (``os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", ...)``,
    ``os.environ[k] = v``) and copies for a subprocess (``dict(os.environ)``) are not reads."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            function = node.func
            key = node.args[0] if node.args else None
            if function.attr == "get" and _is_environ(function.value) and _may_be_imgtag(key):
                lines.append(node.lineno)
            if (
                function.attr == "getenv"
                and isinstance(function.value, ast.Name)
                and function.value.id == "os"
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            if _may_be_imgtag(node.slice):
                lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            if _may_be_imgtag(node.left):
                lines.append(node.lineno)
        elif isinstance(node, ast.IfExp) and _is_environ(node.body):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_check_sees_the_ways_of_reading_the_environment():
    source = (
        'a = os.environ.get("IMGTAG_HOME")\nb = os.environ["IMGTAG_QUEUE"]\nc = "IMGTAG_X" in os.environ\n'
        "d = os.getenv(name)\ne = os.environ if env is None else env\nf = os.environ.get(name)\n"
        'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")\nos.environ["IMGTAG_HOME"] = "x"\n'
        'g = dict(os.environ)\nh = os.environ.get("PATH")\n'
    )
    assert environment_reads(ast.parse(source)) == [1, 2, 3, 4, 5, 6]


def test_no_module_but_core_settings_reads_an_imgtag_variable_from_the_environment():
    """An AST walk over the project's packages: only core/settings.py (and the Airflow side's
    dags/imgtag_stage.py) read ``IMGTAG_*`` variables; everything else is handed a Settings."""
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in ENV_READERS:
                continue
            source = path.read_text(encoding="utf-8")
            lines = source.splitlines()
            offenders += [
                f"{relative}:{n}: {lines[n - 1].strip()}" for n in environment_reads(ast.parse(source))
            ]
    assert not offenders, (
        "read IMGTAG_* settings through core.settings.Settings (built once by the entry point and "
        "passed down), not from the environment:\n" + "\n".join(offenders)
    )


def test_a_library_function_has_no_silent_fallback_to_the_environment():
    """``settings or Settings.from_env()`` built a second settings object behind the caller's back."""
    offenders = []
    for package in ("core", "serving", "catalog", "pipelines"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "Settings.from_env()" in line and ("settings or" in line or "if settings is None" in line):
                    offenders.append(f"{relative}:{lineno}: {line.strip()}")
    assert not offenders, "take settings as an argument instead:\n" + "\n".join(offenders)
