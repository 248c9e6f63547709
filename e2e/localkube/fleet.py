"""A declarative fleet of KWOK nodes: node groups of one accelerator model each, with racks and spines.

The fleet file lists groups; `node_objects()` turns it into Node objects with real capacity and allocatable
(cards under the vendor's device-plugin resource name, CPU, memory, pods) and the labels device plugins and
feature discovery put on real nodes; `apply()` creates them and waits until KWOK reports them Ready.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .cluster import KWOK_NODE_LABEL
from .waiting import NotYet, wait_for

FLEET_LABEL = "localkube.cardpool.io/fleet"
GROUP_LABEL = "localkube.cardpool.io/group"
RACK_LABEL = "topology.cardpool.io/rack"
SPINE_LABEL = "topology.cardpool.io/spine"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class NodeShape(_Model):
    cpu: str = "192"
    memory: str = "2Ti"
    pods: int = 110
    ephemeral_storage: str = Field("8Ti", alias="ephemeralStorage")
    nodes_per_rack: int = Field(4, alias="nodesPerRack", ge=1)
    racks_per_spine: int = Field(4, alias="racksPerSpine", ge=1)


class NodeGroup(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    vendor: str
    model: str
    resource: str = Field(description="device-plugin resource name, e.g. huawei.com/Ascend910")
    cards_per_node: int = Field(alias="cardsPerNode", ge=1)
    nodes: int = Field(ge=1)
    labels: dict[str, str] = {}
    cpu: str | None = None
    memory: str | None = None


class Fleet(_Model):
    name: str
    defaults: NodeShape = NodeShape()
    groups: list[NodeGroup]

    @model_validator(mode="after")
    def _unique_groups(self) -> Fleet:
        names = [g.name for g in self.groups]
        if len(names) != len(set(names)):
            raise ValueError(f"group names must be unique, got {names}")
        return self

    @classmethod
    def load(cls, path: str | Path) -> Fleet:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    @property
    def node_count(self) -> int:
        return sum(g.nodes for g in self.groups)

    def cards(self) -> dict[str, int]:
        """Total cards per device-plugin resource name."""
        totals: dict[str, int] = {}
        for g in self.groups:
            totals[g.resource] = totals.get(g.resource, 0) + g.nodes * g.cards_per_node
        return totals

    def node_objects(self) -> list[dict]:
        """Node manifests (with status) in a stable order. Racks hold `nodesPerRack` nodes of one group;
        spines collect `racksPerSpine` consecutive racks across the whole fleet."""
        nodes: list[dict] = []
        rack_index = 0
        shape = self.defaults
        for group in self.groups:
            for i in range(group.nodes):
                if i and i % shape.nodes_per_rack == 0:
                    rack_index += 1
                name = f"{group.name}-{i:03d}"
                resources = {
                    "cpu": group.cpu or shape.cpu,
                    "memory": group.memory or shape.memory,
                    "pods": str(shape.pods),
                    "ephemeral-storage": shape.ephemeral_storage,
                    group.resource: str(group.cards_per_node),
                }
                labels = {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    KWOK_NODE_LABEL[0]: KWOK_NODE_LABEL[1],
                    FLEET_LABEL: self.name,
                    GROUP_LABEL: group.name,
                    RACK_LABEL: f"rack-{rack_index:03d}",
                    SPINE_LABEL: f"spine-{rack_index // shape.racks_per_spine:02d}",
                    **group.labels,
                }
                nodes.append({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                    },
                    # Nodes accept status on create; KWOK keeps capacity/allocatable that are already set.
                    "status": {"capacity": resources, "allocatable": dict(resources)},
                })
            rack_index += 1
        return nodes


def apply(core: client.CoreV1Api, fleet: Fleet, prune: bool = True, timeout: float = 300.0) -> dict[str, int]:
    """Create the fleet's nodes (existing ones are left as they are), delete nodes of other fleets made by
    localkube when `prune`, and wait until every fleet node is Ready. Returns counts."""
    wanted = fleet.node_objects()
    names = {n["metadata"]["name"] for n in wanted}
    existing = {n.metadata.name: n.metadata.labels.get(FLEET_LABEL)
                for n in core.list_node(label_selector=FLEET_LABEL).items}
    # A node of the same name from another fleet file has other labels and capacity: replace it.
    replaced = sorted(n for n in names & existing.keys() if existing[n] != fleet.name)
    stale = sorted(existing.keys() - names) if prune else []

    def create(node: dict) -> bool:
        try:
            core.create_node(node)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def delete(name: str) -> None:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def gone(names_: list[str]) -> bool:
        left = {n.metadata.name for n in core.list_node(label_selector=FLEET_LABEL).items} & set(names_)
        if left:
            raise NotYet(f"{len(left)} still present, e.g. {sorted(left)[:5]}")
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(delete, replaced + stale))
        if replaced:
            wait_for(f"{len(replaced)} nodes of another fleet to be deleted", lambda: gone(replaced), timeout=60)
        keep = existing.keys() - set(replaced)
        created = sum(pool.map(create, [n for n in wanted if n["metadata"]["name"] not in keep]))

    def all_ready() -> bool:
        ready = {n.metadata.name for n in core.list_node(label_selector=f"{FLEET_LABEL}={fleet.name}").items
                 if _is_ready(n)}
        if missing := sorted(names - ready):
            raise NotYet(f"{len(missing)} not Ready, e.g. {missing[:5]}")
        return True

    wait_for(f"all {len(names)} nodes of fleet {fleet.name!r} to be Ready (KWOK's node-initialize stage)",
             all_ready, timeout=timeout, interval=1.0)
    return {"nodes": len(names), "created": created, "replaced": len(replaced), "pruned": len(stale)}


def _is_ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
