"""The embedded core/v1 PodTemplateSpec schema: pinned to the cluster's Kubernetes, converted to a structural CRD
schema that refuses unknown fields, and overlaid with the rules core validation and cardpool add."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import yaml

from cardpool.api import crdgen, podschema, podtemplate
from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.keys import CONFIG_MOUNT
from cardpool.api.trainingjob import DNS_1035_LABEL, TrainingJobSpec, TrainingJobStatus
from cardpool.core.attempts import record
from cardpool.core.observed import ObservedJob
from cardpool.core.placement import Placement
from cardpool.core.plan import RankSlot
from cardpool.core.snapshot import Worker
from cardpool.kube import builders

from .examples import EXAMPLES

SCHEMAS = "#/components/schemas/"


def walk(node: dict, path: str = ""):
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


# ---- the committed file is what the pinned Kubernetes gives ------------------------------------------------

def test_the_committed_file_is_pinned_to_the_clusters_kubernetes() -> None:
    doc = podschema.committed()
    assert doc["kubernetes"] == podschema.kubernetes_version(), (
        "e2e/k8s/go.mod moved to another Kubernetes: run python -m cardpool.api.podschema")
    assert doc["source"].startswith(f"k8s.io/kubernetes@{doc['kubernetes']}/")


def test_the_committed_file_is_what_the_generator_makes_from_the_source() -> None:
    source = podschema.pinned_source()
    if not source.exists():  # the e2e cluster build (make binaries) brings the module into the Go cache
        pytest.skip(f"{source} not in the Go module cache")
    made = podschema.render(podschema.document(podschema.convert(podschema.read_openapi(source)),
                                               podschema.kubernetes_version()))
    assert made == podschema.DATA.read_text(), (
        f"{podschema.DATA.name} drifted from {source}: run python -m cardpool.api.podschema")
    assert podschema.main(["--check"]) == 0


# ---- the conversion ----------------------------------------------------------------------------------------

def openapi(**schemas: dict) -> dict:
    return {"components": {"schemas": {
        podschema.QUANTITY: {"description": "an essay", "oneOf": [{"type": "string"}, {"type": "number"}]},
        podschema.INT_OR_STRING: {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
        podschema.OBJECT_META: {"description": "meta", "type": "object", "properties": {
            "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}},
        **schemas}}}


def ref(name: str, **own) -> dict:
    return {"allOf": [{"$ref": SCHEMAS + name}], **own}


POD = "io.k8s.api.core.v1.Pod"
CONVERSIONS = [
    ("a field naming a type gets the type inlined, its own description winning",
     {POD: {"description": "type words", "type": "object", "properties": {"a": {"type": "string"}}}},
     ref(POD, description="field words", default={}),
     {"description": "field words", "type": "object", "properties": {"a": {"type": "string"}}}),
    ("a quantity is an int-or-string with the quantity grammar, without the type's essay",
     {}, ref(podschema.QUANTITY, description="how much"),
     {"description": "how much", **podschema.INT_OR_STRING_SCHEMA, "pattern": podschema.QUANTITY_PATTERN}),
    ("an int-or-string is one, without a format CRDs do not know",
     {}, {"$ref": SCHEMAS + podschema.INT_OR_STRING}, podschema.INT_OR_STRING_SCHEMA),
    ("embedded metadata keeps labels and annotations only",
     {}, ref(podschema.OBJECT_META),
     {"description": "meta", "type": "object", "properties": {
         "labels": {"type": "object", "additionalProperties": {"type": "string"}},
         "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}),
    ("patch strategies, unions and zero defaults go; list and map types and real defaults stay",
     {}, {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
          "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "port",
          "items": {"type": "object", "x-kubernetes-map-type": "atomic", "x-kubernetes-unions": [{}],
                    "required": ["port"], "properties": {
                        "port": {"type": "integer", "format": "int32", "default": 0},
                        "protocol": {"type": "string", "default": "TCP"},
                        "flag": {"type": "boolean", "default": False}}}},
     {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
      "items": {"type": "object", "x-kubernetes-map-type": "atomic", "required": ["port"], "properties": {
          "port": {"type": "integer", "format": "int32"}, "protocol": {"type": "string", "default": "TCP"},
          "flag": {"type": "boolean"}}}}),
    ("a list map key that is not required keeps its default, even an empty one",
     {}, {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
          "items": {"type": "object", "properties": {"name": {"type": "string", "default": ""}}}},
     {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
      "items": {"type": "object", "properties": {"name": {"type": "string", "default": ""}}}}),
]


@pytest.mark.parametrize(("case", "schemas", "field", "expected"), CONVERSIONS, ids=[c[0] for c in CONVERSIONS])
def test_conversion(case: str, schemas: dict, field: dict, expected: dict) -> None:
    doc = openapi(**schemas, **{podschema.ROOT: {"type": "object", "properties": {"f": field}}})
    assert podschema.convert(doc)["properties"]["f"] == expected


def test_a_recursive_type_is_refused() -> None:
    doc = openapi(**{podschema.ROOT: {"type": "object", "properties": {"f": ref(POD)}},
                     POD: {"type": "object", "properties": {"again": ref(POD)}}})
    with pytest.raises(ValueError, match="recursive schema"):
        podschema.convert(doc)


# ---- the schema in the CRD -------------------------------------------------------------------------------

def template_in_crd() -> dict:
    kind = next(k for k in crdgen.KINDS if k.kind == "TrainingJob")
    root = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return crdgen.at_path(root, "spec.workers.template")


def test_the_template_refuses_unknown_fields_everywhere() -> None:
    nodes = list(walk(template_in_crd()))
    assert len(nodes) > 1000  # the whole PodTemplateSpec, not a sketch of it
    for path, node in nodes:
        assert not node.get("x-kubernetes-preserve-unknown-fields"), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert not ({"$ref", "allOf", "oneOf", "x-kubernetes-patch-strategy"} & node.keys()), path
        if node.get("type") == "object":
            assert "properties" in node or "additionalProperties" in node, f"{path}: an object of anything"


def test_kubectl_explain_has_the_real_container_fields() -> None:
    containers = podtemplate.at(template_in_crd(), "spec.containers[]")["properties"]
    assert {"name", "image", "command", "args", "env", "resources", "volumeMounts", "securityContext"} <= set(
        containers)


def unknown_fields(obj: object, node: dict, path: str) -> list[str]:
    if isinstance(obj, dict) and "properties" in node:
        return [p for k, v in obj.items() for p in (
            unknown_fields(v, node["properties"][k], f"{path}.{k}") if k in node["properties"] else [f"{path}.{k}"])]
    if isinstance(obj, dict) and isinstance(node.get("additionalProperties"), dict):
        return [p for k, v in obj.items() for p in unknown_fields(v, node["additionalProperties"], f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in unknown_fields(v, node["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("job-*.yaml")), ids=lambda p: p.stem)
def test_example_templates_use_only_known_fields(path) -> None:
    template = yaml.safe_load(path.read_text())["spec"]["workers"]["template"]
    assert unknown_fields(template, template_in_crd(), "template") == []
    typo = {**template, "spec": {**template["spec"], "containers": [
        {**template["spec"]["containers"][0], "comand": ["python"]}]}}
    assert unknown_fields(typo, template_in_crd(), "template") == ["template.spec.containers[0].comand"]


def test_the_crd_stays_well_under_etcds_limit() -> None:
    kind = next(k for k in crdgen.KINDS if k.kind == "TrainingJob")
    size = len(json.dumps(crdgen.crd(kind), separators=(",", ":")))
    assert size < 700_000, f"TrainingJob CRD is {size} bytes of JSON; etcd takes at most 1.5 MB"


# ---- the patterns, as Go's RE2 reads them (the same as Python's for these) ---------------------------------

@pytest.mark.parametrize(("pattern", "good", "bad"), [
    (podschema.QUANTITY_PATTERN, ["1", "500m", "1.5Gi", "2e3", "-1", "+4", ".5", "10M"],
     ["", "1.5 Gi", "abc", "1GB", "1Gi ", "--1", "1..2"]),
    (podtemplate.RESOURCE_QUANTITY, ["1", "500m", "1.5Gi", "+4", "64Gi"], ["-1", "-500m", "x", "1 Gi"]),
    (podtemplate.LABEL_VALUE, ["", "a", "v1.2_x-y", "A" * 63], ["-a", "a-", "a b", "a/b"]),
    (DNS_1035_LABEL, ["a", "llama-sft", "a1"], ["1a", "a.b", "A", "a-", "-a", "a_b", ""]),
])
def test_pattern(pattern: str, good: list[str], bad: list[str]) -> None:
    assert [v for v in good if not re.search(pattern, v)] == []
    assert [v for v in bad if re.search(pattern, v)] == []


def test_the_operators_own_volume_and_mount_are_the_ones_refused() -> None:
    pool = CardPoolSpec.model_validate(yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"])
    raw = yaml.safe_load((EXAMPLES / "job-pytorch-homogeneous.yaml").read_text())["spec"]
    raw["workers"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    spec = TrainingJobSpec.model_validate(raw)
    placement = Placement("ns/j", (Worker(0, "h800-0", "h800", "H800", spec.workers.cards_per_worker),))
    status = TrainingJobStatus(attempt=1, workers=1, placement=record(placement, {"h800": 1.0}, None))
    job = ObservedJob("ns", "j", "uid", 1, datetime(2026, 1, 1, tzinfo=UTC), spec, status)
    pod = builders.worker_pod(job, "pool", pool, RankSlot(0, "h800-0", "h800", "H800"))["spec"]
    added = {v["name"] for v in pod["volumes"]}
    mounts = [{m["mountPath"] for m in c.get("volumeMounts", [])} for c in pod["containers"]]
    assert podtemplate.OPERATOR_VOLUME in added and CONFIG_MOUNT in mounts[0]
    assert mounts[1] == set()  # the trainer's mount only: so only the trainer's mounts are refused
    volume_rule = podtemplate.at(template_in_crd(), "spec.volumes[]")["x-kubernetes-validations"][0]
    assert f"'{podtemplate.OPERATOR_VOLUME}'" in volume_rule["rule"]
    mount_rules = podtemplate.at(template_in_crd(), "spec.containers")["x-kubernetes-validations"]
    assert [r for r in mount_rules if "self[0].volumeMounts" in r["rule"] and CONFIG_MOUNT in r["rule"]]
