"""The Kubernetes overlays: they render, every object passes the Kubernetes schema, and every
workload has the limits, security settings, probes, disruption budget and network policy
that the deployment promises (``infra/README.md``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from tests.infra.conftest import K8S, OVERLAYS, ROOT

#: Kubernetes versions whose published schema the objects must satisfy (kubernetes-validate ships them).
K8S_VERSIONS = ("1.32", "1.37")
#: Custom resources: kubernetes-validate has no schema for them; tests/infra/test_crds.py
#: checks them against the operators' published CRDs.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet"}
#: The images infra/docker builds.
OUR_IMAGES = ("ghcr.io/imgtag/imgtag-pipelines", "ghcr.io/imgtag/imgtag-catalog")
ENV_SOURCES = ("core", "pipelines", "serving", "catalog", "dags")


def pod_template(obj: dict) -> dict:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]
    return spec["template"]


def workloads(objects):
    return [obj for obj in objects if obj["kind"] in WORKLOADS]


def containers(obj: dict):
    spec = pod_template(obj)["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def name(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, op = labels.get(expression["key"]), expression["operator"]
        if op == "In" and value not in expression["values"]:
            return False
        if op == "NotIn" and value in expression["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(rendered, overlay, version):
    objects = rendered[overlay]
    assert len(objects) > 20
    checked = 0
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.utils.SchemaNotFoundError:
            pytest.fail(
                f"{overlay}: no Kubernetes {version} schema for {obj['apiVersion']} {obj['kind']}: a custom "
                "resource needs its CRD in infra/k8s/crds (tests/infra/test_crds.py) and in CUSTOM_KINDS"
            )
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{overlay}: {name(obj)} is not valid on Kubernetes {version}: {exc.message} at {list(exc.path)}"
            )
        checked += 1
    assert checked >= len(objects) - 8


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_runs_locked_down(rendered, overlay):
    for obj in workloads(rendered[overlay]):
        pod = pod_template(obj)["spec"]
        pod_security = pod.get("securityContext", {})
        for container in containers(obj):
            where = f"{overlay}: {name(obj)} container {container['name']}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{where}: {kind} need cpu and memory"
                )
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser", 1)) != 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            assert not security.get("privileged"), where
            assert ":" in container["image"] and not container["image"].endswith(":latest"), (
                f"{where}: pin the image {container['image']!r} to a version"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_long_running_containers_have_probes(rendered, overlay):
    for obj in workloads(rendered[overlay]):
        if obj["kind"] not in {"Deployment", "StatefulSet", "DaemonSet"}:
            continue
        for container in pod_template(obj)["spec"]["containers"]:
            where = f"{overlay}: {name(obj)} container {container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_read_only_root_filesystems_are_the_rule(rendered, overlay):
    writable = [
        f"{name(obj)}/{container['name']}"
        for obj in workloads(rendered[overlay])
        for container in containers(obj)
        if not container.get("securityContext", {}).get("readOnlyRootFilesystem")
    ]
    # Each exception must be said in a skip reason on the resource (checkov CKV_K8S_22).
    for obj in workloads(rendered[overlay]):
        if any(entry.startswith(name(obj) + "/") for entry in writable):
            notes = " ".join(
                str(v) for k, v in obj["metadata"].get("annotations", {}).items() if "checkov" in k
            )
            assert "CKV_K8S_22" in notes, (
                f"{overlay}: {name(obj)} writes its root filesystem without saying why"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_replicated_workload_has_a_disruption_budget(rendered, overlay):
    objects = rendered[overlay]
    budgets = [obj for obj in objects if obj["kind"] == "PodDisruptionBudget"]
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"].get("minReplicas", o["spec"].get("minReplicaCount", 1))
        for o in objects
        if o["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
    }
    for obj in workloads(objects):
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        replicas = max(obj["spec"].get("replicas", 1), scaled.get(obj["metadata"]["name"], 0))
        if replicas < 2:
            continue  # one pod: a budget could only block node drains or allow nothing
        labels = pod_template(obj)["metadata"]["labels"]
        assert any(selects(pdb["spec"]["selector"], labels) for pdb in budgets), (
            f"{overlay}: no PodDisruptionBudget selects {name(obj)}"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_cover_every_pod(rendered, overlay):
    objects = rendered[overlay]
    policies = [obj for obj in objects if obj["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] in ({}, None)
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{overlay}: no default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)"
    for obj in workloads(objects):
        labels = pod_template(obj)["metadata"]["labels"]
        allowing = [p for p in policies if p not in deny and selects(p["spec"]["podSelector"], labels)]
        assert allowing, f"{overlay}: no NetworkPolicy lets {name(obj)} talk to anything but DNS"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_stage_pods_find_what_the_dags_expect(rendered, overlay):
    sys.path.insert(0, str(ROOT / "dags"))
    try:
        from imgtag_stage import DEFAULT_VOLUMES, StageSettings
    finally:
        sys.path.remove(str(ROOT / "dags"))
    objects = rendered[overlay]
    stage = StageSettings()
    found = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert ("Namespace", stage.namespace) in found
    assert ("ConfigMap", stage.configmap) in found
    for claim, _ in DEFAULT_VOLUMES:
        assert ("PersistentVolumeClaim", claim) in found, (
            f"{overlay}: the stages mount {claim}, which is not created"
        )
    namespaces = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert namespaces == {stage.namespace}, f"{overlay}: objects outside {stage.namespace}: {namespaces}"
    # Airflow may create the stage pods in this namespace and nowhere else.
    assert not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    airflow = [
        b
        for b in bindings
        if any(s["kind"] == "ServiceAccount" and s.get("namespace") == "airflow" for s in b["subjects"])
    ]
    assert airflow, f"{overlay}: no RoleBinding lets Airflow's service account launch stage pods"
    for binding in airflow:
        rules = roles[binding["roleRef"]["name"]]["rules"]
        pods = [r for r in rules if "pods" in r["resources"]]
        assert pods and "create" in pods[0]["verbs"]
        assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules), "no wildcards"
        assert not any({"secrets", "roles", "rolebindings"} & set(r["resources"]) for r in rules)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_keys_are_variables_the_code_reads(rendered, overlay):
    code = "\n".join(path.read_text() for folder in ENV_SOURCES for path in (ROOT / folder).rglob("*.py"))
    config = [
        o for o in rendered[overlay] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "imgtag-config"
    ]
    assert config
    # MLflow's own variables are read by the mlflow server command, not by imgtag's code.
    unread = [
        key
        for key in config[0]["data"]
        if not re.search(rf"[\"']{re.escape(key)}[\"']", code) and not key.startswith("MLFLOW_ARTIFACTS")
    ]
    assert not unread, f"{overlay}: imgtag-config keys no code reads (typos?): {unread}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_images_are_the_ones_infra_docker_builds(rendered, overlay):
    dockerfiles = sorted((ROOT / "infra" / "docker").glob("*.Dockerfile"))
    built = {f"ghcr.io/imgtag/imgtag-{path.name.removesuffix('.Dockerfile')}" for path in dockerfiles}
    for obj in workloads(rendered[overlay]):
        for container in containers(obj):
            repository = container["image"].rsplit(":", 1)[0].split("@")[0]
            if repository.startswith("ghcr.io/imgtag/"):
                assert repository in built, (
                    f"{overlay}: {name(obj)} runs {repository}, which infra/docker does not build"
                )


def test_prod_keeps_secret_values_out_of_git(rendered):
    secrets = [
        o for o in rendered["prod"] if o["kind"] == "Secret" and (o.get("data") or o.get("stringData"))
    ]
    assert not secrets, f"secrets with values in the prod overlay: {[name(o) for o in secrets]}"


def test_every_overlay_folder_is_tested():
    overlays = {p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml")}
    assert overlays == set(OVERLAYS)


def test_policy_checks_can_fail():
    """The helpers above catch what they are for, on small broken objects."""
    assert selects({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not selects({"matchLabels": {"a": "1"}}, {"a": "2"})
    assert not selects({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {"a": "y"})
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicaz": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.32", strict=True)
    assert Path(K8S).is_dir()
