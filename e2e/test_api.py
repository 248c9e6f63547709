"""The CRDs on a real API server: examples apply, kubectl explains, invalid input is refused naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.cardpool import CardPool
from cardpool.api.checkpoint import Checkpoint
from cardpool.api.keys import GROUP, VERSION
from cardpool.api.trainingjob import TrainingJob, TrainingJobStatus
from localkube.config import REPO
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import DELETE, edit, example

EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
MODELS = {"CardPool": CardPool, "TrainingJob": TrainingJob, "Checkpoint": Checkpoint}
PLURALS = {"CardPool": "cardpools", "TrainingJob": "trainingjobs", "Checkpoint": "checkpoints",
           "TenantQueue": "tenantqueues"}
CLUSTER_SCOPED = ("CardPool", "TenantQueue")


def checkpoint(name: str = "ckpt-1", **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Checkpoint", "metadata": {"name": name},
            "spec": {"job": "llama-sft", "attempt": 0, "step": 100, "uri": "s3://checkpoints/llama-sft/100",
                     "worldSize": 32, **spec}}


def tenantqueue(name: str = "team-a", **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TenantQueue", "metadata": {"name": name},
            "spec": {"parent": "research", "namespaces": ["team-a"],
                     "quotas": [{"model": "H800", "guaranteed": 16, "borrowingLimit": 16, "cap": 64}], **spec}}


def create(kube: Kube, obj: dict, namespace: str, dry_run: bool = True) -> dict:
    api = client.CustomObjectsApi(kube.api)
    plural = PLURALS[obj["kind"]]
    kwargs = {"dry_run": "All"} if dry_run else {}
    if obj["kind"] in CLUSTER_SCOPED:
        return api.create_cluster_custom_object(GROUP, VERSION, plural, obj, field_validation="Strict", **kwargs)
    return api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj, field_validation="Strict",
                                               **kwargs)


def assert_contains(ours: object, theirs: object, path: str = "spec") -> None:
    """Every key and value of `theirs` is in `ours` (which may add empty lists and defaults of its own)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        for key, value in theirs.items():
            assert key in ours, f"{path}.{key} lost by the model"
            assert_contains(ours[key], value, f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_contains(a, b, f"{path}[{i}]")
    else:
        assert ours == theirs, f"{path}: model has {ours!r}, server {theirs!r}"


@dataclass(frozen=True)
class Invalid:
    """One invalid manifest: a valid base with `changes`, and what the API server's refusal must say."""

    id: str
    base: str
    changes: dict[str, object]
    expect: list[str] = field(default_factory=list)


JOB, POOL, CKPT, QUEUE = "job-pytorch-homogeneous.yaml", "pool-mixed-vendor.yaml", "checkpoint", "tenantqueue"
W = "spec.workers"
T = f"{W}.template.spec"
C = f"{T}.containers"
TRAINER = example(JOB)["spec"]["workers"]["template"]["spec"]["containers"][0]
INVALID = [
    # ---- TrainingJob: sizes
    Invalid("size-min-above-max", JOB, {f"{W}.size": {"min": 8, "max": 4}},
            ["spec.workers.size", "min must be less than or equal to max"]),
    Invalid("size-not-multiple-of-unit", JOB, {f"{W}.size": {"min": 3, "max": 8, "unit": 2}},
            ["spec.workers.size.unit", "min and max must be multiples of unit"]),
    Invalid("desired-above-max", JOB, {f"{W}.size": {"min": 2, "max": 4, "desired": 6}},
            ["spec.workers.size.desired", "desired must be between min and max"]),
    Invalid("desired-not-multiple-of-unit", JOB, {f"{W}.size": {"min": 2, "max": 8, "unit": 2, "desired": 5}},
            ["spec.workers.size.desired", "desired must be a multiple of unit"]),
    Invalid("size-min-zero", JOB, {f"{W}.size.min": 0}, ["spec.workers.size.min", "greater than or equal to 1"]),
    Invalid("size-max-too-large", JOB, {f"{W}.size.max": 100001},
            ["spec.workers.size.max", "less than or equal to 100000"]),
    Invalid("cards-per-worker-too-many", JOB, {f"{W}.cardsPerWorker": 65},
            ["spec.workers.cardsPerWorker", "less than or equal to 64"]),
    Invalid("cards-per-worker-missing", JOB, {f"{W}.cardsPerWorker": DELETE},
            ["spec.workers.cardsPerWorker", "Required value"]),
    # ---- TrainingJob: pod template
    Invalid("template-without-containers", JOB, {f"{W}.template.spec.containers": DELETE},
            ["spec.workers.template.spec.containers", "Required value"]),
    Invalid("template-empty-containers", JOB, {f"{W}.template.spec.containers": []},
            ["spec.workers.template.spec.containers", "at least 1 items"]),
    Invalid("template-sets-node-name", JOB, {f"{W}.template.spec.nodeName": "h800-000"},
            ["spec.workers.template.spec.nodeName must not be set"]),
    Invalid("template-restart-on-failure", JOB, {f"{W}.template.spec.restartPolicy": "OnFailure"},
            ["spec.workers.template.spec.restartPolicy must be Never"]),
    Invalid("grace-shorter-than-save", JOB, {f"{W}.template.spec.terminationGracePeriodSeconds": 30},
            ["spec.workers.template.spec.terminationGracePeriodSeconds",
             "must be at least spec.checkpoint.gracefulSaveSeconds"]),
    Invalid("override-for-unlisted-model", JOB, {f"{W}.overrides": [{"accelerator": "MLU590", "image": "x"}]},
            ["spec.workers.overrides", "must be one of spec.placement.accelerators"]),
    Invalid("override-duplicate-model", JOB, {f"{W}.overrides": [{"accelerator": "H800"}, {"accelerator": "H800"}]},
            ["spec.workers.overrides[1]", "Duplicate value"]),
    Invalid("override-bad-env-name", JOB, {f"{W}.overrides": [{"accelerator": "H800",
                                                                "env": [{"name": "1 BAD", "value": "x"}]}]},
            ["spec.workers.overrides[0].env[0].name", "should match"]),
    # ---- TrainingJob: what core/v1 would refuse on pod create, refused at admission instead (issue 14, class 1)
    # container names are DNS-1123 labels
    Invalid("container-name-uppercase", JOB, {f"{C}.0.name": "Trainer"}, [f"{C}[0].name", "should match"]),
    Invalid("container-name-underscore", JOB, {C: [TRAINER, {"name": "log_shipper", "image": "busybox"}]},
            [f"{C}[1].name", "should match"]),
    Invalid("container-name-too-long", JOB, {f"{C}.0.name": "t" * 64}, [f"{C}[0].name", "may not be more than 63"]),
    Invalid("init-container-name-dotted", JOB, {f"{T}.initContainers": [{"name": "fetch.data", "image": "busybox"}]},
            [f"{T}.initContainers[0].name", "should match"]),
    # every container has an image; the trainer's may come from the overrides, one per accelerator
    Invalid("trainer-without-image", JOB, {f"{C}.0.image": DELETE},
            [f"{C}[0].image (the trainer's) must be set unless spec.workers.overrides[] gives an image"]),
    Invalid("trainer-image-for-one-accelerator-of-two", JOB, {
        f"{C}.0.image": DELETE, f"{W}.overrides": [{"accelerator": "H800", "image": "r.example.com/t:cuda"}]},
            [f"{C}[0].image (the trainer's) must be set unless"]),
    Invalid("sidecar-without-image", JOB, {C: [TRAINER, {"name": "sidecar"}]},
            [f"{C}[].image must be set for every container but the trainer"]),
    Invalid("init-container-without-image", JOB, {f"{T}.initContainers": [{"name": "fetch"}]},
            [f"{T}.initContainers[0].image", "initContainers[].image must be set: no one fills it in"]),
    Invalid("image-with-space", JOB, {f"{C}.0.image": "r.example.com/t: cuda12"}, [f"{C}[0].image", "should match"]),
    # names unique among the pod's containers and volumes
    Invalid("duplicate-container-name", JOB, {C: [TRAINER, {"name": "trainer", "image": "busybox"}]},
            [f"{C}[1]", "Duplicate value"]),
    Invalid("init-container-named-like-a-container", JOB, {
        f"{T}.initContainers": [{"name": "trainer", "image": "busybox"}]},
            [f"{T}.initContainers", "initContainers[].name must differ from every container's name"]),
    Invalid("duplicate-volume-name", JOB, {f"{T}.volumes": [{"name": "data", "emptyDir": {}},
                                                            {"name": "data", "emptyDir": {}}]},
            [f"{T}.volumes[1]", "Duplicate value"]),
    # quantities parse and are not negative, in the template and in the overrides
    Invalid("template-quantity-with-space", JOB, {f"{C}.0.resources.requests.memory": "256 Gi"},
            [f"{C}[0].resources.requests.memory", "should match"]),
    Invalid("template-quantity-unit-gb", JOB, {f"{C}.0.resources.limits": {"memory": "256GB"}},
            [f"{C}[0].resources.limits.memory", "should match"]),
    Invalid("template-quantity-negative", JOB, {f"{C}.0.resources.requests.cpu": "-4"},
            [f"{C}[0].resources.requests.cpu", "should match"]),
    Invalid("init-container-quantity-word", JOB, {f"{T}.initContainers": [
        {"name": "fetch", "image": "busybox", "resources": {"limits": {"cpu": "lots"}}}]},
            [f"{T}.initContainers[0].resources.limits.cpu", "should match"]),
    Invalid("override-quantity-word", JOB, {f"{W}.overrides": [{"accelerator": "H800",
                                                                 "resources": {"limits": {"memory": "lots"}}}]},
            [f"{W}.overrides[0].resources.limits.memory", "should match"]),
    Invalid("override-quantity-negative", JOB, {f"{W}.overrides": [{"accelerator": "A100",
                                                                     "resources": {"requests": {"cpu": "-1"}}}]},
            [f"{W}.overrides[0].resources.requests.cpu", "should match"]),
    # the operator's own volume and the trainer's mount of it
    Invalid("volume-named-cardpool", JOB, {f"{T}.volumes": [{"name": "cardpool", "emptyDir": {}}]},
            [f"{T}.volumes[0].name", "volumes[].name must not be cardpool: cardpool adds a volume"]),
    Invalid("trainer-mount-at-config", JOB, {f"{T}.volumes": [{"name": "cfg", "emptyDir": {}}],
                                             f"{C}.0.volumeMounts": [{"name": "cfg", "mountPath": "/etc/cardpool"}]},
            [f"{C}[0].volumeMounts[].mountPath (the trainer's) must not be /etc/cardpool or below it"]),
    Invalid("trainer-mount-with-slash", JOB, {f"{T}.volumes": [{"name": "cfg", "emptyDir": {}}],
                                              f"{C}.0.volumeMounts": [{"name": "cfg", "mountPath": "/etc/cardpool/"}]},
            [f"{C}[0].volumeMounts[].mountPath (the trainer's) must not be"]),
    Invalid("trainer-mount-below-config", JOB, {f"{T}.volumes": [{"name": "cfg", "emptyDir": {}}],
                                                f"{C}.0.volumeMounts": [{"name": "cfg",
                                                                         "mountPath": "/etc/cardpool/extra"}]},
            [f"{C}[0].volumeMounts[].mountPath (the trainer's) must not be"]),
    # tolerations as core/v1 takes them
    Invalid("template-toleration-exists-with-value", JOB, {f"{T}.tolerations": [
        {"key": "dedicated", "operator": "Exists", "value": "training"}]},
            [f"{T}.tolerations[0].value", "tolerations[].value must be empty when operator is Exists"]),
    Invalid("template-toleration-empty-key-equal", JOB, {f"{T}.tolerations": [{"operator": "Equal", "value": "x"}]},
            [f"{T}.tolerations[0].operator", "tolerations[].operator must be Exists when key is empty"]),
    Invalid("template-toleration-bad-value", JOB, {f"{T}.tolerations": [{"key": "k", "value": "a b"}]},
            [f"{T}.tolerations[0].value", "should match"]),
    Invalid("template-ephemeral-containers", JOB, {f"{T}.ephemeralContainers": [{"name": "dbg", "image": "busybox"}]},
            [f"{T}.ephemeralContainers must not be set"]),
    # fields the pod types do not have (a typo) are refused, naming them, not dropped
    Invalid("template-typo-comand", JOB, {f"{C}.0.comand": ["python"]}, [f'unknown field "{C}[0].comand"']),
    Invalid("template-typo-resource-limit", JOB, {f"{C}.0.resources.limit": {"cpu": "1"}},
            [f'unknown field "{C}[0].resources.limit"']),
    Invalid("template-typo-node-selector", JOB, {f"{T}.nodeselector": {"a": "b"}},
            [f'unknown field "{T}.nodeselector"']),
    Invalid("template-wrong-type", JOB, {f"{C}.0.command": "torchrun train.py"},
            [f"{C}[0].command", "must be of type array"]),
    # the job's name is its headless Service's: a DNS-1035 label
    Invalid("name-with-dot", JOB, {"metadata.name": "llama.sft"}, ["metadata.name must be a DNS-1035 label"]),
    Invalid("name-starting-with-digit", JOB, {"metadata.name": "7b-sft"}, ["metadata.name must be a DNS-1035 label"]),
    # each rank needs a sample
    Invalid("batch-below-max-size", JOB, {f"{W}.globalBatchSize": 3},
            ["spec.workers.globalBatchSize must be at least spec.workers.size.max"]),
    Invalid("batch-below-elastic-max", JOB, {f"{W}.size": {"min": 2, "max": 64}, f"{W}.globalBatchSize": 32},
            ["spec.workers.globalBatchSize must be at least spec.workers.size.max"]),
    # ---- TrainingJob: placement
    Invalid("no-accelerators", JOB, {"spec.placement.accelerators": []},
            ["spec.placement.accelerators", "at least 1 items"]),
    Invalid("mixed-with-one-model", JOB, {"spec.placement.accelerators": ["H800"], "spec.placement.mode": "Mixed"},
            ["spec.placement.accelerators", "at least two models when mode is Mixed"]),
    Invalid("duplicate-accelerators", JOB, {"spec.placement.accelerators": ["H800", "H800"]},
            ["spec.placement.accelerators[1]", "Duplicate value"]),
    Invalid("unknown-mode", JOB, {"spec.placement.mode": "Random"},
            ["spec.placement.mode", "Unsupported value", "Homogeneous"]),
    Invalid("unknown-packing", JOB, {"spec.placement.topologyPacking": "Tight"},
            ["spec.placement.topologyPacking", "Unsupported value"]),
    # ---- TrainingJob: checkpoint, failure policy, misc
    Invalid("checkpoint-uri-without-scheme", JOB, {"spec.checkpoint.uri": "bucket/path"},
            ["spec.checkpoint.uri", "should match"]),
    Invalid("graceful-save-too-long", JOB, {"spec.checkpoint.gracefulSaveSeconds": 3601},
            ["spec.checkpoint.gracefulSaveSeconds", "less than or equal to 3600"]),
    Invalid("rule-without-matcher", JOB, {"spec.failurePolicy.rules": [{"action": "Restart"}]},
            ["spec.failurePolicy.rules[0]", "must set at least one of onExitCodes"]),
    Invalid("rule-exit-code-zero", JOB, {"spec.failurePolicy.rules": [
        {"action": "Fail", "onExitCodes": {"operator": "In", "values": [0, 1]}}]},
            ["spec.failurePolicy.rules[0].onExitCodes.values", "exit code 0 is success"]),
    Invalid("rule-exit-code-out-of-range", JOB, {"spec.failurePolicy.rules": [
        {"action": "Fail", "onExitCodes": {"operator": "In", "values": [300]}}]},
            ["spec.failurePolicy.rules[0].onExitCodes.values[0]", "less than or equal to 255"]),
    Invalid("rule-unknown-action", JOB, {"spec.failurePolicy.rules": [{"action": "Retry", "onNodeFault": True}]},
            ["spec.failurePolicy.rules[0].action", "Unsupported value"]),
    Invalid("negative-max-restarts", JOB, {"spec.failurePolicy.maxRestarts": -1},
            ["spec.failurePolicy.maxRestarts", "greater than or equal to 0"]),
    Invalid("progress-timeout-too-short", JOB, {"spec.failurePolicy.progressTimeoutSeconds": 5},
            ["spec.failurePolicy.progressTimeoutSeconds", "greater than or equal to 10"]),
    Invalid("priority-out-of-range", JOB, {"spec.priority": 5000}, ["spec.priority", "less than or equal to 1000"]),
    Invalid("startup-timeout-too-short", JOB, {"spec.startupTimeoutSeconds": 5},
            ["spec.startupTimeoutSeconds", "greater than or equal to 30"]),
    Invalid("negative-ttl", JOB, {"spec.ttlSecondsAfterFinished": -1},
            ["spec.ttlSecondsAfterFinished", "greater than or equal to 0"]),
    Invalid("bad-pool-name", JOB, {"spec.pool": "My_Pool"}, ["spec.pool", "should match"]),
    Invalid("unknown-framework", JOB, {"spec.framework": "JAX"}, ["spec.framework", "Unsupported value"]),
    Invalid("unknown-field", JOB, {"spec.workerz": {}}, ['unknown field "spec.workerz"']),
    Invalid("name-too-long", JOB, {"metadata.name": "a" * 41}, ["metadata.name must be at most 40 characters"]),
    # ---- CardPool
    Invalid("pool-without-groups", POOL, {"spec.nodeGroups": []}, ["spec.nodeGroups", "at least 1 items"]),
    Invalid("pool-duplicate-group", POOL, {"spec.nodeGroups.1.name": "h800"},
            ["spec.nodeGroups[1]", "Duplicate value"]),
    Invalid("pool-empty-selector", POOL, {"spec.nodeGroups.0.nodeSelector": {}},
            ["spec.nodeGroups[0].nodeSelector", "at least 1 properties"]),
    Invalid("pool-resource-without-domain", POOL, {"spec.nodeGroups.0.accelerator.resource": "gpu"},
            ["spec.nodeGroups[0].accelerator.resource", "should match"]),
    Invalid("pool-unknown-vendor", POOL, {"spec.nodeGroups.0.accelerator.vendor": "acme"},
            ["spec.nodeGroups[0].accelerator.vendor", "Unsupported value"]),
    Invalid("pool-zero-cards", POOL, {"spec.nodeGroups.0.accelerator.cardsPerNode": 0},
            ["spec.nodeGroups[0].accelerator.cardsPerNode", "greater than or equal to 1"]),
    Invalid("pool-domain-not-dividing", POOL, {"spec.nodeGroups.0.accelerator.interconnect.domainSize": 3},
            ["spec.nodeGroups[0].accelerator.interconnect.domainSize", "must divide cardsPerNode"]),
    Invalid("pool-zero-throughput", POOL, {"spec.nodeGroups.0.accelerator.relativeThroughput": 0},
            ["spec.nodeGroups[0].accelerator.relativeThroughput", "greater than 0"]),
    Invalid("pool-bad-topology-key", POOL, {"spec.nodeGroups.0.topologyKeys": ["rack key"]},
            ["spec.nodeGroups[0].topologyKeys[0]", "should match"]),
    Invalid("pool-drain-cap-zero", POOL, {"spec.health.maxDrainedPercent": 0},
            ["spec.health.maxDrainedPercent", "greater than or equal to 1"]),
    Invalid("pool-toleration-exists-with-value", POOL, {"spec.nodeGroups.0.tolerations": [
        {"key": "dedicated", "operator": "Exists", "value": "training"}]},
            ["spec.nodeGroups[0].tolerations[0].value", "tolerations[].value must be empty when operator"]),
    Invalid("pool-toleration-empty-key-equal", POOL, {"spec.nodeGroups.0.tolerations": [{"value": "x"}]},
            ["spec.nodeGroups[0].tolerations[0].operator", "nodeGroups[].tolerations[].operator must be Exists when"]),
    Invalid("pool-toleration-bad-value", POOL, {"spec.nodeGroups.0.tolerations": [{"key": "k", "value": "-x"}]},
            ["spec.nodeGroups[0].tolerations[0].value", "should match"]),
    Invalid("pool-concurrency-above-budget", POOL, {"spec.defragmentation.maxMigrationsPerHour": 1,
                                                    "spec.defragmentation.maxConcurrentMigrations": 2},
            ["spec.defragmentation.maxConcurrentMigrations", "must not exceed maxMigrationsPerHour"]),
    # ---- Checkpoint
    Invalid("checkpoint-negative-step", CKPT, {"spec.step": -1}, ["spec.step", "greater than or equal to 0"]),
    Invalid("checkpoint-zero-world", CKPT, {"spec.worldSize": 0}, ["spec.worldSize", "greater than or equal to 1"]),
    # ---- TenantQueue
    Invalid("queue-cap-below-guarantee", QUEUE, {"spec.quotas.0.cap": 8},
            ["spec.quotas[0].cap", "quotas[].cap must be at least quotas[].guaranteed"]),
    Invalid("queue-own-parent", QUEUE, {"spec.parent": "team-a"},
            ["spec.parent must name another queue, not the queue itself"]),
    Invalid("queue-negative-guarantee", QUEUE, {"spec.quotas.0.guaranteed": -1},
            ["spec.quotas[0].guaranteed", "greater than or equal to 0"]),
    Invalid("queue-zero-weight", QUEUE, {"spec.weight": 0}, ["spec.weight", "greater than or equal to 1"]),
    Invalid("queue-model-twice", QUEUE, {"spec.quotas": [{"model": "H800"}, {"model": "H800"}]},
            ["spec.quotas[1]", "Duplicate value"]),
    Invalid("queue-bad-namespace", QUEUE, {"spec.namespaces": ["Team_A"]}, ["spec.namespaces[0]", "should match"]),
    Invalid("job-bad-queue-name", JOB, {"spec.queue": "Team A"}, ["spec.queue", "should match"]),
]


def base_object(name: str) -> dict:
    return checkpoint() if name == CKPT else tenantqueue() if name == QUEUE else example(name)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_manifest_is_refused_naming_the_field(kube: Kube, crds: list[str], namespace: str, case: Invalid):
    obj = edit(base_object(case.base), case.changes)
    if obj["kind"] in CLUSTER_SCOPED and "metadata.name" not in case.changes and case.base != QUEUE:
        obj["metadata"]["name"] = f"{namespace}-{case.id}"[:63]
    with pytest.raises(ApiException) as refused:
        create(kube, obj, namespace)
    # 422 Invalid for schema and CEL rules; 400 BadRequest for strict decoding (unknown fields)
    assert refused.value.status in (400, 422), refused.value.body
    message = json.loads(refused.value.body)["message"]
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"


def test_the_invalid_corpus_covers_every_cel_rule() -> None:
    rules = set()
    for crd_file in (REPO / "crds").glob("*.yaml"):
        _collect_rule_messages(yaml.safe_load(crd_file.read_text()), rules)
    # a rule is exercised when some case expects a distinctive part (15+ characters) of its message
    missing = [m for m in rules if not any(len(e) >= 15 and e in m for case in INVALID for e in case.expect)]
    assert len(INVALID) >= 25
    assert not missing, f"no invalid manifest exercises: {missing}"


def _collect_rule_messages(node, out: set[str]) -> None:
    if isinstance(node, dict):
        for r in node.get("x-kubernetes-validations", []):
            if "oldSelf" not in r["rule"]:  # transition rules are exercised by an update test below
                out.add(r["message"])
        for value in node.values():
            _collect_rule_messages(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_rule_messages(value, out)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_applies_client_side_and_server_side_and_parses(kube: Kube, crds: list[str], namespace: str,
                                                                path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    if obj["kind"] == "CardPool":  # cluster-scoped: give each test its own name
        obj["metadata"]["name"] = f"{namespace}-pool"
    text = yaml.safe_dump(obj)
    kube.run("apply", "-n", namespace, "-f", "-", stdin=text)
    kube.run("apply", "--server-side", "-n", namespace, "-f", "-", stdin=text)
    got = json.loads(kube.run("get", "-n", namespace, f"{PLURALS[obj['kind']]}.{GROUP}", obj["metadata"]["name"],
                              "-o", "json").stdout)
    parsed = MODELS[obj["kind"]].model_validate(got)
    # every field the server stored, its defaults included, survives the models unchanged
    assert_contains(parsed.spec.wire(), got["spec"])
    if obj["kind"] == "CardPool":
        kube.run("delete", "cardpool", obj["metadata"]["name"])


def test_jobs_at_every_bound_are_accepted(kube: Kube, crds: list[str], namespace: str) -> None:
    # the jobs name a pool that does not exist, so the accelerator policy (tested below) stays out of it
    low = edit(example(JOB), {
        "metadata.name": "a" * 40, "spec.pool": f"{namespace}-absent", f"{W}.cardsPerWorker": 1,
        f"{W}.size": {"min": 1, "max": 1, "unit": 1, "desired": 1},
        "spec.priority": -1000, "spec.startupTimeoutSeconds": 30, "spec.ttlSecondsAfterFinished": 0,
        "spec.checkpoint.gracefulSaveSeconds": 0, "spec.failurePolicy.maxRestarts": 0,
        "spec.failurePolicy.progressTimeoutSeconds": 60,
        "spec.failurePolicy.rules": [{"action": "Fail", "onExitCodes": {"operator": "NotIn", "values": [0]}}],
    })
    high = edit(example(JOB), {
        "spec.pool": f"{namespace}-absent", f"{W}.cardsPerWorker": 64,
        f"{W}.size": {"min": 1024, "max": 99328, "unit": 1024, "desired": 99328},
        "spec.priority": 1000, "spec.startupTimeoutSeconds": 86400, "spec.ttlSecondsAfterFinished": 31536000,
        f"{W}.template.spec.terminationGracePeriodSeconds": 3600,
        "spec.checkpoint.gracefulSaveSeconds": 3600, "spec.failurePolicy.maxRestarts": 1000,
        "spec.failurePolicy.progressTimeoutSeconds": 604800,
        "spec.failurePolicy.rules": [{"action": "Fail", "onExitCodes": {"operator": "In", "values": [1, 255]}}],
        "spec.placement.accelerators": [f"M{i}" for i in range(16)], "spec.placement.mode": "Mixed",
    })
    pool_low = edit(example(POOL), {"metadata.name": f"{namespace}-low", "spec.nodeGroups": [
        {"name": "g", "nodeSelector": {"a": "b"}, "accelerator": {"vendor": "other", "model": "X",
                                                                  "resource": "x.io/card", "cardsPerNode": 1,
                                                                  "relativeThroughput": 0.001}}],
        "spec.health": {"probationSeconds": 0, "maxDrainedPercent": 1, "stuckTerminatingSeconds": 10},
        "spec.defragmentation": {"maxMigrationsPerHour": 0, "maxConcurrentMigrations": 1,
                                 "compactionThresholdPercent": 0}})
    pool_high = edit(example(POOL), {"metadata.name": f"{namespace}-high",
                                     "spec.nodeGroups.0.accelerator.cardsPerNode": 64,
                                     "spec.nodeGroups.0.accelerator.relativeThroughput": 100,
                                     "spec.nodeGroups.0.accelerator.interconnect.domainSize": 4096,
                                     "spec.health": {"probationSeconds": 86400, "maxDrainedPercent": 100,
                                                     "stuckTerminatingSeconds": 3600},
                                     "spec.defragmentation": {"maxMigrationsPerHour": 1000,
                                                              "maxConcurrentMigrations": 100,
                                                              "compactionThresholdPercent": 100}})
    for obj in (low, high, pool_low, pool_high, checkpoint(step=2**53, worldSize=10_000_000),
                checkpoint(step=0, attempt=0, worldSize=1)):
        stored = create(kube, obj, namespace)
        MODELS[obj["kind"]].model_validate(stored)


def test_kubectl_explain_shows_the_model_descriptions(kube: Kube, crds: list[str]) -> None:
    out = kube.run("explain", "trainingjob.spec.workers").stdout
    assert "cardsPerWorker" in out and "Cards each worker holds" in out
    out = kube.run("explain", "trainingjob.spec.workers.size.desired").stdout
    assert "kubectl scale" in out
    out = kube.run("explain", "cardpool.spec.nodeGroups.accelerator.resource").stdout
    assert "huawei.com/Ascend910" in out


def test_printer_columns_short_names_and_category(kube: Kube, crds: list[str], namespace: str) -> None:
    # a pool that does not exist: an operator, if one runs, only reports that while the job is Queued
    job = edit(example(JOB), {"spec.pool": f"{namespace}-absent"})
    create(kube, job, namespace, dry_run=False)
    status = TrainingJobStatus(phase="Running", workers=4, desired_workers=4, size="4/4", accelerator="H800",
                               restarts={"counted": 2}, last_checkpoint={
                                   "step": 1200, "uri": "s3://c/1200", "time": "2026-11-25T08:00:00Z",
                                   "worldSize": 32})
    expected = ["llama-sft", f"{namespace}-absent", "H800", "4/4", "Running", "2", "1200"]

    def shown() -> list[str]:
        # written again until it shows: a running operator may still have written over it from an older view
        client.CustomObjectsApi(kube.api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "trainingjobs", job["metadata"]["name"], {"status": status.wire()})
        table = kube.run("get", "tj", "-n", namespace).stdout.splitlines()
        if table[1].split()[:7] != expected:
            raise NotYet(table[1])
        return table

    table = wait_for("the printer columns to show the written status", shown, timeout=30)
    assert table[0].split() == ["NAME", "POOL", "ACCELERATOR", "SIZE", "PHASE", "RESTARTS", "CHECKPOINT", "AGE"]
    assert "llama-sft" in kube.run("get", "cardpool-all", "-n", namespace).stdout
    pool = edit(example(POOL), {"metadata.name": f"{namespace}-pool"})
    create(kube, pool, namespace, dry_run=False)
    try:
        header = kube.run("get", "cpool", pool["metadata"]["name"]).stdout.splitlines()[0].split()
        assert header == ["NAME", "GROUPS", "CARDS", "FREE", "UNHEALTHY", "FRAG%", "READY", "AGE"]
    finally:
        kube.run("delete", "cardpool", pool["metadata"]["name"])


def test_scale_sets_desired_size_within_bounds(kube: Kube, crds: list[str], namespace: str) -> None:
    job = example("job-mindspore-elastic-ascend.yaml")  # min 2, max 6, unit 2
    create(kube, job, namespace, dry_run=False)
    kube.run("scale", "trainingjob", "pangu-pretrain", "-n", namespace, "--replicas", "4")
    got = kube.run("get", "tj", "pangu-pretrain", "-n", namespace, "-o", "jsonpath={.spec.workers.size.desired}")
    assert got.stdout == "4"
    refused = kube.run("scale", "trainingjob", "pangu-pretrain", "-n", namespace, "--replicas", "8", check=False)
    assert refused.returncode != 0
    assert "spec.workers.size.desired must be between min and max" in refused.stderr
    refused = kube.run("scale", "trainingjob", "pangu-pretrain", "-n", namespace, "--replicas", "3", check=False)
    assert "spec.workers.size.desired must be a multiple of unit" in refused.stderr


def test_status_given_on_create_is_ignored(kube: Kube, crds: list[str], namespace: str) -> None:
    job = example(JOB)
    job["status"] = {"phase": "Failed"}  # ignored on create: status has its own subresource
    created = create(kube, job, namespace, dry_run=False)
    assert "status" not in created or created["status"].get("phase") is None


def test_complete_checkpoint_is_immutable(kube: Kube, crds: list[str], namespace: str) -> None:
    api = client.CustomObjectsApi(kube.api)
    create(kube, checkpoint(complete=True), namespace, dry_run=False)
    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "checkpoints", "ckpt-1",
                                           {"spec": {"step": 200}})
    assert refused.value.status == 422
    assert "spec is immutable once spec.complete is true" in json.loads(refused.value.body)["message"]
    # an incomplete one may still be completed
    create(kube, checkpoint("ckpt-2"), namespace, dry_run=False)
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "checkpoints", "ckpt-2", {"spec": {"complete": True}})


def test_accelerators_must_be_offered_by_the_named_pool(kube: Kube, crds: list[str], namespace: str) -> None:
    pool = edit(example(POOL), {"metadata.name": f"{namespace}-pool"})
    create(kube, pool, namespace, dry_run=False)
    try:
        job = edit(example(JOB), {"spec.pool": pool["metadata"]["name"],
                                  "spec.placement.accelerators": ["H800", "B200"]})

        def refused() -> ApiException:
            try:
                create(kube, job, namespace)
            except ApiException as exc:
                return exc
            raise NotYet("admitted")  # the policy or the new pool is not in the admission caches yet

        error = wait_for("the accelerator admission policy to refuse a B200 job", refused, timeout=60)
        message = json.loads(error.body)["message"]
        assert error.status == 422
        assert "spec.placement.accelerators must name models that CardPool" in message
        assert "B200 not among H800, A100, Ascend910B" in message
        # models the pool has pass; so does a job for a pool that does not exist yet (GitOps may apply it first)
        create(kube, edit(job, {"spec.placement.accelerators": ["H800", "Ascend910B"]}), namespace)
        create(kube, edit(job, {"spec.pool": f"{namespace}-later"}), namespace)
    finally:
        client.CustomObjectsApi(kube.api).delete_cluster_custom_object(GROUP, VERSION, "cardpools",
                                                                       pool["metadata"]["name"])


@pytest.mark.parametrize(("change", "message"), [
    ({"pool": "elsewhere"}, "spec.pool is immutable"),
    ({"workers": {"cardsPerWorker": 4}}, "spec.workers.cardsPerWorker is immutable"),
])
def test_pool_and_cards_per_worker_are_immutable(kube: Kube, crds: list[str], namespace: str, change: dict,
                                                 message: str) -> None:
    job = edit(example(JOB), {"spec.pool": f"{namespace}-absent"})
    create(kube, job, namespace, dry_run=False)
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(kube.api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", job["metadata"]["name"], {"spec": change})
    assert refused.value.status == 422 and message in json.loads(refused.value.body)["message"]
    # other fields still change, e.g. the desired size
    client.CustomObjectsApi(kube.api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", job["metadata"]["name"], {"spec": {"priority": 5}})


def test_templates_at_the_edge_of_the_pod_rules_are_accepted(kube: Kube, crds: list[str], namespace: str) -> None:
    """What the pod-template rules must not refuse: each is one step from a refused case above."""
    base = edit(example(JOB), {"spec.pool": f"{namespace}-absent"})  # no pool: the accelerator policy stays out
    full = {**TRAINER, "ports": [{"containerPort": 29500, "name": "rdzv"}],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 30},
            "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": 32, "memory": "1.5Gi", "ephemeral-storage": "+10G"},
                          "limits": {"cpu": "32000m", "memory": "2e9"}},
            "volumeMounts": [{"name": "data", "mountPath": "/etc/cardpool-data"},
                             {"name": "data", "mountPath": "/etc", "subPath": "x"}]}
    sidecar = {"name": "sidecar", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/etc/cardpool"}]}
    edges = {
        "a full container, a sidecar mounting the trainer's path, volumes near cardpool's name": {
            C: [full, sidecar], f"{T}.volumes": [{"name": "data", "emptyDir": {}},
                                                  {"name": "cardpool-data", "emptyDir": {}}],
            f"{T}.initContainers": [{"name": "fetch", "image": "busybox", "restartPolicy": "Always"}]},
        "the trainer's image from an override for every accelerator": {
            f"{C}.0.image": DELETE, f"{W}.overrides": [{"accelerator": "H800", "image": "r.example.com/t:cuda"},
                                                       {"accelerator": "A100", "image": "r.example.com/t:cuda"}]},
        "tolerations Exists without a value, with and without a key": {
            f"{T}.tolerations": [{"operator": "Exists"}, {"key": "dedicated", "operator": "Exists",
                                                           "effect": "NoSchedule"},
                                 {"key": "dedicated", "value": "training"}]},
        "a batch of exactly one sample per rank, a name with a dash and digits": {
            "metadata.name": "llama-7b-sft2", f"{W}.globalBatchSize": 4},
        "as many containers as the bound allows": {
            C: [TRAINER, *({"name": f"c{i}", "image": "busybox"} for i in range(63))]},
    }
    for what, changes in edges.items():
        try:
            create(kube, edit(base, changes), namespace)
        except ApiException as exc:
            raise AssertionError(f"{what}: refused: {json.loads(exc.body)['message']}") from None
    pool = edit(example(POOL), {"metadata.name": f"{namespace}-pool", "spec.nodeGroups.0.tolerations": [
        {"operator": "Exists"}, {"key": "dedicated", "operator": "Exists"}, {"key": "dedicated", "value": "x"}]})
    create(kube, pool, namespace)


@pytest.mark.parametrize(("mode", "expect", "named"), [
    ([], [f'unknown field "{C}[0].comand"', f'unknown field "{T}.nodeSelecter"'], all),
    # server-side apply stops at the first unknown field it meets while building the typed patch, in Go's map
    # order: it names one of the two, either (a CI run saw each)
    (["--server-side"], [f'.{C}[name="trainer"].comand: field not declared in schema',
                         f".{T}.nodeSelecter: field not declared in schema"], any),
], ids=["client-side", "server-side"])
def test_kubectl_apply_refuses_a_typo_in_the_template_naming_it(kube: Kube, crds: list[str], namespace: str,
                                                                mode: list[str], expect: list[str],
                                                                named: Callable[[Iterable[bool]], bool]) -> None:
    # kubectl asks for strict field validation by default: an unknown field is an error naming it, not a warning
    # while the server drops the field and the job runs without it
    job = edit(example(JOB), {f"{C}.0.comand": ["python", "train.py"], f"{T}.nodeSelecter": {"a": "b"}})
    refused = kube.run("apply", *mode, "-n", namespace, "-f", "-", stdin=yaml.safe_dump(job), check=False)
    assert refused.returncode != 0, refused.stdout
    assert named(expected in refused.stderr for expected in expect), refused.stderr
    got = kube.run("get", "-n", namespace, "trainingjobs", "-o", "name").stdout
    assert got.strip() == "", f"created anyway: {got}"


def test_without_strict_validation_a_typo_is_dropped_with_a_warning_naming_it(kube: Kube, crds: list[str],
                                                                              namespace: str) -> None:
    # what docs/api.md says of clients that do not ask for strict field validation (the server's default is Warn)
    job = edit(example(JOB), {"spec.pool": f"{namespace}-absent", f"{C}.0.comand": ["python"]})
    made = kube.run("create", "--validate=warn", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json",
                    stdin=yaml.safe_dump(job))
    assert f'Warning: unknown field "{C}[0].comand"' in made.stderr
    assert "comand" not in json.loads(made.stdout)["spec"]["workers"]["template"]["spec"]["containers"][0]


def test_kubectl_explain_shows_the_whole_pod_template(kube: Kube, crds: list[str]) -> None:
    out = kube.run("explain", "trainingjob.spec.workers.template.spec.containers").stdout
    for name in ("livenessProbe", "readinessProbe", "securityContext", "volumeMounts", "envFrom", "lifecycle",
                 "resources", "startupProbe", "workingDir"):
        assert f"  {name}\t" in out, f"{name} not explained:\n{out}"
    assert "the first is the trainer" in out  # cardpool's word on the field, over core's
    out = kube.run("explain", "trainingjob.spec.workers.template.spec.containers.securityContext.capabilities").stdout
    assert "add\t" in out and "drop\t" in out
    out = kube.run("explain", "trainingjob.spec.workers.template.spec").stdout
    for name in ("affinity", "tolerations", "nodeSelector", "volumes", "initContainers", "priorityClassName",
                 "topologySpreadConstraints", "serviceAccountName"):
        assert f"  {name}\t" in out, f"{name} not explained"
