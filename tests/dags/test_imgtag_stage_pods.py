"""With IMGTAG_STAGE_EXECUTOR=kubernetes every stage is a pod whose spec the Kubernetes schema accepts."""

from __future__ import annotations

import copy

import pytest

#: Kubernetes versions whose published schema the pods must satisfy (kubernetes-validate ships them).
K8S_VERSIONS = ("1.32", "1.37")
IMAGE = "registry.example.com/imgtag:0.1.0"
#: Tasks that run in the Airflow worker itself, not a stage: the training DAG's branch, its
#: empty arm and the verdict's note (a REST call to Airflow).
NOT_STAGES = {
    ("training_pipeline", "train_or_gate"),
    ("training_pipeline", "existing_version"),
    ("training_pipeline", "note"),
}
#: The imgtag subcommands the DAGs run.
STAGES = {
    *("drain", "requeue", "rollback"),
    *("ingest", "validate", "version", "train", "evaluate", "register", "gate", "promote"),
}


@pytest.fixture
def pod_dagbag(load_dags):
    """The DAGs in kubernetes mode; building pods reads the loopback KUBECONFIG (see conftest)."""
    dagbag = load_dags(IMGTAG_STAGE_EXECUTOR="kubernetes", IMGTAG_IMAGE=IMAGE)
    assert dagbag.import_errors == {}
    return dagbag


@pytest.fixture
def pods(pod_dagbag):
    """``{(dag_id, task_id): (operator, pod manifest as the API server receives it)}``."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    built = {}
    for dag in pod_dagbag.dags.values():
        for task in dag.tasks:
            if (dag.dag_id, task.task_id) in NOT_STAGES:
                continue
            assert isinstance(task, KubernetesPodOperator), f"{dag.dag_id}.{task.task_id} is not a pod"
            pod = task.build_pod_request_obj()
            built[dag.dag_id, task.task_id] = task, ApiClient().sanitize_for_serialization(pod)
    assert len(built) == 13
    return built


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_pod_validates_against_the_kubernetes_schema(pods, version):
    import kubernetes_validate

    for _, manifest in pods.values():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_schema_check_is_strict(pods):
    """The validation above is not vacuous: an unknown field or a bad type is refused."""
    import kubernetes_validate

    _, manifest = pods["streaming_tagging", "drain"]
    unknown_field = copy.deepcopy(manifest)
    unknown_field["spec"]["containers"][0]["resourcez"] = {}
    bad_type = copy.deepcopy(manifest)
    bad_type["spec"]["securityContext"]["runAsUser"] = "root"
    for broken in (unknown_field, bad_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_pods_run_the_stage_command_non_root_with_resources_and_config(pods):
    for (dag_id, task_id), (operator, manifest) in pods.items():
        where = f"{dag_id}.{task_id}"
        assert operator.do_xcom_push and operator.get_logs, where
        assert operator.on_finish_action.value == "delete_pod", where
        assert manifest["metadata"]["namespace"] == "imgtag", where
        spec = manifest["spec"]
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        main, sidecar = spec["containers"]
        assert main["image"] == IMAGE, where
        assert main["command"] == ["imgtag"], where
        assert main["args"][0] in STAGES and main["args"][-1] == "--json", where
        assert set(main["resources"]["requests"]) == set(main["resources"]["limits"]) == {"cpu", "memory"}, (
            where
        )
        assert main["envFrom"] == [
            {"configMapRef": {"name": "imgtag-config"}},
            {"secretRef": {"name": "imgtag-secrets"}},
        ], where
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        assert {"/airflow/xcom", "/tmp", "/data", "/models"} <= set(mounts), where
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        # The stages share their files through the claims infra/k8s creates.
        assert claims[mounts["/data"]] == "imgtag-data" and claims[mounts["/models"]] == "imgtag-models", (
            where
        )
        assert sidecar["name"] == "airflow-xcom-sidecar", where
        for container in (main, sidecar):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["runAsNonRoot"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where


def test_drain_pods_get_room_for_the_model(pods):
    for key in [("streaming_tagging", "drain"), ("nightly_retag", "drain")]:
        resources = pods[key][1]["spec"]["containers"][0]["resources"]
        assert resources["requests"] == {"cpu": "1", "memory": "2Gi"}
        assert resources["limits"] == {"cpu": "2", "memory": "3Gi"}


def test_training_pods_get_room_to_train_and_the_gate_skips_on_rejection(pods, stage_module):
    def resources(task_id):
        main = pods["training_pipeline", task_id][1]["spec"]["containers"][0]
        return main["resources"]

    def tmp_size(task_id):
        (tmp,) = [v for v in pods["training_pipeline", task_id][1]["spec"]["volumes"] if v["name"] == "tmp"]
        return tmp["emptyDir"]["sizeLimit"]

    assert resources("train") == {
        "requests": {"cpu": "2", "memory": "6Gi"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    }
    assert tmp_size("train") == stage_module.TRAINING_RESOURCES.tmp_size == "10Gi"
    for task_id in ("evaluate", "register", "gate"):
        assert resources(task_id)["limits"] == {"cpu": "2", "memory": "3Gi"}, task_id
    for task_id in ("ingest", "validate", "version", "promote"):
        assert resources(task_id)["limits"] == {"cpu": "1", "memory": "1Gi"}, task_id
        assert tmp_size(task_id) == "1Gi", task_id
    gate, _ = pods["training_pipeline", "gate"]
    assert gate.skip_on_exit_code == [3]
    others = [operator for key, (operator, _) in pods.items() if key != ("training_pipeline", "gate")]
    assert not any(operator.skip_on_exit_code for operator in others)
    promote, _ = pods["training_pipeline", "promote"]
    assert promote.outlets == [stage_module.CHAMPION_ASSET]


def test_pod_settings_come_from_the_environment(load_dags):
    dagbag = load_dags(
        IMGTAG_STAGE_EXECUTOR="kubernetes",
        IMGTAG_IMAGE=IMAGE,
        IMGTAG_K8S_NAMESPACE="dam-prod",
        IMGTAG_K8S_CONFIGMAP="dam-config",
        IMGTAG_K8S_SECRET="dam-secrets",
        IMGTAG_K8S_SERVICE_ACCOUNT="imgtag-stage",
        IMGTAG_K8S_RUN_AS_USER="4242",
        IMGTAG_K8S_VOLUMES="dam-shared:/shared",
    )
    from kubernetes.client import ApiClient

    pod = dagbag.get_dag("streaming_tagging").get_task("drain").build_pod_request_obj()
    manifest = ApiClient().sanitize_for_serialization(pod)
    assert manifest["metadata"]["namespace"] == "dam-prod"
    assert manifest["spec"]["serviceAccountName"] == "imgtag-stage"
    assert manifest["spec"]["securityContext"]["runAsUser"] == 4242
    assert manifest["spec"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": "dam-config"}},
        {"secretRef": {"name": "dam-secrets"}},
    ]
    volumes = manifest["spec"]["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v] == [
        "dam-shared"
    ]
    assert {"name": "dam-shared", "mountPath": "/shared"} in manifest["spec"]["containers"][0]["volumeMounts"]


@pytest.mark.parametrize("value", ["imgtag-data", "imgtag-data:relative", "imgtag-data:/tmp", ":/data"])
def test_a_malformed_volume_list_says_what_is_expected(stage_module, value):
    with pytest.raises(ValueError, match="claim:/absolute/path"):
        stage_module.StageSettings.from_env({"IMGTAG_K8S_VOLUMES": value})


def test_no_volumes_when_the_list_is_empty(stage_module):
    assert stage_module.StageSettings.from_env({"IMGTAG_K8S_VOLUMES": ""}).volumes == ()


def test_kubernetes_without_an_image_is_an_import_error_that_says_why(load_dags):
    dagbag = load_dags(IMGTAG_STAGE_EXECUTOR="kubernetes")
    assert len(dagbag.import_errors) == 4
    for error in dagbag.import_errors.values():
        assert "IMGTAG_STAGE_EXECUTOR=kubernetes needs IMGTAG_IMAGE" in error
