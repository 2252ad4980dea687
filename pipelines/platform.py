"""``imgtag platform``: the whole platform on one machine, as local processes, with one command.

It starts, each in its own process group with its log under ``$IMGTAG_HOME/platform/logs``:

| component | command | default URL |
|---|---|---|
| Airflow 3 API server (UI, REST API, execution API) | ``airflow api-server`` | http://127.0.0.1:8080 |
| Airflow scheduler (LocalExecutor: the stages run as its children) | ``airflow scheduler`` | |
| Airflow DAG processor (parses ``dags/``) | ``airflow dag-processor`` | |
| Airflow triggerer | ``airflow triggerer`` | |
| MLflow tracking server and UI, on the store the stages write to | ``mlflow server`` | http://127.0.0.1:5000 |
| the catalog (web pages, REST API, admin) under gunicorn | ``gunicorn catalog.wsgi`` | http://127.0.0.1:8000 |
| a tagging worker on the RabbitMQ queue, with its metrics | ``imgtag worker`` | http://127.0.0.1:9100/metrics |
| Prometheus scraping the worker (when Debian's package is unpacked: ``make tools``) | ``prometheus`` | http://127.0.0.1:9090 |

Airflow keeps its metadata in ``$IMGTAG_HOME/airflow/airflow.db`` (SQLite) unless
``--airflow-db postgres://...`` names a PostgreSQL database (the ``psycopg`` driver, which the
catalog uses too, serves both Airflow's sync and async engines). The DAGs are active from the
start (``AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False``): a paused ``nightly_retag`` would
ignore the first promotion. The stages (``imgtag ingest`` ... ``imgtag promote``) inherit this
process's environment, so they share ``IMGTAG_HOME``, ``DATABASE_URL``, ``IMGTAG_AMQP_URL`` and
``MLFLOW_TRACKING_URI`` with the catalog and the worker.

Secrets made on first start stay in ``$IMGTAG_HOME/platform`` (mode 0600): Airflow's JWT and API
keys, the catalog's ``SECRET_KEY``, and the catalog's ``admin`` password. Airflow's ``admin``
password is made here too, in the file Airflow's simple auth manager keeps
(``simple_auth_manager_passwords.json.generated`` in ``AIRFLOW_HOME``), before the api-server
starts: the stages then reach Airflow's REST API through the connection ``imgtag_airflow_api``
(``AIRFLOW_CONN_IMGTAG_AIRFLOW_API``), with which the training DAG writes the gate's verdict
into each run's note. Both passwords are printed when the platform is up.

The first start also makes the starter model version 1 (``imgtag starter install``: registered
in MLflow with the alias ``champion``, served from the model repository), so that every later
version can be rolled back to it.

Ctrl-C or SIGTERM stops everything: each component's process group and every process it started
(the scheduler's task processes too) get SIGTERM, then SIGKILL after a grace period. When a
component dies on its own the platform says which, shows the end of its log and stops the rest.
It refuses to start when a port is taken or RabbitMQ is unreachable, and says what to do.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ImgtagError
from core.settings import Settings
from pipelines.airflow_client import AirflowAPI, airflow_password

#: The project's checkout: ``dags/`` sits beside the ``pipelines`` package.
PROJECT_DIR = Path(__file__).resolve().parent.parent
DAGS_DIR = PROJECT_DIR / "dags"
#: Where ``make tools`` unpacks Debian's prometheus package.
BUNDLED_PROMETHEUS = PROJECT_DIR / ".tools" / "prometheus" / "usr" / "bin" / "prometheus"


class PlatformError(ImgtagError, RuntimeError):
    """The platform cannot start (a port taken, RabbitMQ missing, a component died); the message says what to do."""


@dataclass(frozen=True)
class Ports:
    """The ports the platform listens on, all on 127.0.0.1."""

    airflow: int = 8080
    mlflow: int = 5000
    catalog: int = 8000
    worker_metrics: int = 9100
    prometheus: int = 9090
    airflow_worker_logs: int = 8793
    airflow_trigger_logs: int = 8794

    def named(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Component:
    """One long-running process of the platform."""

    name: str
    argv: list[str]
    url: str | None = None  # shown to people
    ready_url: str | None = None  # polled until it answers below 500
    note: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)
    log: Path | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[str, int]) -> None:
    """Refuse a port that is taken, or one used twice, naming the option that moves it."""
    seen: dict[int, str] = {}
    for name, port in ports.items():
        option = f"--{name.replace('_', '-')}-port"
        if port in seen:
            raise PlatformError(f"port {port} is given to both {seen[port]} and {name}: change {option}")
        seen[port] = name
        if not port_is_free(port):
            raise PlatformError(
                f"port {port} ({name}) is taken by another process: stop it, or start the platform "
                f"with {option} <free port>"
            )


def check_broker(amqp_url: str) -> None:
    """Refuse to start without RabbitMQ: the worker, uploads and the retag DAG all need it."""
    import pika

    parameters = pika.URLParameters(amqp_url)
    parameters.socket_timeout = 5
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except Exception as exc:  # pika raises many kinds; all mean "not usable"
        shown = amqp_url.split("@")[-1]
        raise PlatformError(
            f"RabbitMQ at {shown} is not reachable ({type(exc).__name__}): start it "
            "(e.g. `sudo systemctl start rabbitmq-server`) or point IMGTAG_AMQP_URL at one"
        ) from exc


def airflow_db_urls(url: str | None, airflow_home: Path) -> tuple[str, str]:
    """Airflow's sync and async metadata URLs: SQLite in ``airflow_home`` by default, else the
    PostgreSQL ``url`` through psycopg 3 (installed for the catalog; psycopg2 and asyncpg are not)."""
    if not url:
        sqlite = f"sqlite:///{airflow_home / 'airflow.db'}"
        return sqlite, f"sqlite+aiosqlite:///{airflow_home / 'airflow.db'}"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgres", "postgresql"):
        raise PlatformError(
            f"--airflow-db {url!r}: expected postgres://user@host:port/database (or leave it out for SQLite)"
        )
    psycopg = f"postgresql+psycopg://{rest}"
    return psycopg, psycopg


def _secret(path: Path, make: Callable[[], str]) -> str:
    """A value kept in ``path`` (mode 0600), made on first use."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


@dataclass
class Platform:
    """Start, watch and stop the platform's processes (see the module's docstring)."""

    settings: Settings
    ports: Ports = Ports()
    airflow_db: str | None = None
    prometheus: str | None = None  # the prometheus binary, or None for none
    worker: bool = True
    stop_grace_seconds: float = 20.0
    ready_timeout_seconds: float = 240.0
    say: Callable[[str], None] = print
    components: list[Component] = field(default_factory=list)

    # --- layout ---

    @property
    def root(self) -> Path:
        return self.settings.home / "platform"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.settings.home / "airflow"

    @property
    def state_file(self) -> Path:
        """What is running: process ids, URLs, where the passwords are (for people and tests)."""
        return self.root / "platform.json"

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    @property
    def runs_mlflow(self) -> bool:
        """False when MLFLOW_TRACKING_URI already names a server: the stages use that one."""
        return not self.settings.mlflow_tracking_uri.startswith(("http://", "https://"))

    # --- environment ---

    def environment(self) -> dict[str, str]:
        """The environment every component (and every stage the scheduler runs) inherits."""
        env = dict(os.environ)
        home = self.settings.home
        sync_url, async_url = airflow_db_urls(self.airflow_db, self.airflow_home)
        api = self.url(self.ports.airflow)
        # Airflow's admin password, made here rather than by the api-server on its first start
        # (its simple auth manager keeps the users it finds in this file), so that the stages
        # know it from the start: the training DAG sets each run's note through the REST API.
        _secret(self.airflow_password_file(), lambda: json.dumps({"admin": secrets.token_urlsafe(12)}))
        airflow_api = {
            "conn_type": "http",
            "host": api,
            "login": "admin",
            "password": airflow_password(self.airflow_password_file()),
        }
        env.update(
            {
                "IMGTAG_HOME": str(home),
                "IMGTAG_AMQP_URL": self.settings.amqp_url,
                "MLFLOW_TRACKING_URI": self.settings.mlflow_tracking_uri,
                "IMGTAG_STAGE_EXECUTOR": "local",
                # where `ingest` may read labelled images (`make labelled-sample` draws into it);
                # a training run's form names folders under it, and cannot add others
                "IMGTAG_INGEST_ROOTS": env.get("IMGTAG_INGEST_ROOTS") or str(home / "labelled"),
                "IMGTAG_SECRET_KEY": _secret(
                    self.root / "catalog-secret-key", lambda: secrets.token_urlsafe(50)
                ),
                "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                "PYTHONUNBUFFERED": "1",
                # MLflow's job runner serves GenAI features (scorers, prompt optimisation) with
                # seven worker processes, 1.7 GB idle: not used by model training.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "3",  # 2 cores: a few stages at once, not 32
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sync_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": async_url,
                "AIRFLOW__API__BASE_URL": api,
                "AIRFLOW__API__SECRET_KEY": _secret(
                    self.root / "airflow-api-secret", lambda: secrets.token_urlsafe(32)
                ),
                "AIRFLOW__API_AUTH__JWT_SECRET": _secret(
                    self.root / "airflow-jwt-secret", lambda: secrets.token_urlsafe(32)
                ),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports.airflow_worker_logs),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports.airflow_trigger_logs),
                "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
                "AIRFLOW_CONN_IMGTAG_AIRFLOW_API": json.dumps(airflow_api),
            }
        )
        return env

    def airflow_password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def catalog_password_file(self) -> Path:
        return self.root / "catalog-admin-password"

    # --- the components ---

    def plan(self) -> list[Component]:
        """The processes to start, in order."""
        bin_dir = Path(sys.executable).parent
        components = self._airflow_components(str(bin_dir / "airflow"))
        if self.runs_mlflow:
            components.append(self._mlflow_component(str(bin_dir / "mlflow")))
        components.append(self._catalog_component(str(bin_dir / "gunicorn")))
        if self.worker:
            components.append(self._worker_component(str(bin_dir / "imgtag")))
        if self.prometheus:
            components.append(self._prometheus_component())
        return components

    def _airflow_components(self, airflow: str) -> list[Component]:
        """Airflow's api-server, scheduler, dag-processor and triggerer."""
        ports = self.ports
        return [
            Component(
                "airflow api-server",
                [
                    airflow,
                    "api-server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports.airflow),
                    "--workers",
                    "1",
                ],
                url=self.url(ports.airflow),
                ready_url=f"{self.url(ports.airflow)}/api/v2/version",
                note="Airflow: trigger training_pipeline, watch runs, read task logs",
            ),
            Component("airflow scheduler", [airflow, "scheduler"]),
            Component("airflow dag-processor", [airflow, "dag-processor"]),
            Component("airflow triggerer", [airflow, "triggerer"]),
        ]

    def _mlflow_component(self, mlflow: str) -> Component:
        """The MLflow tracking server and UI, on the store the training stages write to."""
        ports = self.ports
        return Component(
            "mlflow server",
            [
                mlflow,
                "server",
                "--backend-store-uri",
                self.settings.mlflow_tracking_uri,
                "--default-artifact-root",
                (self.settings.home / "mlartifacts").as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.mlflow),
                "--workers",
                "1",
            ],
            url=self.url(ports.mlflow),
            ready_url=f"{self.url(ports.mlflow)}/health",
            note="MLflow: training runs, metrics, registered model versions, the champion alias",
        )

    def _catalog_component(self, gunicorn: str) -> Component:
        """The catalog under gunicorn."""
        ports = self.ports
        return Component(
            "catalog",
            [
                gunicorn,
                "catalog.wsgi:application",
                "--bind",
                f"127.0.0.1:{ports.catalog}",
                "--workers",
                "2",
                "--timeout",
                "120",
                "--chdir",
                str(PROJECT_DIR),
                "--access-logfile",
                "-",
            ],
            url=self.url(ports.catalog),
            ready_url=f"{self.url(ports.catalog)}/healthz",
            note="catalog: upload, search, review tags; REST API under /api/",
        )

    def _worker_component(self, imgtag: str) -> Component:
        """A tagging worker on the queue, with its Prometheus metrics."""
        ports = self.ports
        return Component(
            "tagging worker",
            [imgtag, "worker", "--metrics-port", str(ports.worker_metrics)],
            url=f"{self.url(ports.worker_metrics)}/metrics",
            ready_url=f"{self.url(ports.worker_metrics)}/metrics",
            note="tags uploads from the RabbitMQ queue with the champion",
        )

    def _prometheus_component(self) -> Component:
        """Prometheus scraping the worker."""
        ports = self.ports
        config = self.root / "prometheus.yml"
        return Component(
            "prometheus",
            [
                self.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.root / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{ports.prometheus}",
            ],
            url=self.url(ports.prometheus),
            ready_url=f"{self.url(ports.prometheus)}/-/ready",
            note="Prometheus: the worker's tagging metrics (imgtag_*)",
        )

    def _write_prometheus_config(self) -> None:
        targets = [f"127.0.0.1:{self.ports.worker_metrics}"] if self.worker else []
        config = {
            "global": {"scrape_interval": "15s"},
            "scrape_configs": [
                {"job_name": "imgtag-worker", "static_configs": [{"targets": targets}]},
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports.prometheus}"]}],
                },
            ],
        }
        # JSON is YAML: no YAML writer needed.
        (self.root / "prometheus.yml").write_text(json.dumps(config, indent=2))

    # --- start, watch, stop ---

    def preflight(self) -> None:
        """Everything that would make a start fail half-way: ports, RabbitMQ, the DAGs folder."""
        if not DAGS_DIR.is_dir():
            raise PlatformError(
                f"{DAGS_DIR}: no dags folder; run the platform from a checkout installed with `pip install -e .`"
            )
        ports = {
            "airflow": self.ports.airflow,
            "airflow_worker_logs": self.ports.airflow_worker_logs,
            "airflow_trigger_logs": self.ports.airflow_trigger_logs,
            "catalog": self.ports.catalog,
        }
        if self.runs_mlflow:
            ports["mlflow"] = self.ports.mlflow
        if self.worker:
            ports["worker_metrics"] = self.ports.worker_metrics
        if self.prometheus:
            ports["prometheus"] = self.ports.prometheus
        check_ports(ports)
        check_broker(self.settings.amqp_url)

    def _run_once(self, name: str, argv: Sequence[str], env: dict[str, str], stdin: str | None = None) -> str:
        """A setup command (migrations, the first user); its output goes to its log."""
        log = self.logs / f"{name}.log"
        self.say(f"  {name} ...")
        done = subprocess.run(
            list(argv), env=env, input=stdin, capture_output=True, text=True, cwd=PROJECT_DIR, check=False
        )
        log.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise PlatformError(
                f"`{' '.join(argv[:3])}` failed (exit {done.returncode}); see {log}:\n{_tail(log)}"
            )
        return done.stdout

    def setup(self, env: dict[str, str]) -> None:
        """Bring the Airflow and catalog databases up to date, make the catalog's admin once, and
        on the first start make the starter model version 1 (registered in MLflow, served, the
        alias ``champion``: ``imgtag starter install``)."""
        bin_dir = Path(sys.executable).parent
        self._run_once("airflow-db-migrate", [str(bin_dir / "airflow"), "db", "migrate"], env)
        self._run_once("catalog-migrate", [str(bin_dir / "imgtag"), "migrate"], env)
        if self.settings.starter:
            installed = json.loads(
                self._run_once(
                    "starter-install", [str(bin_dir / "imgtag"), "starter", "install", "--json"], env
                )
            )
            if installed["installed"]:
                self.say(
                    f"  the starter model is version {installed['serving_version']}: registered in MLflow, "
                    "served, and the champion"
                )
        password_file = self.catalog_password_file()
        if not password_file.is_file():
            password = secrets.token_urlsafe(12)
            done = subprocess.run(
                [str(bin_dir / "imgtag"), "createuser", "admin", "--superuser", "--password-stdin"],
                env=env,
                input=password + "\n",
                capture_output=True,
                text=True,
                cwd=PROJECT_DIR,
                check=False,
            )
            if done.returncode == 0:
                _secret(password_file, lambda: password)
            elif "already exists" not in done.stderr + done.stdout:
                raise PlatformError(f"cannot create the catalog's admin user: {done.stderr.strip()}")

    def start(self) -> float:
        """Start every component and wait until each answers; returns the seconds it took."""
        started = time.monotonic()
        self.preflight()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        self.say(f"preparing (logs in {self.logs})")
        self.setup(env)
        if self.prometheus:
            self._write_prometheus_config()
        self.components = self.plan()
        for component in self.components:
            component.log = self.logs / f"{component.name.replace(' ', '-')}.log"
            handle = component.log.open("ab")
            component.process = subprocess.Popen(
                component.argv,
                env=env,
                cwd=PROJECT_DIR,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            handle.close()  # the child keeps its own copy
            self.say(f"  started {component.name} (pid {component.process.pid})")
        self._write_state()
        deadline = time.monotonic() + self.ready_timeout_seconds
        for component in self.components:
            if component.ready_url:
                self._wait_ready(component, deadline)
                self.say(f"  {component.name} is up ({time.monotonic() - started:.0f} s)")
        self._wait_for_dags(deadline)
        self.say(f"  Airflow lists the DAGs ({time.monotonic() - started:.0f} s)")
        seconds = time.monotonic() - started
        self._write_state(ready_seconds=round(seconds, 1))
        return seconds

    def _poll(
        self, done: Callable[[], bool], deadline: float, failure: Callable[[], str], every: float
    ) -> None:
        """Call ``done`` every ``every`` seconds until it is true; a component exiting or the
        deadline passing raises, the latter with ``failure()`` as the message."""
        while True:
            self.check_alive()
            if done():
                return
            if time.monotonic() > deadline:
                raise PlatformError(failure())
            time.sleep(every)

    def _wait_ready(self, component: Component, deadline: float) -> None:
        self._poll(
            lambda: _answers(component.ready_url),
            deadline,
            lambda: (
                f"{component.name} did not answer on {component.ready_url} within "
                f"{self.ready_timeout_seconds:.0f} s; see {component.log}:\n{_tail(component.log)}"
            ),
            every=1,
        )

    def airflow(self) -> AirflowAPI:
        """Airflow's REST API, signed in as ``admin``."""
        return AirflowAPI(
            self.url(self.ports.airflow), "admin", airflow_password(self.airflow_password_file())
        )

    def _wait_for_dags(self, deadline: float) -> None:
        """Wait until the DAG processor has parsed every DAG file, so the UI lists them at 'ready'."""
        expected = {path.stem for path in DAGS_DIR.glob("*.py")} - {"imgtag_stage"}
        api = self.airflow()
        listed: set[str] = set()

        def all_listed() -> bool:
            try:
                listed.update(dag["dag_id"] for dag in api.get("/api/v2/dags", limit=100)["dags"])
            except (OSError, KeyError, ValueError):
                pass
            return expected <= listed

        self._poll(
            all_listed,
            deadline,
            lambda: (
                f"Airflow lists {sorted(listed)} but not {sorted(expected - listed)} after "
                f"{self.ready_timeout_seconds:.0f} s; see {self.logs / 'airflow-dag-processor.log'}"
            ),
            every=2,
        )

    def check_alive(self) -> None:
        """Raise (with the end of its log) when a component has exited."""
        for component in self.components:
            if component.process is not None and component.process.poll() is not None:
                raise PlatformError(
                    f"{component.name} exited with status {component.process.returncode}; "
                    f"end of {component.log}:\n{_tail(component.log)}"
                )

    def _write_state(self, **extra) -> None:
        state = {
            "pid": os.getpid(),
            "home": str(self.settings.home),
            "airflow_home": str(self.airflow_home),
            "airflow_password_file": str(self.airflow_password_file()),
            "catalog_password_file": str(self.catalog_password_file()),
            "ports": self.ports.named(),
            "components": [
                {"name": c.name, "pid": c.process.pid if c.process else None, "url": c.url, "log": str(c.log)}
                for c in self.components
            ],
            **extra,
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def processes(self) -> list:
        """Every live process of the platform: the components and all their descendants."""
        import psutil

        found = {}
        for component in self.components:
            if component.process is None:
                continue
            try:
                parent = psutil.Process(component.process.pid)
                for process in [parent, *parent.children(recursive=True)]:
                    found[process.pid] = process
            except psutil.NoSuchProcess:
                pass
        return list(found.values())

    def memory_bytes(self) -> int:
        """Resident memory of every platform process (RSS, summed)."""
        import psutil

        total = 0
        for process in self.processes():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> int:
        """Stop every component and everything it started; returns how many processes were stopped."""
        import psutil

        everyone = self.processes()  # before anyone dies: orphans lose their place in the tree
        groups = {c.process.pid for c in self.components if c.process is not None}
        for group in groups:
            _signal_group(group, signal.SIGTERM)
        for process in everyone:
            try:
                process.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(everyone, timeout=self.stop_grace_seconds)
        for group in groups:
            _signal_group(group, signal.SIGKILL)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for component in self.components:
            if component.process is not None:
                try:
                    component.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        if self.state_file.exists():
            self.state_file.unlink()
        return len(everyone)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _answers(url: str) -> bool:
    """True when ``url`` answers with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def find_prometheus(settings: Settings) -> str | None:
    """Prometheus from ``settings.prometheus`` (``IMGTAG_PROMETHEUS``), ``make tools``' unpacked
    Debian package, or ``PATH``."""
    for candidate in (settings.prometheus, str(BUNDLED_PROMETHEUS), shutil.which("prometheus")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
