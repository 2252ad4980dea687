"""The local executor of dags/imgtag_stage.py, against a tiny fake ``imgtag`` in a temp folder."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

FAKE_IMGTAG = '''\
#!{python}
"""A stand-in for imgtag: behaves as told by its first argument."""
import json, os, sys

mode = sys.argv[1]
print("loading the model...", file=sys.stderr)
if mode == "pretty":
    print("a line of chatter on stdout")
    print(json.dumps({{"tagged": 3, "failed": [{{"path": "a.jpg"}}], "argv": sys.argv[2:]}}, indent=2))
elif mode == "line":
    print(json.dumps({{"home": os.environ.get("IMGTAG_HOME"), "queue": os.environ.get("IMGTAG_QUEUE")}}))
    print("{{not json, a stray line after the summary")
elif mode == "fail":
    for n in range(100):
        print(f"progress {{n}}", file=sys.stderr)
    print("RabbitMQ at 127.0.0.1:5672 is not reachable", file=sys.stderr)
    sys.exit(75)
elif mode == "usage":
    print("--folder /data/labeled-typo: no such folder", file=sys.stderr)
    sys.exit(2)
elif mode == "nojson":
    print("tagged 3 images")
elif mode == "reject":
    print(json.dumps({{"passed": False, "reason": "map 0.41 does not beat champion 0.62 by 0.01"}}))
    print("gate rejected the challenger", file=sys.stderr)
    sys.exit(3)
elif mode == "reject-no-reason":
    print(json.dumps({{"passed": False, "map": 0.41}}))
    sys.exit(3)
'''


@pytest.fixture
def fake_imgtag(tmp_path, stage_module, monkeypatch):
    path = tmp_path / "bin" / "imgtag"
    path.parent.mkdir()
    path.write_text(FAKE_IMGTAG.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(stage_module, "imgtag_executable", lambda: str(path))
    return path


def test_the_summary_is_the_last_json_object_on_stdout(stage_module, fake_imgtag):
    operator = stage_module.LocalStageOperator(task_id="t", arguments=["pretty", "--max-seconds", 5])
    assert operator.execute(context={}) == {
        "tagged": 3,
        "failed": [{"path": "a.jpg"}],
        "argv": ["--max-seconds", "5"],
    }


def test_the_environment_passes_through(stage_module, fake_imgtag, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTAG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IMGTAG_QUEUE", "imgtag.somewhere")
    summary = stage_module.run_stage(["line"])
    assert summary == {"home": str(tmp_path / "home"), "queue": "imgtag.somewhere"}


def test_a_failing_command_fails_the_task_with_its_stderr_tail(stage_module, fake_imgtag):
    operator = stage_module.LocalStageOperator(task_id="t", arguments=["fail"])
    with pytest.raises(stage_module.StageError) as failure:
        operator.execute(context={})
    message = str(failure.value)
    assert "exited with status 75" in message
    assert "RabbitMQ at 127.0.0.1:5672 is not reachable" in message
    assert "progress 99" in message and "progress 10\n" not in message  # the tail, not all of it


def test_a_non_zero_exit_carries_its_status_summary_and_stderr(stage_module, fake_imgtag):
    with pytest.raises(stage_module.StageExit) as failure:
        stage_module.run_stage(["reject", "--json"])
    exc = failure.value
    assert exc.returncode == 3
    assert exc.summary == {"passed": False, "reason": "map 0.41 does not beat champion 0.62 by 0.01"}
    assert exc.stderr_tail == "loading the model...\ngate rejected the challenger"
    assert exc.command[1:] == ["reject", "--json"]
    with pytest.raises(stage_module.StageExit) as failure:
        stage_module.run_stage(["fail"])
    assert failure.value.summary is None and failure.value.returncode == 75


class FakeTI:
    """Records what the operator pushes as XCom."""

    def __init__(self):
        self.pushed: dict = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


@pytest.mark.parametrize("skip_on_exit_code", [3, [3, 4], {3}])
def test_an_exit_status_in_skip_on_exit_code_skips_with_the_reason(
    stage_module, fake_imgtag, skip_on_exit_code
):
    from airflow.sdk.exceptions import AirflowSkipException

    operator = stage_module.LocalStageOperator(
        task_id="gate", arguments=["reject", "--json"], skip_on_exit_code=skip_on_exit_code
    )
    ti = FakeTI()
    with pytest.raises(AirflowSkipException) as skipped:
        operator.execute(context={"ti": ti})
    message = str(skipped.value)
    assert "exited with status 3" in message
    assert "map 0.41 does not beat champion 0.62 by 0.01" in message
    # The summary is still the XCom, as the pod's XCom sidecar hands it back.
    assert ti.pushed == {
        "return_value": {"passed": False, "reason": "map 0.41 does not beat champion 0.62 by 0.01"}
    }


def test_a_skip_without_a_reason_quotes_the_summary_or_the_stderr(stage_module, fake_imgtag):
    from airflow.sdk.exceptions import AirflowSkipException

    operator = stage_module.LocalStageOperator(
        task_id="gate", arguments=["reject-no-reason"], skip_on_exit_code=3
    )
    with pytest.raises(AirflowSkipException, match=r'\{"map": 0.41, "passed": false\}'):
        operator.execute(context={})
    # any status can be made a skip; with no summary the message quotes the stderr
    operator = stage_module.LocalStageOperator(task_id="gate", arguments=["fail"], skip_on_exit_code=75)
    with pytest.raises(AirflowSkipException, match="RabbitMQ at 127.0.0.1:5672 is not reachable"):
        operator.execute(context={})


@pytest.mark.parametrize("skip_on_exit_code", [None, 4, [0, 1, 2]])
def test_an_exit_status_not_in_skip_on_exit_code_fails(stage_module, fake_imgtag, skip_on_exit_code):
    operator = stage_module.LocalStageOperator(
        task_id="gate", arguments=["reject"], skip_on_exit_code=skip_on_exit_code
    )
    with pytest.raises(stage_module.StageExit, match="exited with status 3") as failure:
        operator.execute(context={})
    assert "gate rejected the challenger" in str(failure.value)


def test_bad_input_fails_at_once_and_a_transient_failure_may_be_retried(stage_module, fake_imgtag):
    """A typo in a form field is not retried for minutes; a broker outage still is."""
    from airflow.sdk.exceptions import AirflowFailException

    operator = stage_module.LocalStageOperator(task_id="ingest", arguments=["usage"], retries=2)
    with pytest.raises(AirflowFailException, match="no such folder") as failure:
        operator.execute(context={})
    assert "not retried" in str(failure.value)
    operator = stage_module.LocalStageOperator(task_id="ingest", arguments=["fail"], retries=2)
    with pytest.raises(stage_module.StageExit) as failure:
        operator.execute(context={})
    assert not isinstance(failure.value, AirflowFailException)


def test_stderr_goes_to_the_task_log_as_it_comes(stage_module, fake_imgtag):
    class Log:
        def __init__(self):
            self.lines: list[str] = []

        def info(self, message, *args):
            self.lines.append(message % args)

    log = Log()
    with pytest.raises(stage_module.StageError):
        stage_module.run_stage(["fail"], log=log)
    assert log.lines[0].startswith("Running ") and log.lines[0].endswith("imgtag fail")
    assert log.lines[1:] == [
        "loading the model...",
        *(f"progress {n}" for n in range(100)),
        "RabbitMQ at 127.0.0.1:5672 is not reachable",
    ]


def test_no_json_summary_is_an_error(stage_module, fake_imgtag):
    with pytest.raises(stage_module.StageError, match="(?s)printed no JSON summary.*tagged 3 images"):
        stage_module.run_stage(["nojson"])


@pytest.mark.parametrize(
    ("stdout", "summary"),
    [
        ('{"a": 1}\n', {"a": 1}),
        ('{"a": 1}', {"a": 1}),
        ('{"old": 1}\nnoise\n{"a": {"b": [{"c": 2}]}}\n', {"a": {"b": [{"c": 2}]}}),
        (
            json.dumps({"a": [{"nested": 1}, {"nested": 2}], "b": {"c": 3}}, indent=2) + "\n",
            {"a": [{"nested": 1}, {"nested": 2}], "b": {"c": 3}},
        ),
    ],
)
def test_parse_summary(stage_module, stdout, summary):
    assert stage_module.parse_summary(stdout) == summary


def test_imgtag_is_found_beside_python_then_on_path(stage_module, tmp_path, monkeypatch):
    venv_bin, path_bin = tmp_path / "venv" / "bin", tmp_path / "elsewhere"
    for folder in (venv_bin, path_bin):
        folder.mkdir(parents=True)
        (folder / "imgtag").write_text("#!/bin/sh\n")
        (folder / "imgtag").chmod(0o755)
    monkeypatch.setenv("PATH", str(path_bin))
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert stage_module.imgtag_executable() == str(venv_bin / "imgtag")
    (venv_bin / "imgtag").unlink()
    assert stage_module.imgtag_executable() == str(path_bin / "imgtag")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(stage_module.StageError, match="no imgtag command"):
        stage_module.imgtag_executable()


def test_the_project_venv_has_imgtag(stage_module):
    """The default local executor runs the imgtag installed beside this Python."""
    assert os.path.dirname(stage_module.imgtag_executable()) == os.path.dirname(sys.executable)


@pytest.mark.parametrize("executor", ["local", "kubernetes"])
def test_outlets_and_other_operator_arguments_pass_through(stage_module, executor):
    """The promotion stage updates the champion asset through ``outlets``, in either executor."""
    from datetime import timedelta

    settings = stage_module.StageSettings(executor=executor, image="registry.example.com/imgtag:0.1.0")
    operator = stage_module.stage(
        "promote",
        ["promote", "--json"],
        settings=settings,
        outlets=[stage_module.CHAMPION_ASSET],
        execution_timeout=timedelta(minutes=5),
    )
    assert operator.outlets == [stage_module.CHAMPION_ASSET]
    assert operator.execution_timeout == timedelta(minutes=5)
    assert operator.arguments == ["promote", "--json"]


@pytest.mark.parametrize("executor", ["local", "kubernetes"])
def test_both_executors_take_skip_on_exit_code(stage_module, executor):
    settings = stage_module.StageSettings(executor=executor, image="registry.example.com/imgtag:0.1.0")
    operator = stage_module.stage("gate", ["gate", "--json"], settings=settings, skip_on_exit_code=3)
    assert 3 in operator.skip_on_exit_code and 1 not in operator.skip_on_exit_code
    plain = stage_module.stage("promote", ["promote", "--json"], settings=settings)
    assert not plain.skip_on_exit_code


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"IMGTAG_STAGE_EXECUTOR": "docker"},
            "IMGTAG_STAGE_EXECUTOR='docker': expected one of local, kubernetes",
        ),
        ({"IMGTAG_STAGE_EXECUTOR": "kubernetes"}, "IMGTAG_STAGE_EXECUTOR=kubernetes needs IMGTAG_IMAGE"),
        (
            {"IMGTAG_STAGE_EXECUTOR": "kubernetes", "IMGTAG_IMAGE": "i", "IMGTAG_K8S_RUN_AS_USER": "0"},
            "IMGTAG_K8S_RUN_AS_USER='0': expected a numeric uid other than 0",
        ),
    ],
)
def test_bad_settings_say_what_is_wrong(stage_module, env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        stage_module.StageSettings.from_env(env)


def test_settings_default_to_local(stage_module):
    assert stage_module.StageSettings.from_env({}).executor == "local"
