"""Small builders so scenario tables read like a spec: nodes, running jobs, pending jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cardpool.core.snapshot import Allocation, Group, JobRequest, Mode, Node, Packing, Snapshot, Worker

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
MODELS = {"h800": "H800", "a100": "A100", "ascend": "Ascend910B", "mlu": "MLU590"}
THROUGHPUT = {"H800": 1.0, "A100": 0.35, "Ascend910B": 0.6, "MLU590": 0.45}


def nodes(group: str, count: int, cards: int = 8, per_rack: int = 2, racks_per_spine: int = 2,
          **overrides: dict[int, dict]) -> list[Node]:
    """`count` nodes named <group>-<i>, racks of `per_rack`, spines of `racks_per_spine` racks.
    overrides: n3={"healthy": False} changes node 3."""
    out = []
    for i in range(count):
        rack = i // per_rack
        node = Node(name=f"{group}-{i}", group=group, model=MODELS[group], allocatable=cards, capacity=cards,
                    topology=(f"{group}-r{rack}", f"{group}-s{rack // racks_per_spine}"))
        extra = overrides.get(f"n{i}", {})
        out.append(Node(**{**{f: getattr(node, f) for f in node.__dataclass_fields__}, **extra}))
    return out


def running(job: str, *where: tuple[str, int], cards: int | None = None) -> Allocation:
    """A running job holding (node, cards) per worker."""
    workers = []
    for rank, (node, n) in enumerate(where):
        group = node.rsplit("-", 1)[0]
        workers.append(Worker(rank=rank, node=node, group=group, model=MODELS[group], cards=cards or n))
    return Allocation(job, tuple(workers))


def job(key: str, workers: int | tuple[int, int], cards: int = 8, models: tuple[str, ...] = ("H800",),
        unit: int = 1, desired: int | None = None, priority: int = 0, minute: int = 0,
        mode: Mode = Mode.HOMOGENEOUS, packing: Packing = Packing.PREFERRED) -> JobRequest:
    low, high = (workers, workers) if isinstance(workers, int) else workers
    return JobRequest(key=key, cards_per_worker=cards, min_workers=low, max_workers=high, accelerators=models,
                      unit=unit, desired_workers=desired, mode=mode, packing=packing, priority=priority,
                      submitted=T0 + timedelta(minutes=minute))


def snapshot(node_list: list[Node], allocations: list[Allocation] = (), pending: list[JobRequest] = ()
             ) -> Snapshot:
    groups = {}
    for n in node_list:
        groups.setdefault(n.group, Group(n.group, n.model, n.capacity, THROUGHPUT[n.model]))
    return Snapshot(nodes=tuple(node_list), groups=tuple(groups.values()), allocations=tuple(allocations),
                    pending=tuple(pending))
