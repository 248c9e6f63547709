"""The example manifests as test inputs, and a way to vary them."""

from __future__ import annotations

import copy

import yaml

from localkube.config import REPO

EXAMPLES = REPO / "manifests" / "examples"
DELETE = object()


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def edit(obj: dict, changes: dict[str, object]) -> dict:
    """A copy of `obj` with dotted paths set (list items by index) or removed (DELETE)."""
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return out
