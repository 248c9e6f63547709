"""The pool and the fleet `cardpool simulate` plays: a CardPool manifest as users apply it, and how many nodes
each of its groups has.

The fleet file (documented in docs/simulate.md):

    defaults: {nodesPerRack: 8, racksPerSpine: 4}   # optional
    groups:
    - name: h800          # a nodeGroup of the pool
      nodes: 16
      nodesPerRack: 4     # optional, this group's own

The e2e kit's fleet files (e2e/fleets/*.yaml) have this shape too and are read as they are: their node shape
(cpu, memory, pods) is not simulated, and what they say of a group's cards (vendor, model, resource,
cardsPerNode, labels) must agree with the pool. Nodes are labelled with the group's nodeSelector and one
label per topology key of the group (racks of nodesPerRack nodes, spines of racksPerSpine racks, each
further tier racksPerSpine blocks of the one below); the rack is also what a correlated fault takes.

Every problem is an InputError naming the file, the field and the rule: bad input is the user's to fix, not
a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from cardpool.api.cardpool import CardPool, CardPoolSpec
from cardpool.core.observed import ObservedNode

MAX_ERRORS = 10
"""A file with many problems: the first ones are enough to start fixing it."""


class InputError(Exception):
    """An input file the simulation cannot use; the message names the file, the field and the rule."""


def read_text(path: str | Path) -> str:
    """The file's text; a file that cannot be read, or is not text, is an InputError."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file: {exc.reason}") from exc


def read_yaml(path: str | Path, many: bool = False) -> Any:
    """The file's YAML document (or all its documents); unreadable or invalid YAML is an InputError."""
    text = read_text(path)
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None] if many else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{path}: not valid YAML{where}: {problem}") from exc


def location(loc: tuple, prefix: str = "") -> str:
    """A pydantic error location as the file spells it: spec.nodeGroups[0].accelerator."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the document)"


def refusals(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: where, what the rule says, and the value found."""
    lines = []
    for error in exc.errors(include_url=False):
        got = "" if error["type"] in ("missing", "extra_forbidden") else f" (got {error.get('input')!r})"
        lines.append(f"{location(error['loc'], prefix)}: {error['msg']}{got}")
    return lines


def fail(path: str | Path, lines: list[str]) -> InputError:
    shown = lines[:MAX_ERRORS]
    more = f"\n  ... and {len(lines) - MAX_ERRORS} more" if len(lines) > MAX_ERRORS else ""
    if len(shown) == 1:
        return InputError(f"{path}: {shown[0]}")
    return InputError(f"{path}: {len(lines)} problems:\n  " + "\n  ".join(shown) + more)


# -- the pool ---------------------------------------------------------------------------------------------


def load_pool(path: str | Path) -> tuple[str, CardPoolSpec]:
    """The CardPool of the file (its name and spec), validated as the API server would: the model's fields
    and the CRD's rules that the model leaves to the server (unique group names, CEL rules)."""
    documents = read_yaml(path, many=True)
    pools = [d for d in documents if isinstance(d, dict) and d.get("kind") == "CardPool"]
    if not pools:
        kinds = sorted({str(d.get("kind")) for d in documents if isinstance(d, dict)})
        found = f" (kinds found: {', '.join(kinds)})" if kinds else ""
        raise InputError(f"{path}: no CardPool in the file{found}: give a manifest with kind: CardPool")
    if len(pools) > 1:
        names = ", ".join(str((p.get("metadata") or {}).get("name")) for p in pools)
        raise InputError(f"{path}: {len(pools)} CardPools in the file ({names}): give one")
    try:
        pool = CardPool.model_validate(pools[0])
    except ValidationError as exc:
        raise fail(path, refusals(exc)) from exc
    problems = server_rules(pool.spec)
    if problems:
        raise fail(path, problems)
    return pool.metadata.name, pool.spec


def server_rules(spec: CardPoolSpec) -> list[str]:
    """The CRD's checks the pydantic model does not make (the API server makes them on apply)."""
    problems = []
    seen: set[str] = set()
    for i, group in enumerate(spec.node_groups):
        if group.name in seen:
            problems.append(f"spec.nodeGroups[{i}].name: group names must be unique, {group.name!r} is repeated")
        seen.add(group.name)
        accel = group.accelerator
        domain = accel.interconnect.domain_size if accel.interconnect is not None else None
        if domain and domain % accel.cards_per_node and accel.cards_per_node % domain:
            problems.append(f"spec.nodeGroups[{i}].accelerator.interconnect.domainSize: must divide cardsPerNode or "
                            f"be a multiple of it (got {domain} with cardsPerNode {accel.cards_per_node})")
    defrag = spec.defragmentation
    if defrag.max_migrations_per_hour and defrag.max_concurrent_migrations > defrag.max_migrations_per_hour:
        problems.append("spec.defragmentation.maxConcurrentMigrations: must not exceed maxMigrationsPerHour (got "
                        f"{defrag.max_concurrent_migrations} > {defrag.max_migrations_per_hour})")
    return problems


# -- the fleet --------------------------------------------------------------------------------------------


class _FleetModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class FleetDefaults(_FleetModel):
    nodes_per_rack: int = Field(8, ge=1, le=10000)
    racks_per_spine: int = Field(4, ge=1, le=10000)
    # the e2e kit's node shape: accepted so its fleet files can be read, not simulated
    cpu: str | None = None
    memory: str | None = None
    pods: int | None = None
    ephemeral_storage: str | None = None


class FleetGroup(_FleetModel):
    name: str
    nodes: int = Field(ge=0, le=100000)
    nodes_per_rack: int | None = Field(None, ge=1, le=10000)
    # what the e2e kit's fleet files say of a group's cards: checked against the pool
    vendor: str | None = None
    model: str | None = None
    resource: str | None = None
    cards_per_node: int | None = None
    labels: dict[str, str] | None = None
    cpu: str | None = None
    memory: str | None = None


class FleetFile(_FleetModel):
    name: str | None = None
    defaults: FleetDefaults = FleetDefaults()
    groups: list[FleetGroup] = Field(min_length=1)


@dataclass(frozen=True)
class Fleet:
    nodes: list[tuple[ObservedNode, str]]
    """Every node with its rack."""
    counts: dict[str, int]
    """Nodes per group of the pool."""
    cards: int


def load_fleet(path: str | Path, pool: CardPoolSpec) -> Fleet:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with groups: [{{name, nodes}}, ...], got "
                         f"{type(data).__name__}")
    try:
        fleet = FleetFile.model_validate(data)
    except ValidationError as exc:
        raise fail(path, refusals(exc)) from exc
    problems = _against_pool(fleet, pool)
    if problems:
        raise fail(path, problems)
    nodes = build_nodes(pool, fleet)
    if not nodes:
        raise InputError(f"{path}: groups[].nodes: no nodes at all: give at least one group some nodes")
    counts = {g.name: g.nodes for g in fleet.groups}
    cards = sum(sum(n.capacity.values()) for n, _ in nodes)
    return Fleet(nodes, counts, cards)


def _against_pool(fleet: FleetFile, pool: CardPoolSpec) -> list[str]:
    groups = {g.name: g for g in pool.node_groups}
    problems = []
    seen: set[str] = set()
    for i, entry in enumerate(fleet.groups):
        where = f"groups[{i}]"
        if entry.name in seen:
            problems.append(f"{where}.name: {entry.name!r} is listed twice: give each group once")
        seen.add(entry.name)
        group = groups.get(entry.name)
        if group is None:
            problems.append(f"{where}.name: the pool has no nodeGroup {entry.name!r} (its groups: "
                            f"{', '.join(groups)})")
            continue
        accel = group.accelerator
        for field, alias, pools in (("vendor", "vendor", accel.vendor.value), ("model", "model", accel.model),
                                    ("resource", "resource", accel.resource),
                                    ("cards_per_node", "cardsPerNode", accel.cards_per_node)):
            given = getattr(entry, field)
            if given is not None and given != pools:
                problems.append(f"{where}.{alias}: {given!r} here, but the pool's group {entry.name} has {pools!r}")
        if entry.labels is not None:
            missing = {k: v for k, v in group.node_selector.items() if entry.labels.get(k) != v}
            if missing:
                problems.append(f"{where}.labels: the pool's group {entry.name} selects nodes by {missing}, which "
                                "these labels lack: its nodes would not be in the pool")
    return problems


def build_nodes(pool: CardPoolSpec, fleet: FleetFile) -> list[tuple[ObservedNode, str]]:
    """Ready nodes of each group, in the pool's group order, labelled for its selector and topology keys."""
    entries = {g.name: g for g in fleet.groups}
    spine = fleet.defaults.racks_per_spine
    out = []
    for group in pool.node_groups:
        entry = entries.get(group.name)
        if entry is None:
            continue
        rack_size = entry.nodes_per_rack or fleet.defaults.nodes_per_rack
        resource, cards = group.accelerator.resource, group.accelerator.cards_per_node
        for i in range(entry.nodes):
            name = f"{group.name}-{i:04d}"
            rack = f"{group.name}-r{i // rack_size}"
            labels = {**(entry.labels or {}), **group.node_selector, "kubernetes.io/hostname": name}
            for tier, key in enumerate(group.topology_keys):
                block = i // (rack_size * spine ** tier)
                labels[key] = rack if tier == 0 else f"{group.name}-{'s' if tier == 1 else f't{tier}-'}{block}"
            out.append((ObservedNode(name, labels, {resource: cards}, {resource: cards}, {"Ready": "True"}), rack))
    return out
