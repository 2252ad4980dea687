"""Turn an ``imgtag`` stage into an Airflow task: a pod in production, a local process here.

Every pipeline stage is one command, ``imgtag <stage> ... --json`` (see ``pipelines/cli/``):
it prints one JSON summary on stdout and, when ``/airflow/xcom`` exists, writes the same
summary to ``/airflow/xcom/return.json``. :func:`stage` runs that command in one of two ways,
chosen by ``IMGTAG_STAGE_EXECUTOR`` when the DAG file is parsed:

- ``local`` (default): a :class:`LocalStageOperator` runs the command as a subprocess of the
  Airflow worker, with the worker's environment (``IMGTAG_HOME``, ``DATABASE_URL``,
  ``IMGTAG_AMQP_URL`` ...), and returns the parsed summary as the task's XCom.
- ``kubernetes``: a ``KubernetesPodOperator`` runs the same command in the ``IMGTAG_IMAGE``
  container, non-root on a read-only root filesystem, with its environment from a ConfigMap
  and a Secret; the XCom sidecar hands ``/airflow/xcom/return.json`` back as the XCom.

Either way ``arguments`` are Jinja-templated (``"{{ params.max_seconds }}"``) and the task's
XCom is the stage's summary dict. A stage that may decide the rest of the run is pointless (the
training gate rejecting a model exits 3) is given ``skip_on_exit_code``: that exit status
skips the task, and with it the tasks downstream, instead of failing the run.

Exit statuses are :class:`core.errors.ExitCode`, the same enum the command exits with. The DAG
files import only Airflow, the standard library and the stdlib-only modules of ``core``
(``core/errors.py``, ``core/training_limits.py``), so the stock Airflow image parses them as long as
the repository root is importable: the project's virtualenv locally, ``PYTHONPATH`` pointing at
the git-synced checkout in the cluster (``infra/k8s/airflow/values.yaml``).

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_STAGE_EXECUTOR`` | ``local`` | ``local`` or ``kubernetes`` |
| ``IMGTAG_IMAGE`` | (required for ``kubernetes``) | container image with the ``imgtag`` command |
| ``IMGTAG_IMAGE_PULL_POLICY`` | ``IfNotPresent`` | the container's ``imagePullPolicy`` |
| ``IMGTAG_K8S_NAMESPACE`` | ``imgtag`` | namespace of the stage pods |
| ``IMGTAG_K8S_CONFIGMAP`` | ``imgtag-config`` | ConfigMap whose keys become the pod's environment |
| ``IMGTAG_K8S_SECRET`` | ``imgtag-secrets`` | Secret whose keys become the pod's environment too |
| ``IMGTAG_K8S_SERVICE_ACCOUNT`` | (namespace default) | service account of the stage pods |
| ``IMGTAG_K8S_RUN_AS_USER`` | ``10001`` | numeric uid (and gid) the stage pods run as |
| ``IMGTAG_K8S_CONN_ID`` | ``kubernetes_default`` | Airflow connection to the cluster |
| ``IMGTAG_K8S_VOLUMES`` | ``imgtag-data:/data,imgtag-models:/models`` | PersistentVolumeClaims the stage pods mount, ``claim:path`` comma-separated (empty: none) |

Stages hand their work to each other through files (ingest writes the dataset that validate,
version and train read; promote writes the model repository TF Serving loads), so in a
cluster every stage pod mounts the same claims (ReadWriteMany) as the catalog, the worker and
TF Serving: ``infra/k8s`` names them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, BaseOperator, Param
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

from core import training_limits
from core.errors import ExitCode

#: Updated by the promotion stage when a new champion model lands; schedules ``nightly_retag``.
CHAMPION_ASSET = Asset("imgtag://models/imgtag-tagger/champion")

EXECUTORS = ("local", "kubernetes")


class StageError(RuntimeError):
    """A stage command failed, or printed no JSON summary; the message says which and why."""


class StageExit(StageError):
    """The stage command exited with a non-zero status.

    Attributes:
        command: the command line that ran.
        returncode: the command's exit status.
        summary: the JSON summary it printed on stdout anyway (a rejecting gate does), else None.
        stderr_tail: the last lines of its stderr.
    """

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str],
        returncode: int,
        summary: dict | None,
        stderr_tail: str,
    ) -> None:
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode
        self.summary = summary
        self.stderr_tail = stderr_tail


@dataclass(frozen=True)
class Resources:
    """Container requests and limits of one stage, and its scratch ``/tmp`` (Kubernetes quantities)."""

    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    tmp_size: str = "1Gi"

    def requests(self) -> dict[str, str]:
        return {"cpu": self.cpu_request, "memory": self.memory_request}

    def limits(self) -> dict[str, str]:
        return {"cpu": self.cpu_limit, "memory": self.memory_limit}


#: Stages that load the tagging model (TensorFlow) need more room than catalog/queue chores.
MODEL_RESOURCES = Resources(cpu_request="1", memory_request="2Gi", cpu_limit="2", memory_limit="3Gi")

#: Training holds the decoded training set, the backbone and its gradients, and writes checkpoints.
TRAINING_RESOURCES = Resources(
    cpu_request="2", memory_request="6Gi", cpu_limit="4", memory_limit="8Gi", tmp_size="10Gi"
)


DEFAULT_VOLUMES = (("imgtag-data", "/data"), ("imgtag-models", "/models"))


@dataclass(frozen=True)
class StageSettings:
    """Where and how stages run, read from the environment when a DAG file is parsed.

    The only settings read on the Airflow side, and kept apart from :class:`core.settings.Settings`
    on purpose: they configure Airflow (which executor, which image, which pods), not imgtag. The
    stage command reads imgtag's own settings itself when it starts, from the environment the task
    hands it (the worker's, or the pod's ConfigMap and Secret).
    """

    executor: str = "local"
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    namespace: str = "imgtag"
    configmap: str = "imgtag-config"
    secret: str = "imgtag-secrets"
    service_account: str | None = None
    run_as_user: int = 10001
    conn_id: str = "kubernetes_default"
    volumes: tuple[tuple[str, str], ...] = DEFAULT_VOLUMES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StageSettings:
        env = os.environ if env is None else env
        executor = env.get("IMGTAG_STAGE_EXECUTOR", "local").strip().lower() or "local"
        if executor not in EXECUTORS:
            raise ValueError(f"IMGTAG_STAGE_EXECUTOR={executor!r}: expected one of {', '.join(EXECUTORS)}")
        image = env.get("IMGTAG_IMAGE") or None
        if executor == "kubernetes" and not image:
            raise ValueError(
                "IMGTAG_STAGE_EXECUTOR=kubernetes needs IMGTAG_IMAGE, "
                "the container image with the imgtag command"
            )
        return cls(
            executor=executor,
            image=image,
            image_pull_policy=env.get("IMGTAG_IMAGE_PULL_POLICY", "IfNotPresent"),
            namespace=env.get("IMGTAG_K8S_NAMESPACE", "imgtag"),
            configmap=env.get("IMGTAG_K8S_CONFIGMAP", "imgtag-config"),
            secret=env.get("IMGTAG_K8S_SECRET", "imgtag-secrets"),
            service_account=env.get("IMGTAG_K8S_SERVICE_ACCOUNT") or None,
            run_as_user=_uid(env.get("IMGTAG_K8S_RUN_AS_USER", "10001")),
            conn_id=env.get("IMGTAG_K8S_CONN_ID", "kubernetes_default"),
            volumes=_volumes(env.get("IMGTAG_K8S_VOLUMES", _format_volumes(DEFAULT_VOLUMES))),
        )


def _format_volumes(volumes) -> str:
    return ",".join(f"{claim}:{path}" for claim, path in volumes)


def _volumes(value: str) -> tuple[tuple[str, str], ...]:
    volumes = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        claim, _, path = item.partition(":")
        if not claim or not path.startswith("/") or path in ("/", "/tmp"):
            raise ValueError(
                f"IMGTAG_K8S_VOLUMES={value!r}: expected claim:/absolute/path pairs separated by commas "
                "(not / or /tmp), e.g. imgtag-data:/data,imgtag-models:/models"
            )
        volumes.append((claim, path))
    return tuple(volumes)


def _uid(value: str) -> int:
    if not value.strip().isdigit() or int(value) == 0:
        raise ValueError(f"IMGTAG_K8S_RUN_AS_USER={value!r}: expected a numeric uid other than 0 (root)")
    return int(value)


def stage(
    task_id: str,
    arguments: Sequence[str],
    *,
    resources: Resources = Resources(),
    settings: StageSettings | None = None,
    **operator_kwargs: Any,
) -> BaseOperator:
    """One ``imgtag`` stage as a task: ``imgtag <arguments>`` locally or in a pod.

    Args:
        task_id: the task's id, also the pod's name prefix.
        arguments: the command line after ``imgtag``, starting with the subcommand, e.g.
            ``["drain", "--max-seconds", "{{ params.max_seconds }}", "--json"]`` (templated).
        resources: container requests and limits and the size of ``/tmp`` (pods only).
        settings: where stages run; read from the environment when omitted.
        **operator_kwargs: passed to the operator (``outlets``, ``retries``, ``execution_timeout``,
            ``skip_on_exit_code`` ...); both operators take ``skip_on_exit_code``.

    Returns:
        A ``KubernetesPodOperator`` or a :class:`LocalStageOperator`; its XCom is the summary.
    """
    settings = settings or StageSettings.from_env()
    if not arguments:
        raise ValueError(f"stage {task_id!r}: arguments must start with the imgtag subcommand")
    if settings.executor == "kubernetes":
        return _pod_operator(task_id, list(arguments), resources, settings, **operator_kwargs)
    return LocalStageOperator(task_id=task_id, arguments=list(arguments), **operator_kwargs)


def form(tunables: Sequence[training_limits.Tunable] = training_limits.TUNABLES) -> dict[str, Param]:
    """The trigger form: a ``Param`` for each declared parameter of the form, in its section, with
    its default, JSON schema (limits, choices), title and description (:mod:`core.training_limits`)."""
    return {t.name: Param(t.default, **t.schema()) for t in tunables if t.form}


def command(subcommand: str, *arguments: str, after: Sequence[str] = ()) -> list[str]:
    """``imgtag <subcommand> <arguments> <its form parameters' options> <after> --json``, templated.

    Each parameter the form gives the subcommand (:func:`core.training_limits.of`) becomes its
    option: ``--epochs {{ params.epochs }}``; a list joined with commas; a boolean the option of
    its value (``--drop-rare-tags`` or ``--keep-rare-tags``).
    """
    options = [arg for t in training_limits.of(subcommand) if t.form for arg in _option(t)]
    return [subcommand, *arguments, *options, *after, "--json"]


def xcom(task_id: str, key: str) -> str:
    """The template of one key of an earlier stage's summary (its XCom), for :func:`command`."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"  # {{{{ }}}}: Jinja's own braces


def _option(t: training_limits.Tunable) -> list[str]:
    value = f"params.{t.name}"
    if t.type == "boolean":
        on, off = t.flag.split("/")
        return [f"{{{{ '{on}' if {value} else '{off}' }}}}"]  # {{{{ }}}}: Jinja's own braces
    return [t.flag, f"{{{{ {value} | join(',') }}}}" if t.type == "array" else f"{{{{ {value} }}}}"]


def _pod_operator(
    task_id: str, arguments: list[str], resources: Resources, settings: StageSettings, **kwargs
):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    container_security = k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )
    return KubernetesPodOperator(
        task_id=task_id,
        kubernetes_conn_id=settings.conn_id,
        name=f"imgtag-{task_id.replace('_', '-')}",
        namespace=settings.namespace,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        cmds=["imgtag"],
        arguments=arguments,
        labels={"app.kubernetes.io/name": "imgtag", "app.kubernetes.io/component": task_id},
        container_resources=k8s.V1ResourceRequirements(
            requests=resources.requests(), limits=resources.limits()
        ),
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=settings.configmap)),
            k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=settings.secret)),
        ],
        # A read-only root filesystem still needs a scratch /tmp (TensorFlow, tempfile).
        volumes=[
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=resources.tmp_size)),
            *(
                k8s.V1Volume(
                    name=claim,
                    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=claim),
                )
                for claim, _ in settings.volumes
            ),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
            *(k8s.V1VolumeMount(name=claim, mount_path=path) for claim, path in settings.volumes),
        ],
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=settings.run_as_user,
            run_as_group=settings.run_as_user,
            fs_group=settings.run_as_user,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=container_security,
        xcom_sidecar_container_security_context=container_security,
        service_account_name=settings.service_account,
        automount_service_account_token=False,  # stages never talk to the Kubernetes API
        do_xcom_push=True,  # /airflow/xcom/return.json becomes the XCom
        get_logs=True,
        on_finish_action="delete_pod",
        **kwargs,
    )


class LocalStageOperator(BaseOperator):
    """Run ``imgtag <arguments>`` as a local subprocess; its JSON summary is the XCom.

    The command inherits the worker's environment. Its stderr goes to the task log as it comes;
    a non-zero exit fails the task with the exit status and the end of stderr, except an exit
    status in ``skip_on_exit_code``, which skips the task (like ``KubernetesPodOperator``'s) with
    the summary's ``reason`` in the message, and exit status 2 (``ExitCode.USAGE``: the command refused
    its input), which fails the task at once, without the retries meant for transient faults. A
    summary printed before a non-zero exit is still pushed as the XCom, as the pod's XCom sidecar
    does.
    """

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        arguments: Sequence[str],
        skip_on_exit_code: int | Container[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.arguments = list(arguments)
        if skip_on_exit_code is None:
            skip_on_exit_code = ()
        elif isinstance(skip_on_exit_code, int):
            skip_on_exit_code = (skip_on_exit_code,)
        self.skip_on_exit_code: Container[int] = skip_on_exit_code
        self._process: subprocess.Popen | None = None

    def execute(self, context) -> dict:
        try:
            return run_stage(self.arguments, log=self.log, on_start=self._remember)
        except StageExit as exc:
            ti = context.get("ti")
            if exc.summary is not None and self.do_xcom_push and ti is not None:
                ti.xcom_push(key="return_value", value=exc.summary)
            if exc.returncode in self.skip_on_exit_code:
                raise AirflowSkipException(_skip_message(exc)) from exc
            if exc.returncode == ExitCode.USAGE:  # bad input: fail now, whatever the retries
                raise AirflowFailException(f"{exc} (bad input: not retried)") from exc
            raise

    def _remember(self, process: subprocess.Popen) -> None:
        self._process = process

    def on_kill(self) -> None:
        """Ask the command to stop (SIGTERM: a drain finishes its current batch)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)


def _skip_message(exc: StageExit) -> str:
    """Why a stage was skipped: its summary's ``reason``, else its summary, else its stderr tail."""
    if exc.summary is not None and exc.summary.get("reason"):
        why = str(exc.summary["reason"])
    elif exc.summary is not None:
        why = json.dumps(exc.summary, sort_keys=True)
    else:
        why = f"end of its stderr:\n{exc.stderr_tail}"
    return f"`{' '.join(exc.command)}` exited with status {exc.returncode}, which skips the task: {why}"


#: The Airflow connection to Airflow's own REST API, through which a task sets its run's note:
#: ``host`` (a URL, or a host name with ``schema`` and ``port``), ``login`` and ``password`` of a
#: user who may edit DAG runs. ``imgtag platform`` defines it (``AIRFLOW_CONN_IMGTAG_AIRFLOW_API``).
API_CONN_ID = "imgtag_airflow_api"
#: The longest note Airflow's REST API takes.
NOTE_LIMIT = 1000


def gate_note(summary: dict | None) -> str | None:
    """The run's note for a gate summary (Markdown): the verdict, why, and the figures; None
    when there is no summary (the gate did not run, or failed before deciding)."""
    if not summary or "passed" not in summary:
        return None
    version = summary.get("model_version", "?")
    metric = summary.get("metric", "map")
    mine = (summary.get("challenger") or {}).get(metric)
    theirs = (summary.get("champion") or {}).get(metric)
    if summary["passed"]:
        head = f"**Gate passed**: version {version} is promoted (`promote`)."
    else:
        head = f"**Gate rejected** version {version}: `promote` was skipped, the champion is unchanged."
    lines = [head, "", f"Reason: {summary.get('reason', '?')}."]
    if mine is not None:
        figures = f"{metric}: challenger {mine:.4f}"
        if theirs is not None:
            figures += f", champion {theirs:.4f}, margin {summary.get('margin')}"
        figures += f"; {summary.get('test_images', '?')} test images"
        if theirs is not None:
            figures += f"; the champion is {summary.get('champion_is', '?')}"
        lines.append(figures + ".")
    dropped = summary.get("dropped_tags") or []
    if dropped:
        shown = ", ".join(dropped[:20]) + (f" and {len(dropped) - 20} more" if len(dropped) > 20 else "")
        lines.append(f"Tags the champion emits and this version cannot: {shown}.")
    for key, label in (("gains", "Per-tag AP gains"), ("losses", "Per-tag AP losses")):
        rows = summary.get(key) or []
        if rows:
            lines.append(f"{label}: " + ", ".join(f"{r['tag']} {r['change']:+.3f}" for r in rows[:10]) + ".")
    note = "\n".join(lines)
    if len(note) > NOTE_LIMIT:
        note = note[: NOTE_LIMIT - 40].rsplit(" ", 1)[0] + " ... (the gate's log has it all)"
    return note


def _api_base(connection) -> str:
    host = (connection.host or "").rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    port = f":{connection.port}" if connection.port else ""
    return f"{connection.schema or 'http'}://{host}{port}"


def set_run_note(
    dag_id: str, run_id: str, note: str, *, conn_id: str = API_CONN_ID, timeout: float = 30
) -> None:
    """Set a DAG run's note through Airflow's REST API (``PATCH /api/v2/dags/.../dagRuns/...``),
    with a token from ``/auth/token`` for the connection's user. A task cannot set its run's note
    otherwise: Airflow 3's task execution API has no call for it.

    Raises:
        airflow.sdk.exceptions.AirflowNotFoundException: no such connection.
        OSError: the API did not answer, or refused (``urllib.error.HTTPError``).
    """
    import urllib.parse
    import urllib.request

    from airflow.sdk import Connection

    connection = Connection.get(conn_id)
    base = _api_base(connection)

    def call(method: str, path: str, body: dict, token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(base + path, json.dumps(body).encode(), headers, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"{}")

    token = call("POST", "/auth/token", {"username": connection.login, "password": connection.password})
    quoted = urllib.parse.quote(run_id, safe="")
    call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}", {"note": note}, token["access_token"])


def note_gate_verdict(context) -> str:
    """The ``note`` task of the training DAG: the gate's verdict (its XCom) into the task's log
    and the run's note. A note that cannot be set is logged, not fatal: the verdict stays in the
    gate's log, its XCom and MLflow."""
    import logging

    log = logging.getLogger("imgtag.note")
    summary = context["ti"].xcom_pull(task_ids="gate")
    note = gate_note(summary)
    if note is None:
        log.info("no gate verdict to note (the gate did not run, or failed: see its log)")
        return ""
    log.info("%s", note)
    dag_run = context["dag_run"]
    try:
        set_run_note(dag_run.dag_id, dag_run.run_id, note)
    except (AirflowNotFoundException, OSError, ValueError, KeyError) as exc:  # no connection, API refusing
        log.warning(
            "could not set the run's note through Airflow's REST API (connection %r): %s; the verdict "
            "is in the gate task's log and its XCom",
            API_CONN_ID,
            exc,
        )
    return note


def imgtag_executable() -> str:
    """The ``imgtag`` next to the running Python (its venv), else the one on ``PATH``."""
    beside = Path(sys.executable).parent / "imgtag"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("imgtag")
    if found is None:
        raise StageError(
            f"no imgtag command: neither {beside} nor one on PATH; install imgtag (pip install -e .)"
        )
    return found


def run_stage(
    arguments: Sequence[str],
    *,
    log=None,
    on_start=None,
    env: Mapping[str, str] | None = None,
    stderr_tail_lines: int = 30,
    stop_grace_seconds: float = 60.0,
) -> dict:
    """Run ``imgtag <arguments>`` and return the JSON summary it printed last on stdout.

    Args:
        arguments: the command line after ``imgtag``.
        log: a logger for the command's stderr lines (they are not kept otherwise).
        on_start: called with the ``Popen`` once the command has started.
        env: the command's environment; this process's environment when omitted.
        stderr_tail_lines: how many last stderr lines an error message quotes.
        stop_grace_seconds: how long an interrupted command gets to stop after SIGTERM.

    Raises:
        StageExit: the command exited non-zero (the message quotes its stderr tail; the
            exception carries the exit status and the summary, if one was printed).
        StageError: the command printed no JSON object.
    """
    command = [imgtag_executable(), *map(str, arguments)]
    process = _start(command, env, log)
    if on_start is not None:
        on_start(process)
    tail: deque[str] = deque(maxlen=stderr_tail_lines)
    pump = threading.Thread(target=_pump_stderr, args=(process, tail, log), name="imgtag-stderr", daemon=True)
    pump.start()
    try:
        stdout = process.stdout.read()
        returncode = process.wait()
    finally:  # interrupted (timeout, kill): stop the command rather than orphan it
        _stop(process, stop_grace_seconds)
        pump.join(timeout=5)
    if returncode != 0:
        raise _exit_error(command, returncode, stdout, tail)
    return parse_summary(stdout, command)


def _start(command: list[str], env: Mapping[str, str] | None, log) -> subprocess.Popen:
    """Start the command, unbuffered, with its stdout and stderr piped to this process."""
    environment = dict(os.environ if env is None else env)
    environment.setdefault("PYTHONUNBUFFERED", "1")
    if log is not None:
        log.info("Running %s", " ".join(command))
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
    )


def _pump_stderr(process: subprocess.Popen, tail: deque[str], log) -> None:
    """Keep the last stderr lines in ``tail`` and pass every one to ``log``, until the pipe closes."""
    for line in process.stderr:
        line = line.rstrip("\n")
        tail.append(line)
        if log is not None:
            log.info("%s", line)


def _stop(process: subprocess.Popen, grace_seconds: float) -> None:
    """Terminate a command still running; kill it if it has not stopped after ``grace_seconds``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exit_error(command: list[str], returncode: int, stdout: str, tail: deque[str]) -> StageExit:
    """The error of a command that exited non-zero: its stderr tail, and its summary if it printed one."""
    stderr = "\n".join(tail) or "(nothing on stderr)"
    try:
        summary = parse_summary(stdout, command)
    except StageError:
        summary = None
    return StageExit(
        f"`{' '.join(command)}` exited with status {returncode}; end of its stderr:\n{stderr}",
        command=command,
        returncode=returncode,
        summary=summary,
        stderr_tail=stderr,
    )


def parse_summary(stdout: str, command: Sequence[str] = ("imgtag",)) -> dict:
    """The last JSON object in ``stdout`` that starts a line, on one line or pretty-printed.

    Only objects whose ``{`` opens a line are candidates, so the nested objects of an indented
    summary are never mistaken for it; a stray line printed after the summary is ignored.
    """
    decoder = json.JSONDecoder()
    starts = [0] + [i + 1 for i, char in enumerate(stdout) if char == "\n"]
    for start in reversed(starts):
        if not stdout.startswith("{", start):
            continue
        try:
            value, _ = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    shown = stdout.strip()[-500:] or "(nothing)"
    raise StageError(
        f"`{' '.join(command)}` printed no JSON summary on stdout (was --json given?); "
        f"its stdout ended with:\n{shown}"
    )
