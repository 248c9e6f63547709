"""Generate the CRDs (crds/*.yaml) and the field reference (docs/api.md) from the pydantic models, and the
Helm chart's copies of the CRDs and of the manifests it renders unchanged (charts/cardpool/files/).

    python -m cardpool.api.crdgen           # write crds/, docs/api.md and the chart's copies
    python -m cardpool.api.crdgen --check   # exit 1 if they differ from the models and manifests/

Pydantic's JSON schema becomes a structural OpenAPI v3 schema: references inlined, optional fields plain,
exclusive bounds in OpenAPI 3.0 form, titles dropped, descriptions kept (so `kubectl explain` explains).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import podschema
from .cardpool import CardPoolSpec, CardPoolStatus
from .checkpoint import CheckpointSpec, CheckpointStatus
from .keys import CARDPOOL_PLURAL, CHECKPOINT_PLURAL, GROUP, TENANTQUEUE_PLURAL, TRAININGJOB_PLURAL, VERSION
from .phases import KSTATUS, NEEDS_A_PERSON, PHASE_CONDITIONS
from .tenantqueue import ROOT_RULES as TENANTQUEUE_RULES
from .tenantqueue import TenantQueueSpec, TenantQueueStatus
from .trainingjob import ROOT_RULES, TrainingJobSpec, TrainingJobStatus

CATEGORY = "cardpool-all"
REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    scope: str
    short_names: list[str]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: list[dict]
    scale: dict | None = None
    root_rules: list[dict] = field(default_factory=list)
    # fields holding an embedded Kubernetes type (path below the kind -> (type name, its core schema)): the
    # reference lists only what cardpool adds to them, `kubectl explain` shows the rest
    embedded: dict[str, tuple[str, Callable[[], dict]]] = field(default_factory=dict)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _col(name: str, path: str, type_: str = "string", description: str = "", priority: int = 0) -> dict:
    out = {"name": name, "type": type_, "jsonPath": path}
    if description:
        out["description"] = description
    if priority:
        out["priority"] = priority
    return out


AGE = _col("Age", ".metadata.creationTimestamp", "date")
KINDS = [
    Kind(
        kind="CardPool", plural=CARDPOOL_PLURAL, scope="Cluster", short_names=["cpool"],
        description="A pool of accelerator cards over heterogeneous node groups, one accelerator model each.",
        spec=CardPoolSpec, status=CardPoolStatus,
        columns=[
            _col("Groups", ".status.groupCount", "integer", "Node groups"),
            _col("Cards", ".status.cards", "integer", "Card capacity"),
            _col("Free", ".status.freeCards", "integer", "Healthy unallocated cards"),
            _col("Unhealthy", ".status.unhealthyCards", "integer", "Cards lost to faults and drains"),
            _col("Frag%", ".status.fragmentationPercent", "integer", "Free cards that cannot host a full-node worker"),
            _col("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"),
            AGE,
        ],
    ),
    Kind(
        kind="TrainingJob", plural=TRAININGJOB_PLURAL, scope="Namespaced", short_names=["tj", "tjob"],
        description="A parallel training job placed as a gang of workers on a CardPool.",
        spec=TrainingJobSpec, status=TrainingJobStatus,
        columns=[
            _col("Pool", ".spec.pool", description="CardPool"),
            _col("Accelerator", ".status.accelerator", description="Accelerator model(s) in use"),
            _col("Size", ".status.size", description="Workers: current/desired"),
            _col("Phase", ".status.phase"),
            _col("Restarts", ".status.restarts.counted", "integer", "Restarts counted against the budget"),
            _col("Checkpoint", ".status.lastCheckpoint.step", "integer", "Step of the newest complete checkpoint"),
            AGE,
            _col("Attempt", ".status.attempt", "integer", "Restart generation", priority=1),
            _col("World", ".status.worldSize", "integer", "Cards in use", priority=1),
        ],
        scale={"specReplicasPath": ".spec.workers.size.desired", "statusReplicasPath": ".status.workers",
               "labelSelectorPath": ".status.selector"},
        root_rules=ROOT_RULES,
        embedded={"spec.workers.template": ("core/v1 PodTemplateSpec", podschema.pod_template_schema)},
    ),
    Kind(
        kind="Checkpoint", plural=CHECKPOINT_PLURAL, scope="Namespaced", short_names=["ckpt"],
        description="A checkpoint reported by a TrainingJob's rank 0; only complete ones are used.",
        spec=CheckpointSpec, status=CheckpointStatus,
        columns=[
            _col("Job", ".spec.job"),
            _col("Step", ".spec.step", "integer"),
            _col("Attempt", ".spec.attempt", "integer"),
            _col("World", ".spec.worldSize", "integer", "Cards when saved"),
            _col("Complete", ".spec.complete", "boolean"),
            _col("Accepted", '.status.conditions[?(@.type=="Accepted")].status'),
            AGE,
        ],
    ),
    Kind(
        kind="TenantQueue", plural=TENANTQUEUE_PLURAL, scope="Cluster", short_names=["tq"],
        description="A tenant's quota of cards: guaranteed, borrowing limit and cap per accelerator model, "
                    "a weight for surplus, a parent queue.",
        spec=TenantQueueSpec, status=TenantQueueStatus,
        columns=[
            _col("Parent", ".spec.parent"),
            _col("Weight", ".spec.weight", "integer"),
            _col("Used", ".status.usedCards", "integer", "Cards its jobs hold"),
            _col("Borrowed", ".status.borrowedCards", "integer", "Cards held above its guarantees"),
            _col("Running", ".status.runningJobs", "integer"),
            _col("Waiting", ".status.waitingJobs", "integer"),
            _col("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"),
            AGE,
        ],
        root_rules=TENANTQUEUE_RULES,
    ),
]


# ---- pydantic JSON schema -> structural OpenAPI v3 ---------------------------------------------------------

_DROP = {"title", "$defs"}


def structural(model: type[BaseModel]) -> dict:
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    return _convert(raw, raw.get("$defs", {}))


def _convert(node: Any, defs: dict) -> Any:
    if isinstance(node, list):
        return [_convert(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:  # a field pointing at a model or enum: inline it, the field's own keys win
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        node = {**target, **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
        return _convert(node, defs)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        if len(options) == 1:  # Optional[X]: the field may be absent; null is never stored
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", 0) is None:
                rest.pop("default")
            return _convert({**options[0], **rest}, defs)
    if "$ref" in node or "allOf" in node:
        return _convert(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "additionalProperties" and value is False:
            continue  # extra="forbid": unknown fields are pruned or rejected by the server anyway
        if key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _convert(prop, defs) for name, prop in value.items()}
            continue
        out[key] = _convert(value, defs)
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


# kinds whose status.observedGeneration the operator writes (a Checkpoint's verdict is only its condition)
OBSERVED_KINDS = frozenset({"TrainingJob", "CardPool"})


def status_schema(kind: Kind) -> dict:
    """The status schema; for OBSERVED_KINDS it serves a new object as "not yet observed" (observedGeneration 0)
    until the operator first writes it. kstatus reads an object without status as Current, so Flux would call a
    job the operator has not even seen ready; with observedGeneration 0 < generation it says InProgress, as
    Argo CD does. (The API server drops status on create and applies this default whenever it serves one.)"""
    status = structural(kind.status)
    return {**status, "default": {"observedGeneration": 0}} if kind.kind in OBSERVED_KINDS else status


def crd(kind: Kind) -> dict:
    root: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object: cardpool.io/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind of this object: {kind.kind}."},
            "metadata": {"type": "object"},
            "spec": structural(kind.spec),
            "status": status_schema(kind),
        },
        "required": ["spec"],
    }
    if kind.root_rules:
        root["x-kubernetes-validations"] = kind.root_rules
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = kind.scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.name},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind.kind, "listKind": f"{kind.kind}List", "plural": kind.plural,
                      "singular": kind.singular, "shortNames": kind.short_names, "categories": [CATEGORY]},
            "scope": kind.scope,
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": root},
                "subresources": subresources,
                "additionalPrinterColumns": kind.columns,
            }],
        },
    }


def crd_files() -> dict[Path, str]:
    header = "# Generated by `python -m cardpool.api.crdgen` from cardpool.api; do not edit.\n"
    files = {REPO / "crds" / f"{GROUP}_{k.plural}.yaml": header + yaml.safe_dump(crd(k), sort_keys=False, width=120)
             for k in KINDS}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": sorted(p.name for p in files)}
    files[REPO / "crds" / "kustomization.yaml"] = header + yaml.safe_dump(kustomization, sort_keys=False)
    return files


# ---- admission policy: rules across objects, which CRD schemas cannot express ------------------------------

POLICY_NAME = f"trainingjob-accelerators.{GROUP}"
_OFFERED = "params.spec.nodeGroups.exists(g, g.accelerator.model == m)"


def accelerator_policy() -> list[dict]:
    """A ValidatingAdmissionPolicy refusing a TrainingJob whose accelerator preferences name a model its
    CardPool has no group of. The binding selects every CardPool as a param; the expression checks only the
    pool the job names, so a job is checked against exactly its pool (and admitted when that pool does not
    exist yet: GitOps may apply the job first, and the operator then reports the missing pool). It applies when
    a job is created or its pool or accelerators change: a pool that later drops a model leaves its running
    jobs editable (suspend, labels), and the operator restarts or reports them (SpecChanged, Unplaceable)."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME},
            "spec": {
                "failurePolicy": "Fail",
                "paramKind": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CardPool"},
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [GROUP], "apiVersions": [VERSION], "operations": ["CREATE", "UPDATE"],
                    "resources": [TRAININGJOB_PLURAL]}]},
                "matchConditions": [{
                    "name": "pool-or-accelerators-set",
                    "expression": "request.operation == 'CREATE' || oldObject.spec.pool != object.spec.pool || "
                                  "oldObject.spec.placement.accelerators != object.spec.placement.accelerators"}],
                "validations": [{
                    "expression": "params.metadata.name != object.spec.pool || "
                                  f"object.spec.placement.accelerators.all(m, {_OFFERED})",
                    "messageExpression": "'spec.placement.accelerators must name models that CardPool ' + "
                                         "params.metadata.name + ' has: ' + object.spec.placement.accelerators"
                                         f".filter(m, !({_OFFERED})).join(', ') + ' not among ' + "
                                         "params.spec.nodeGroups.map(g, g.accelerator.model).join(', ')",
                    "reason": "Invalid",
                }],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME},
            "spec": {
                "policyName": POLICY_NAME,
                "validationActions": ["Deny"],
                "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
            },
        },
    ]


def policy_file() -> dict[Path, str]:
    header = ("# Generated by `python -m cardpool.api.crdgen`; do not edit. Install after the CRDs.\n"
              "# Refuses a TrainingJob whose spec.placement.accelerators names a model its CardPool lacks.\n")
    return {REPO / "manifests" / "admission" / "trainingjob-accelerators.yaml":
            header + yaml.safe_dump_all(accelerator_policy(), sort_keys=False, width=120)}


# ---- field reference ---------------------------------------------------------------------------------------

def fields(schema: dict, prefix: str, stop: frozenset[str] = frozenset()) -> list[tuple[str, dict, bool]]:
    """(path, schema, required) for every field below `schema`, depth first, not below the paths in `stop`."""
    out = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}.{name}"
        out.append((path, prop, name in required))
        if path in stop:
            continue
        child = prop.get("items", prop) if prop.get("type") == "array" else prop
        out.extend(fields(child, path + ("[]" if prop.get("type") == "array" else ""), stop))
    return out


def _type(prop: dict) -> str:
    if prop.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = prop.get("type", "object")
    if kind == "array":
        return f"[]{_type(prop.get('items', {}))}"
    if kind == "object" and "additionalProperties" in prop:
        return f"map[string]{_type(prop['additionalProperties'])}"
    return kind


def _constraints(prop: dict) -> str:
    parts = []
    if "enum" in prop:
        parts.append("one of " + ", ".join(f"`{v}`" for v in prop["enum"]))
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None or high is not None:
        lo = "(" if prop.get("exclusiveMinimum") else "["
        parts.append(f"{lo}{'' if low is None else low}, {'' if high is None else high}]")
    for key, label in (("minItems", "min items"), ("maxItems", "max items"), ("maxLength", "max length"),
                       ("minProperties", "min entries")):
        if key in prop:
            parts.append(f"{label} {prop[key]}")
    if "pattern" in prop:
        parts.append(f"pattern `{prop['pattern']}`")
    for rule_ in prop.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule_['message']}")
    for inner, label in (("items", "each item"), ("additionalProperties", "each value")):
        if isinstance(prop.get(inner), dict) and prop.get("type") in ("array", "object"):
            if (more := _constraints(prop[inner])) and prop[inner].get("type") not in ("array", "object"):
                parts.append(f"{label}: {more}")
            parts += [f"rule ({label}): {r['message']}" for r in prop[inner].get("x-kubernetes-validations", [])]
    return "; ".join(parts)


def _default(value: Any) -> str:
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _row(cells: list[str]) -> str:
    """One table row on one line: no newline or unescaped `|` in a cell may break the table."""
    return "| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |"


TABLE_HEADER = ["field", "type", "required", "default", "constraints", "description"]


def _rows(schema: dict, prefix: str, embedded: dict[str, tuple[str, Callable[[], dict]]]) -> list[str]:
    stop = frozenset(f"{prefix}.{path}" for path in embedded)
    rows = []
    for path, prop, req in fields(schema, prefix, stop):
        if path.endswith((".apiVersion", ".kind", ".metadata")) and path.count(".") == 1:
            continue
        type_ = _type(prop)
        if path in stop:
            type_ = embedded[path.removeprefix(prefix + ".")][0]
        default = _default(prop["default"]) if "default" in prop else ""
        rows.append(_row([f"`{path}`", type_, "yes" if req else "", default, _constraints(prop),
                          prop.get("description", "")]))
    return rows


def _additions(ours: dict, core: dict, prefix: str) -> list[str]:
    """Rows for the fields of an embedded type where cardpool requires more than the type's own schema."""
    theirs = {prefix: (core, False), **{path: (prop, req) for path, prop, req in fields(core, prefix)}}
    rows = []
    for path, prop, req in [(prefix, ours, False), *fields(ours, prefix)]:
        core_prop, core_req = theirs.get(path, ({}, False))
        if _constraints(prop) != _constraints(core_prop) or req > core_req:
            rows.append(_row([f"`{path}`", _type(prop), "yes" if req else "", "", _constraints(prop),
                              prop.get("description", "")]))
    return rows


def reference() -> str:
    lines = ["# cardpool API reference (cardpool.io/v1alpha1)", "",
             "Generated by `python -m cardpool.api.crdgen` from the models in `cardpool.api`; a test fails when it",
             "drifts. `kubectl explain <kind>.<field>` shows the same descriptions from the installed CRDs.", ""]
    header = [_row(TABLE_HEADER), "|" + "---|" * len(TABLE_HEADER)]
    for kind in KINDS:
        schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        lines += [f"## {kind.kind}", "", f"{kind.description} Scope: {kind.scope}; short names: "
                  f"{', '.join(kind.short_names)}; category `{CATEGORY}`."
                  + (" Scale subresource: `kubectl scale` sets `spec.workers.size.desired`." if kind.scale else ""),
                  ""]
        for rule_ in schema.get("x-kubernetes-validations", []):
            lines.append(f"Rule: {rule_['message']}.")
            lines.append("")
        lines += [*header, *_rows(schema, kind.singular, kind.embedded), ""]
        for path, (type_name, core_schema) in kind.embedded.items():
            full = f"{kind.singular}.{path}"
            lines += [f"### {full}", "",
                      f"A {type_name}: its fields are the core type's (`kubectl explain {full}`).",
                      "A field of the wrong type is refused at admission; so is an unknown one (a typo) under strict",
                      "field validation, kubectl's default, naming it (a client that does not ask for it gets a",
                      "warning naming the field, and the field is dropped).",
                      "cardpool requires more of these fields:", "",
                      *header, *_additions(at_path(schema, path), core_schema(), full), ""]
    return "\n".join(lines + phase_table())


def at_path(schema: dict, path: str) -> dict:
    for name in path.split("."):
        schema = schema["properties"][name]
    return schema


def phase_table() -> list[str]:
    rows = ["## TrainingJob phases and conditions", "",
            "Conditions follow the Kubernetes convention (type, status, reason, message, lastTransitionTime,",
            "observedGeneration). kstatus, which Flux and cli-utils use, reads `Stalled` and `Reconciling`;",
            "`Ready` and `Suspended` are for people and Argo CD.", "",
            _row(["phase", "Ready", "Reconciling", "Stalled", "Suspended", "kstatus"]), "|---|---|---|---|---|---|"]
    for phase, flags in PHASE_CONDITIONS.items():
        rows.append(_row([phase.value, *(str(f) for f in flags), KSTATUS[phase]]))
    reasons = ", ".join(f"`{r}`" for r in sorted(NEEDS_A_PERSON))
    return [*rows, "", f"A job waiting for a person to act ({reasons}) keeps its phase but shows Ready=False,",
            "Reconciling=False, Stalled=True, whatever the phase: kstatus Failed. A new job is served with",
            "status.observedGeneration 0 until the operator first writes its status: kstatus InProgress.", ""]


# ---- the Helm chart's copies ------------------------------------------------------------------------------

CHART_FILES = REPO / "charts" / "cardpool" / "files"
# manifests/operator files the chart templates itself, for its values (e2e/test_helm.py compares the renders)
CHART_TEMPLATED = frozenset({"namespace.yaml", "deployment.yaml", "pdb.yaml", "service.yaml"})


def _resources(kustomization: Path) -> list[Path]:
    return [kustomization.parent / name for name in yaml.safe_load(kustomization.read_text())["resources"]]


def chart_files(sources: dict[Path, str]) -> dict[Path, str]:
    """The chart renders these copies as they are (templates/_helpers.tpl, cardpool.fromFiles), so one source
    holds each object: the CRDs, every admission policy and the RBAC of manifests/operator. `sources` are the
    generated files, read from here rather than from disk so one run writes both."""
    manifests = REPO / "manifests"
    groups = {
        "crds": sorted(p for p in sources if p.parent == REPO / "crds" and p.name != "kustomization.yaml"),
        "admission": _resources(manifests / "admission" / "kustomization.yaml"),
        "rbac": [p for p in _resources(manifests / "operator" / "kustomization.yaml") if p.name not in CHART_TEMPLATED],
    }
    out = {}
    for folder, paths in groups.items():
        for path in paths:
            text = sources[path] if path in sources else path.read_text()
            header = f"# A copy of {path.relative_to(REPO)} made by `python -m cardpool.api.crdgen`; edit that file.\n"
            out[CHART_FILES / folder / path.name] = header + text
    return out


def chart_leftovers(files: dict[Path, str]) -> list[Path]:
    """Files in the chart's copy folders that `files` does not make: the chart renders every file there, so a
    copy whose source went away (a policy dropped from manifests/admission) must go too."""
    folders = {path.parent for path in files if path.is_relative_to(CHART_FILES)}
    return sorted(p for folder in folders for p in folder.iterdir() if p.is_file() and p not in files)


def generated() -> dict[Path, str]:
    sources = {**crd_files(), **policy_file()}
    return {**sources, **chart_files(sources), REPO / "docs" / "api.md": reference()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardpool.api.crdgen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if crds/, docs/api.md or the chart's copies are out of date")
    args = parser.parse_args(argv)
    files = generated()
    stale = []
    for path, text in files.items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    leftovers = chart_leftovers(files)
    for path in leftovers:
        stale.append(path)
        if not args.check:
            path.unlink()
    for path in stale:
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        verb = "removed" if path in leftovers else "wrote"
        print(f"{'out of date' if args.check else verb}: {shown}")
    return 1 if (args.check and stale) else 0

if __name__ == "__main__":
    sys.exit(main())
