"""Airflow on Kubernetes: the Helm chart's values, the executor's pod template and the RBAC agree.

There is no helm binary or chart download here, so ``values.yaml`` is checked against the
chart's own ``values.schema.json`` (a pruned extract, see ``infra/k8s/airflow/SCHEMA_SOURCE.md``).
"""

from __future__ import annotations

import json
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.infra.conftest import K8S, ROOT

AIRFLOW = K8S / "airflow"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((AIRFLOW / "values.yaml").read_text())


@pytest.fixture(scope="module")
def pod_template() -> dict:
    return yaml.safe_load((AIRFLOW / "pod_template.yaml").read_text())


def env_of(entries) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in entries if "value" in e}


def test_values_follow_the_charts_schema(values):
    schema = json.loads((AIRFLOW / "values.schema.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_typo(values):
    schema = json.loads((AIRFLOW / "values.schema.json").read_text())
    broken = {**values, "executer": values["executor"]}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_kubernetes_executor_and_dags_from_git(values):
    assert values["executor"] == "KubernetesExecutor"
    assert values["dags"]["gitSync"]["enabled"] is True
    assert values["postgresql"]["enabled"] is False, "the metadata database is external, by secret"


@pytest.mark.parametrize("version", ["1.32", "1.37"])
def test_the_pod_template_is_a_valid_pod(pod_template, version):
    kubernetes_validate.validate(pod_template, version, strict=True)
    (base,) = [c for c in pod_template["spec"]["containers"] if c["name"] == "base"]
    assert {"cpu", "memory"} <= set(base["resources"]["limits"])
    assert base["securityContext"]["allowPrivilegeEscalation"] is False


def test_task_pods_and_dag_parsers_see_the_same_stage_settings(values, pod_template):
    """The DAG is parsed in the scheduler and again in each task pod; both must choose pods."""
    (base,) = [c for c in pod_template["spec"]["containers"] if c["name"] == "base"]
    chart_env, task_env = env_of(values["env"]), env_of(base["env"])
    stage_keys = {k for k in chart_env if k.startswith(("IMGTAG_", "AIRFLOW_CONN_"))}
    assert stage_keys and {k: chart_env[k] for k in stage_keys} == {k: task_env.get(k) for k in stage_keys}
    sys.path.insert(0, str(ROOT / "dags"))
    try:
        from imgtag_stage import StageSettings
    finally:
        sys.path.remove(str(ROOT / "dags"))
    settings = StageSettings.from_env(chart_env)
    assert settings.executor == "kubernetes" and settings.namespace == "imgtag"
    built = {
        f"ghcr.io/imgtag/imgtag-{p.name.removesuffix('.Dockerfile')}"
        for p in (ROOT / "infra/docker").glob("*.Dockerfile")
    }
    assert settings.image.rsplit(":", 1)[0] in built


def test_the_worker_account_is_the_one_allowed_to_launch_stage_pods(values, rendered):
    account = values["workers"]["serviceAccount"]["name"]
    for overlay, objects in rendered.items():
        bindings = [
            o
            for o in objects
            if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "airflow-stage-launcher"
        ]
        assert bindings, overlay
        subjects = {(s["namespace"], s["name"]) for b in bindings for s in b["subjects"]}
        assert subjects == {("airflow", account)}, overlay
        accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
        assert env_of(values["env"])["IMGTAG_K8S_SERVICE_ACCOUNT"] in accounts, overlay


def test_the_dag_parsers_and_task_pods_can_import_the_repository_root(values, pod_template):
    """The DAG files import core/errors.py (the exit codes) from the checkout git-sync makes.

    The chart mounts the dags volume at /opt/airflow/dags, git-sync links the checkout there as
    `repo`, and the DAG folder is /opt/airflow/dags/repo/<subPath>: the checkout's root, which
    holds core/, is the DAG folder's parent, and PYTHONPATH must name it for every component that
    parses the DAGs (scheduler, DAG processor, API server) and for the task pods.
    """
    sub_path = values["dags"]["gitSync"]["subPath"]
    assert sub_path == "dags" and (ROOT / sub_path / "imgtag_stage.py").is_file()
    (base,) = [c for c in pod_template["spec"]["containers"] if c["name"] == "base"]
    pythonpath = env_of(values["env"])["PYTHONPATH"]
    assert pythonpath == env_of(base["env"])["PYTHONPATH"] == "/opt/airflow/dags/repo"
    (init,) = pod_template["spec"]["initContainers"]
    sync = env_of(init["env"])
    (dags_mount,) = [m for m in base["volumeMounts"] if m["name"] == "dags"]
    assert f"{dags_mount['mountPath']}/{sync['GITSYNC_LINK']}" == pythonpath
    assert (ROOT / "core" / "errors.py").is_file()
