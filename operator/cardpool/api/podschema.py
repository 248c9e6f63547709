"""The core/v1 PodTemplateSpec schema, converted to a structural CRD schema (as JobSet and Kubeflow embed it).

    python -m cardpool.api.podschema                    # from the pinned k8s.io/kubernetes in the Go module cache
    python -m cardpool.api.podschema --from FILE        # from any core/v1 OpenAPI v3 document; - for stdin,
                                                        # e.g. kubectl get --raw /openapi/v3/api/v1 | ... --from -
    python -m cardpool.api.podschema --check            # exit 1 if podtemplate.schema.json differs

The pin is the Kubernetes version the local cluster is built from (e2e/k8s/go.mod); its module ships
api/openapi-spec/v3/api__v1_openapi.json, which is what a running apiserver serves at /openapi/v3/api/v1.
The conversion inlines references, turns quantities and int-or-strings into x-kubernetes-int-or-string (with
the quantity grammar as a pattern), keeps list types, map keys and map types, and drops what a CRD schema may
not hold (patch strategies, unions, formats that are not formats). Nothing inside preserves unknown fields, so
a typo'd field is refused by strict field validation, naming it. Embedded object metadata keeps only labels
and annotations: the only parts a pod template's (or an ephemeral volume claim template's) metadata may use.

The file holds core/v1 as it is; cardpool's own rules are laid over it in trainingjob.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("podtemplate.schema.json")
GO_MOD = Path(__file__).resolve().parents[3] / "e2e" / "k8s" / "go.mod"
SPEC_IN_MODULE = "api/openapi-spec/v3/api__v1_openapi.json"
ROOT = "io.k8s.api.core.v1.PodTemplateSpec"

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The grammar of resource.Quantity (what controller-gen writes for it).
QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
                    r"|(\.[0-9]+))))?$")
INT_OR_STRING_SCHEMA = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
EMBEDDED_META_FIELDS = ("labels", "annotations")

_KEEP = {"type", "description", "properties", "items", "additionalProperties", "required", "format", "default",
         "enum", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type"}
_FORMATS = {"int32", "int64", "float", "double", "byte", "date", "date-time", "password"}
_ZERO = ({}, [], "", 0, False)  # Go zero values the generator writes as defaults: nothing to default


def kubernetes_version(go_mod: Path = GO_MOD) -> str:
    """The k8s.io/kubernetes version the local cluster is built from."""
    found = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod.read_text(), re.MULTILINE)
    if not found:
        raise ValueError(f"{go_mod}: no k8s.io/kubernetes requirement")
    return found.group(1)


def pinned_source(version: str | None = None) -> Path:
    """The pinned OpenAPI document in the Go module cache (present once the e2e binaries were built)."""
    cache_dir = os.environ.get("GOMODCACHE") or str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "pkg/mod")
    return Path(cache_dir) / f"k8s.io/kubernetes@{version or kubernetes_version()}" / SPEC_IN_MODULE


def read_openapi(source: str | Path) -> dict:
    """An OpenAPI document from a file, or from standard input for `-`."""
    return json.load(sys.stdin) if str(source) == "-" else json.loads(Path(source).read_text())


def convert(openapi: dict) -> dict:
    """The structural CRD schema of a core/v1 PodTemplateSpec from an OpenAPI v3 document."""
    definitions = openapi["components"]["schemas"]
    return _node({"$ref": f"#/components/schemas/{ROOT}"}, definitions, ())


def _node(node: dict, definitions: dict, seen: tuple[str, ...]) -> dict:
    node = dict(node)
    refs = [node.pop("$ref")] if "$ref" in node else [n["$ref"] for n in node.pop("allOf", [])]
    if len(refs) > 1:
        raise ValueError(f"allOf of {refs}: not expressible in a structural schema")
    if refs:  # a field naming a type: the type inlined, the field's own description and default win
        name = refs[0].split("/")[-1]
        if name in seen:
            raise ValueError(f"recursive schema {' -> '.join((*seen, name))}: not expressible in a CRD")
        target = _named(name, definitions)
        if target is None:
            return _special(name, node)
        node, seen = {**target, **node}, (*seen, name)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "format" and value not in _FORMATS:
            continue
        if key == "default" and any(value == z and type(value) is type(z) for z in _ZERO):
            continue
        if key == "properties":
            value = {name: _node(prop, definitions, seen) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _node(value, definitions, seen)
        out[key] = value
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if out.get("x-kubernetes-list-type") == "map":  # a map key needs a default unless required: keep even ""
        item = out["items"]
        for key in out.get("x-kubernetes-list-map-keys", []):
            raw = _resolved(node["items"], definitions)["properties"][key]
            if key not in item.get("required", []) and "default" in raw:
                item["properties"][key]["default"] = raw["default"]
    return out


def _resolved(node: dict, definitions: dict) -> dict:
    refs = [node["$ref"]] if "$ref" in node else [n["$ref"] for n in node.get("allOf", [])]
    return {**definitions[refs[0].split("/")[-1]], **node} if refs else node


def _named(name: str, definitions: dict) -> dict | None:
    """A definition to inline, or None for the types a CRD spells its own way (see _special)."""
    if name in (QUANTITY, INT_OR_STRING):
        return None
    if name == OBJECT_META:
        meta = definitions[name]
        return {"type": "object", "description": meta.get("description", ""),
                "properties": {f: meta["properties"][f] for f in EMBEDDED_META_FIELDS}}
    return definitions[name]


def _special(name: str, node: dict) -> dict:
    out = {k: v for k, v in node.items() if k == "description"}  # the field's own words, not the type's essay
    out.update(copy.deepcopy(INT_OR_STRING_SCHEMA))
    if name == QUANTITY:
        out["pattern"] = QUANTITY_PATTERN
    return out


# ---- the committed file ------------------------------------------------------------------------------------

def document(schema: dict, version: str) -> dict:
    return {"kubernetes": version, "source": f"k8s.io/kubernetes@{version}/{SPEC_IN_MODULE} #/{ROOT}",
            "generator": "python -m cardpool.api.podschema", "schema": schema}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


@cache
def _committed() -> dict:
    return json.loads(DATA.read_text())


def committed() -> dict:
    """The committed document: {"kubernetes": version, "source": ..., "schema": PodTemplateSpec schema}."""
    return copy.deepcopy(_committed())


def pod_template_schema() -> dict:
    """A fresh copy of the committed PodTemplateSpec schema, for callers to lay their rules over."""
    return committed()["schema"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardpool.api.podschema", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="OpenAPI v3 document of core/v1 (a file, - for stdin); default: "
                                                      "the pinned k8s.io/kubernetes module in the Go module cache")
    parser.add_argument("--check", action="store_true", help=f"fail if {DATA.name} differs from the source")
    args = parser.parse_args(argv)
    version = kubernetes_version()
    source = args.source or pinned_source(version)
    text = render(document(convert(read_openapi(source)), version))
    current = DATA.read_text() if DATA.exists() else None
    if current == text:
        return 0
    if args.check:
        print(f"out of date: {DATA.name} differs from what {source} gives; run python -m cardpool.api.podschema")
        return 1
    DATA.write_text(text)
    print(f"wrote: {DATA.name} ({len(text)} bytes) from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
