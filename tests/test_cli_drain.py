"""`cardpool drain` / `undrain` decisions as a table: what is written to the node, what is said, and when the
request is refused. A drain asked again writes nothing (it is in effect); an undrain with nothing to withdraw
is refused, saying why."""

from __future__ import annotations

import json

import pytest
import yaml

from cardpool.api.keys import ANNOTATION_DRAIN, ANNOTATION_DRAIN_REQUEST
from cardpool.cli import drain

from .examples import EXAMPLES

POOLS = [yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())]
H800 = {"nvidia.com/gpu.product": "NVIDIA-H800"}
REQ = ANNOTATION_DRAIN_REQUEST


def node(labels: dict | None = None, **annotations: str) -> dict:
    """Node n1 (an H800 of the example pool unless `labels`); annotations by their keys."""
    return {"metadata": {"name": "n1", "labels": H800 if labels is None else labels, "annotations": annotations}}


def record(reason: str) -> str:
    return json.dumps({"reason": reason, "since": "2026-11-25T09:00:00Z", "cordoned": True})


DRAINS = [
    # (name, node, pools, --reason, said, annotations written, refused)
    ("a pool's node: the request is written", node(), POOLS, "bios update",
     "node n1: drain requested (bios update)", {REQ: "bios update"}, False),
    ("no --reason: a default one", node(), POOLS, None,
     "drain requested (requested with cardpool drain)", {REQ: drain.DEFAULT_REASON}, False),
    ("already requested: nothing to write", node(**{REQ: "bios"}), POOLS, None,
     "node n1: drain already requested (bios)", None, False),
    ("already requested for the same reason", node(**{REQ: "bios"}), POOLS, "bios",
     "drain already requested (bios)", None, False),
    ("already requested, a new reason replaces it", node(**{REQ: "bios"}), POOLS, "rack move",
     "reason now 'rack move' (was 'bios')", {REQ: "rack move"}, False),
    ("a node no CardPool selects: refused, nothing would act on it", node(labels={"other": "x"}), POOLS, None,
     "node n1 is in no CardPool", None, True),
    ("no CardPool at all: refused", node(), [], "x", "node n1 is in no CardPool", None, True),
]


@pytest.mark.parametrize(("name", "n", "pools", "reason", "said", "written", "refused"), DRAINS,
                         ids=[d[0] for d in DRAINS])
def test_drain(name: str, n: dict, pools: list, reason: str | None, said: str, written: dict | None,
               refused: bool) -> None:
    outcome = drain.drain(n, pools, reason)
    assert said in outcome.message and "n1" in outcome.message
    assert (outcome.annotations, outcome.failed) == (written, refused)


UNDRAINS = [
    # (name, node, said, annotations written, refused: nothing to withdraw)
    ("a requested drain is withdrawn", node(**{REQ: "bios", ANNOTATION_DRAIN: record("DrainRequested")}),
     "node n1: drain request withdrawn", {REQ: None}, False),
    ("requested, not yet drained: withdrawn", node(**{REQ: "bios"}), "drain request withdrawn", {REQ: None}, False),
    ("never drained: nothing to withdraw", node(), "node n1: no drain request to withdraw; the node is not drained",
     None, True),
    ("request gone, return under way", node(**{ANNOTATION_DRAIN: record("DrainRequested")}),
     "no drain request to withdraw; the operator is already returning the node", None, True),
    ("drained by the operator for a fault: it says so", node(**{ANNOTATION_DRAIN: record("NodeNotReady")}),
     "no drain request to withdraw; the operator drained it itself (NodeNotReady) and returns it after its "
     "probation", None, True),
]


@pytest.mark.parametrize(("name", "n", "said", "written", "refused"), UNDRAINS, ids=[u[0] for u in UNDRAINS])
def test_undrain(name: str, n: dict, said: str, written: dict | None, refused: bool) -> None:
    outcome = drain.undrain(n)
    assert said in outcome.message
    assert (outcome.annotations, outcome.failed) == (written, refused)
