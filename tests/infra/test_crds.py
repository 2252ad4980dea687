"""Custom resources (KEDA, Prometheus Operator) against the operators' published CRD schemas.

``kubernetes-validate`` (tests/infra/test_kustomize.py) knows only the built-in kinds, so the
custom resources are checked here, offline, against the CRDs vendored under
``infra/k8s/crds`` (see SOURCES.md there: where each comes from; they are never applied by
kustomize).

A CRD's ``openAPIV3Schema`` is an OpenAPI v3 *structural* schema; it is turned into a JSON
Schema for ``jsonschema.Draft202012Validator``:

- ``x-kubernetes-int-or-string: true``: an integer or a string;
- ``x-kubernetes-preserve-unknown-fields: true``: unknown fields allowed there;
- ``nullable: true``: ``null`` allowed too;
- ``x-kubernetes-list-type: set``: unique items;
- an object schema that declares ``properties`` (and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields``) rejects any other field, as the API server's
  pruning plus kubectl's strict field validation do: a typo in a field name fails here
  instead of being silently dropped by the cluster;
- the other ``x-kubernetes-*`` keys (list/map types, CEL ``x-kubernetes-validations``) are
  not checked.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.infra.conftest import K8S, OVERLAYS

CRDS = K8S / "crds"
#: (apiVersion, kind) of the custom resources the manifests must contain.
EXPECTED = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
#: (apiVersion, kind) of custom resources allowed in the render without a vendored CRD.
#: Keep it empty: vendor the CRD instead (infra/k8s/crds/SOURCES.md says how).
UNVALIDATED_CUSTOM_KINDS: frozenset[tuple[str, str]] = frozenset()
#: API groups of Kubernetes itself that have no dot in their name (the others end in k8s.io).
BUILTIN_GROUPS = {"", "apps", "batch", "autoscaling", "policy"}

#: What a custom resource's ``metadata`` must look like (the CRD schemas say only ``object``).
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string", "minLength": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

#: OpenAPI keys with no JSON Schema meaning, or whose meaning is carried over by hand below.
DROPPED = {"nullable", "description", "example", "externalDocs"}


def openapi_to_jsonschema(node: dict) -> dict:
    """The JSON Schema (2020-12) equivalent of one node of a CRD's structural schema."""
    out: dict = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: openapi_to_jsonschema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = openapi_to_jsonschema(value)
        elif key == "additionalProperties":
            out[key] = openapi_to_jsonschema(value) if isinstance(value, dict) else value
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(sub) for sub in value]
        elif key == "not":
            out[key] = openapi_to_jsonschema(value)
        elif key == "pattern":
            out[key] = go_regex_to_python(value)
        else:
            out[key] = copy.deepcopy(value)

    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-embedded-resource") and "properties" in out:
        for name in ("apiVersion", "kind"):
            out["properties"].setdefault(name, {"type": "string"})
        out["properties"].setdefault("metadata", {"type": "object"})
    strict = (
        "properties" in out
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )
    if strict:
        out["additionalProperties"] = False
    return out


def go_regex_to_python(pattern: str) -> str:
    """A Go (RE2) pattern as Python's ``re`` reads it: a global flag such as ``(?i)`` that
    RE2 takes anywhere must come first in Python (e.g. ``^(?i)(abort|warn)?$``)."""
    for flag in ("(?i)", "(?s)", "(?m)"):
        if flag in pattern and not pattern.startswith(flag):
            pattern = flag + pattern.replace(flag, "", 1)
    return pattern


def crd_files() -> list[Path]:
    return sorted(CRDS.rglob("*.yaml"))


def load_crds() -> dict[tuple[str, str], dict]:
    """``{(apiVersion, kind): openAPIV3Schema}`` for every served version of every vendored CRD."""
    schemas: dict[tuple[str, str], dict] = {}
    for path in crd_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def validator_for(openapi: dict) -> jsonschema.Draft202012Validator:
    schema = openapi_to_jsonschema(openapi)
    schema["properties"]["metadata"] = OBJECT_META
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="session")
def validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    return {key: validator_for(schema) for key, schema in load_crds().items()}


def type_of(obj: dict) -> tuple[str, str]:
    return obj.get("apiVersion", ""), obj.get("kind", "")


def name(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def errors(validator: jsonschema.Draft202012Validator, obj: dict) -> list[str]:
    """Every schema violation of ``obj``, as ``path: message``."""
    found = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]


def is_custom(api_version: str) -> bool:
    """Whether an apiVersion belongs to a custom resource (not to Kubernetes itself)."""
    group = api_version.rpartition("/")[0]
    return group not in BUILTIN_GROUPS and not group.endswith("k8s.io")


# --- the vendored CRDs ------------------------------------------------------------------------


def test_the_vendored_files_are_crds_with_schemas():
    files = crd_files()
    assert files, f"no CRD under {CRDS}"
    sources = (CRDS / "SOURCES.md").read_text(encoding="utf-8")
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        assert len(docs) == 1, f"{path.name}: one CRD a file"
        crd = docs[0]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1", path.name
        assert crd["kind"] == "CustomResourceDefinition", path.name
        assert path.parent.name == crd["spec"]["group"], f"{path.name}: keep it under <group>/"
        for version in crd["spec"]["versions"]:
            assert version["schema"]["openAPIV3Schema"]["type"] == "object", (
                f"{path.name} {version['name']}: no openAPIV3Schema"
            )
        assert path.relative_to(CRDS).as_posix() in sources, (
            f"{path.name}: say where it comes from in SOURCES.md"
        )
    assert EXPECTED <= set(load_crds()), f"missing CRDs for {sorted(EXPECTED - set(load_crds()))}"


def test_the_converted_schemas_are_valid_json_schemas(validators):
    # validator_for already checked each against the 2020-12 metaschema (patterns included).
    assert set(validators) == set(load_crds())


def test_the_vendored_crds_are_not_applied(rendered):
    crds = CRDS.resolve()
    for path in K8S.rglob("kustomization.y*ml"):
        kustomization = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for field in ("resources", "bases", "components", "crds"):
            for entry in kustomization.get(field) or []:
                target = (path.parent / str(entry)).resolve()
                assert not (target == crds or crds in target.parents), (
                    f"{path.relative_to(K8S)} {field} lists {entry}: infra/k8s/crds is for tests only"
                )
    for overlay, objects in rendered.items():
        crds = [name(obj) for obj in objects if obj.get("kind") == "CustomResourceDefinition"]
        assert not crds, f"{overlay} renders CRDs {crds}: the operators install them"


# --- the rendered custom resources ------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_published_crds(rendered, validators, overlay):
    objects = rendered[overlay]
    seen = {key: 0 for key in EXPECTED}
    problems = []
    for obj in objects:
        validator = validators.get(type_of(obj))
        if validator is None:
            continue
        problems += [f"{name(obj)}: {problem}" for problem in errors(validator, obj)]
        if type_of(obj) in seen:
            seen[type_of(obj)] += 1
    assert not problems, f"{overlay}: custom resources not valid for their CRD:\n" + "\n".join(problems)
    missing = sorted(f"{api} {kind}" for (api, kind), count in seen.items() if not count)
    assert not missing, f"{overlay} renders no {missing}"


def test_every_custom_kind_in_the_render_has_a_vendored_schema(rendered, validators):
    custom = {
        type_of(obj)
        for objects in rendered.values()
        for obj in objects
        if is_custom(obj.get("apiVersion", ""))
    }
    unvalidated = custom - set(validators) - UNVALIDATED_CUSTOM_KINDS
    assert not unvalidated, (
        f"custom resources with no vendored CRD: {sorted(unvalidated)}; vendor the operator's CRD "
        "under infra/k8s/crds/<group>/ (and record it in SOURCES.md)"
    )


# --- the validator catches mistakes -------------------------------------------------------------


def first(rendered, key: tuple[str, str]) -> dict:
    for overlay in OVERLAYS:
        for obj in rendered[overlay]:
            if type_of(obj) == key:
                return copy.deepcopy(obj)
    pytest.fail(f"no {key[1]} rendered")


def test_the_validator_catches_a_scaledobject_typo(rendered, validators):
    key = ("keda.sh/v1alpha1", "ScaledObject")
    obj = first(rendered, key)
    assert not errors(validators[key], obj)
    obj["spec"]["scaleTargetRefs"] = obj["spec"].pop("scaleTargetRef")
    obj["spec"]["triggers"][0]["type"] = 42
    found = errors(validators[key], obj)
    assert any("scaleTargetRefs" in error and "Additional properties" in error for error in found), found
    assert any("'scaleTargetRef' is a required property" in error for error in found), found
    assert any(error.startswith("spec.triggers.0.type:") for error in found), found


def test_the_validator_catches_a_servicemonitor_typo(rendered, validators):
    key = ("monitoring.coreos.com/v1", "ServiceMonitor")
    obj = first(rendered, key)
    assert not errors(validators[key], obj)
    endpoint = obj["spec"]["endpoints"][0]
    endpoint["prot"] = endpoint.pop("port", "metrics")
    found = errors(validators[key], obj)
    assert any(error.startswith("spec.endpoints.0:") and "'prot'" in error for error in found), found


def test_the_conversion_follows_the_kubernetes_extensions():
    schema = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "free": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"a": {"type": "string"}},
            },
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "maybe": {"type": "string", "nullable": True},
            "strategy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
        },
    }
    validator = jsonschema.Draft202012Validator(openapi_to_jsonschema(schema))
    good = {
        "port": 8080,
        "free": {"a": "x", "other": 1},
        "map": {"k": "v"},
        "maybe": None,
        "strategy": "WARN",
    }
    assert not list(validator.iter_errors(good))
    assert not list(validator.iter_errors({"port": "http"}))
    for bad in ({"port": 1.5}, {"typo": 1}, {"map": {"k": 1}}, {"strategy": "maybe"}):
        assert list(validator.iter_errors(bad)), bad
