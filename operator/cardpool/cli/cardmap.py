"""A pool's card map: each node's cards as cells (busy by job, held by other workloads, free, unhealthy,
draining), for the terminal and as an SVG file. Pure: built from the pool, its nodes and the pods as the API
returned them (cardpool's, and any others holding cards)."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from rich.table import Table
from rich.text import Text

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.keys import ANNOTATION_DRAIN, LABEL_JOB, LABEL_MANAGED_BY, MANAGED_BY
from cardpool.core.drain import member_group
from cardpool.kube.observe import foreign_pod, foreign_usage

FREE, UNHEALTHY, DRAINING, OTHER = ".", "x", "~", "#"
JOB_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PALETTE = ["#1e88e5", "#43a047", "#8e24aa", "#fb8c00", "#00acc1", "#6d4c41", "#3949ab", "#c0ca33"]
COLORS = {FREE: "#e0e0e0", UNHEALTHY: "#d32f2f", DRAINING: "#ffb300", OTHER: "#616161"}
STYLES = {FREE: "dim", UNHEALTHY: "bold red", DRAINING: "yellow", OTHER: "bold grey50"}
NAMES = {FREE: "free", OTHER: "other workloads", UNHEALTHY: "unhealthy", DRAINING: "draining"}
CELL, GAP, LABEL_W = 18, 3, 150


@dataclass(frozen=True)
class NodeCells:
    group: str
    node: str
    cells: tuple[str, ...]
    """One per card: a job's letter, OTHER (held by a pod cardpool does not manage), FREE, UNHEALTHY or
    DRAINING."""


@dataclass(frozen=True)
class CardMap:
    pool: str
    nodes: tuple[NodeCells, ...]
    jobs: dict[str, str]
    """letter -> namespace/name."""


def build(pool: dict, nodes: list[dict], pods: list[dict]) -> CardMap:
    spec = CardPoolSpec.model_validate(pool["spec"])
    busy: dict[str, list[tuple[str, int]]] = {}
    others = foreign_usage(held for held in map(foreign_pod, pods) if held)  # None for cardpool's own pods
    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        if (pod["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGED_BY:
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            continue
        job = f"{pod['metadata']['namespace']}/{(pod['metadata'].get('labels') or {}).get(LABEL_JOB, '?')}"
        cards = sum(int(v) for c in pod["spec"].get("containers", [])
                    for k, v in ((c.get("resources") or {}).get("requests") or {}).items() if "/" in k)
        busy.setdefault(node, []).append((job, cards))
    letters: dict[str, str] = {}
    rows = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        meta, status = node["metadata"], node.get("status") or {}
        group = member_group(spec, meta.get("labels") or {})
        if group is None:
            continue
        resource = group.accelerator.resource
        capacity = int((status.get("capacity") or {}).get(resource, group.accelerator.cards_per_node))
        allocatable = int((status.get("allocatable") or {}).get(resource, 0))
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        drained = ANNOTATION_DRAIN in (meta.get("annotations") or {})
        cells: list[str] = []
        for job, cards in busy.get(meta["name"], []):
            letter = letters.setdefault(job, JOB_LETTERS[len(letters) % len(JOB_LETTERS)])
            cells += [letter] * cards
        cells += [OTHER] * others.get(meta["name"], {}).get(resource, 0)  # only the group's cards
        healthy = allocatable if ready else 0
        cells += [DRAINING if drained else FREE] * max(healthy - len(cells), 0)
        cells += [UNHEALTHY] * max(capacity - len(cells), 0)
        rows.append(NodeCells(group.name, meta["name"], tuple(cells[:max(capacity, len(cells))])))
    return CardMap(pool["metadata"]["name"], tuple(rows), {v: k for k, v in letters.items()})


def _style(cell: str, jobs: dict[str, str]) -> str:
    if cell in STYLES:
        return STYLES[cell]
    return f"bold {PALETTE[JOB_LETTERS.index(cell) % len(PALETTE)]}"


def terminal(card_map: CardMap) -> Table:
    legend = ", ".join(f"{cell} {name}" for cell, name in NAMES.items())
    title = f"Cards of pool {card_map.pool}  ({legend})"
    table = Table(title=title, box=None, pad_edge=False, header_style="bold", title_justify="left",
                  min_width=max(64, len(title)))  # the legend on one line
    table.add_column("GROUP")
    table.add_column("NODE")
    table.add_column("CARDS")
    for row in card_map.nodes:
        text = Text()
        for cell in row.cells:
            text.append(cell, style=_style(cell, card_map.jobs))
        table.add_row(row.group, row.node, text)
    for letter, job in sorted(card_map.jobs.items(), key=lambda kv: JOB_LETTERS.index(kv[0])):
        table.add_row("", "", Text(f"{letter} = {job}", style=_style(letter, card_map.jobs)))
    return table


def cell_color(cell: str) -> str:
    return COLORS.get(cell) or PALETTE[JOB_LETTERS.index(cell) % len(PALETTE)]


def cell_center(row: int, column: int) -> tuple[int, int]:
    """Pixel centre of a cell in the SVG (for tests and for anyone reading the file)."""
    return LABEL_W + column * (CELL + GAP) + CELL // 2, 30 + row * (CELL + GAP) + CELL // 2


def svg(card_map: CardMap) -> str:
    width = LABEL_W + max((len(r.cells) for r in card_map.nodes), default=0) * (CELL + GAP) + 10
    legend_y = 30 + len(card_map.nodes) * (CELL + GAP) + 10
    height = legend_y + (len(card_map.jobs) + len(NAMES)) * 18
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="4" y="18" font-weight="bold">cards of pool {escape(card_map.pool)}</text>']
    for i, row in enumerate(card_map.nodes):
        _, y = cell_center(i, 0)
        out.append(f'<text x="4" y="{y + 4}">{escape(row.node)}</text>')
        for j, cell in enumerate(row.cells):
            x, cy = cell_center(i, j)
            title = card_map.jobs.get(cell, NAMES.get(cell))
            out.append(f'<rect x="{x - CELL // 2}" y="{cy - CELL // 2}" width="{CELL}" height="{CELL}" '
                       f'fill="{cell_color(cell)}"><title>{escape(row.node)}: {escape(str(title))}</title></rect>')
    legend = [*NAMES.items(), *sorted(card_map.jobs.items(), key=lambda kv: JOB_LETTERS.index(kv[0]))]
    for k, (cell, label) in enumerate(legend):
        y = legend_y + k * 18
        out.append(f'<rect x="4" y="{y}" width="12" height="12" fill="{cell_color(cell)}"/>')
        out.append(f'<text x="22" y="{y + 11}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
