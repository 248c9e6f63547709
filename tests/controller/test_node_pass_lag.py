"""The node pass on a watch that lags behind its own drains: the drain cap counts every drain the operator made,
seen in the watch or not, and only those that were made."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from cardpool.controller.loop import Controller
from cardpool.core.drain import NodeAction
from cardpool.kube import nodes as node_effects

from .fake import FakeServer, World, fast_retries, settle


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    fast_retries(monkeypatch)
    server = FakeServer()
    pool = server.add_pool()
    pool["spec"]["health"]["maxDrainedPercent"] = 12  # 8 H800 nodes: cap 1
    yield World(server)


class NodeApi:
    """Stands in for the node writes: records each action; `stale` nodes answer that they changed meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.actions: list[tuple[str, str]] = []
        self.stale: set[str] = set()
        self.written: dict[str, Any] = {}

        def apply_action(kube: Any, action: NodeAction, decided_on: Any, events: Any, now: Any) -> bool:
            self.actions.append((action.kind, action.node))
            if action.node in self.stale:
                return False
            self.written[action.node] = action.record
            return True
        monkeypatch.setattr(node_effects, "apply_action", apply_action)
        monkeypatch.setattr(node_effects, "finish_eviction", lambda kube, node, record: True)

    def drains(self) -> list[str]:
        return [node for kind, node in self.actions if kind == "Drain"]


@pytest.fixture
def node_api(monkeypatch: pytest.MonkeyPatch) -> NodeApi:
    return NodeApi(monkeypatch)


@pytest.fixture
def controller(world: World) -> Iterator[Controller]:
    c = world.controller()
    yield c
    c.stop()


def fail(world: World, *names: str) -> None:
    world.nodes = [replace(n, conditions={"Ready": "False"}) if n.name in names else n for n in world.nodes]


def catch_up(world: World, node_api: NodeApi) -> None:
    """The watch shows the drain records written so far."""
    world.nodes = [replace(n, drain=node_api.written[n.name]) if n.name in node_api.written else n
                   for n in world.nodes]


def test_a_drain_the_watch_does_not_show_yet_counts_towards_the_cap(
        world: World, controller: Controller, node_api: NodeApi) -> None:
    fail(world, "h800-7")
    world.step(controller)
    assert node_api.drains() == ["h800-7"]
    fail(world, "h800-1")  # a second fault, decided on a watch that does not show the first drain yet
    for _ in range(3):
        world.step(controller)
    assert node_api.drains() == ["h800-7"]
    catch_up(world, node_api)
    world.step(controller)
    assert node_api.drains() == ["h800-7"]


def test_a_drain_that_was_not_written_does_not_count(
        world: World, controller: Controller, node_api: NodeApi) -> None:
    node_api.stale.add("h800-7")  # the node changed under the decision: nothing was written
    fail(world, "h800-7")
    world.step(controller)
    fail(world, "h800-1")
    world.step(controller)
    assert node_api.drains()[-1] == "h800-1"


def test_a_drain_never_seen_in_the_watch_is_decided_again_after_the_timeout(
        world: World, node_api: NodeApi) -> None:
    c = world.controller(expectation_timeout=30.0)
    try:
        fail(world, "h800-7")
        world.step(c)
        fail(world, "h800-1")
        world.step(c, seconds=31.0)  # the record written 31 s ago is still not in the watch
        world.mono += 10  # the node pass leaves a node it acted on alone for 10 s unless it changes
        world.step(c)
        settle(c)
        assert node_api.drains()[:2] == ["h800-7", "h800-1"]
    finally:
        c.stop()
