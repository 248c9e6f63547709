"""The card map: cells per card from nodes and pods, golden terminal text, and the SVG rendered to an image
(cairosvg) whose pixels show the expected cells."""

from __future__ import annotations

import io
import os

import cairosvg
import yaml
from PIL import Image
from rich.console import Console

from cardpool.cli import cardmap

from .examples import EXAMPLES
from .test_cli_render import GOLDEN

POOL = yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())
H800 = {"nvidia.com/gpu.product": "NVIDIA-H800"}


def node(name: str, allocatable: int = 8, ready: bool = True, drained: bool = False) -> dict:
    return {"metadata": {"name": name, "labels": H800,
                         "annotations": {"cardpool.io/drain": "{}"} if drained else {}},
            "status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": str(allocatable)},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(job: str, node_name: str, cards: int) -> dict:
    return {"metadata": {"namespace": "demo", "name": f"{job}-a1-0",
                         "labels": {"cardpool.io/job": job, "app.kubernetes.io/managed-by": "cardpool"}},
            "spec": {"nodeName": node_name,
                     "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(cards)}}}]},
            "status": {"phase": "Running"}}


def other_pod(name: str, node_name: str, requests: dict[str, str], phase: str = "Running") -> dict:
    """A pod cardpool does not manage: an inference server, a notebook."""
    return {"metadata": {"namespace": "serving", "name": name, "labels": {"app": name}},
            "spec": {"nodeName": node_name, "containers": [{"resources": {"requests": requests}}]},
            "status": {"phase": phase}}


NODES = [node("h800-000"), node("h800-001", allocatable=6), node("h800-002", drained=True),
         node("h800-003", ready=False), node("h800-004")]
PODS = [pod("llama", "h800-000", 8), pod("small", "h800-001", 2), pod("tiny", "h800-001", 2),
        other_pod("vllm", "h800-004", {"nvidia.com/gpu": "2", "cpu": "8"}),
        other_pod("notebook", "h800-004", {"nvidia.com/gpu": "1", "rdma/hca": "1"}),  # only the group's cards
        other_pod("done", "h800-004", {"nvidia.com/gpu": "4"}, phase="Succeeded"),
        other_pod("cpu-only", "h800-004", {"cpu": "1"})]


def built() -> cardmap.CardMap:
    return cardmap.build(POOL, NODES, PODS)


def test_cells_show_busy_other_free_unhealthy_and_draining_cards() -> None:
    rows = {r.node: "".join(r.cells) for r in built().nodes}
    assert rows == {"h800-000": "AAAAAAAA", "h800-001": "BBCC..xx", "h800-002": "~~~~~~~~", "h800-003": "xxxxxxxx",
                    "h800-004": "###....."}
    assert built().jobs == {"A": "demo/llama", "B": "demo/small", "C": "demo/tiny"}


def test_the_terminal_map_matches_its_golden_file() -> None:
    console = Console(width=120, record=True, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(cardmap.terminal(built()))
    text = console.export_text()
    if os.environ.get("CARDPOOL_UPDATE_GOLDEN") == "1":
        (GOLDEN / "cardmap.txt").write_text(text)
    assert text == (GOLDEN / "cardmap.txt").read_text()


def test_the_svg_renders_to_an_image_with_the_expected_cells() -> None:
    png = cairosvg.svg2png(bytestring=cardmap.svg(built()).encode())
    image = Image.open(io.BytesIO(png)).convert("RGB")

    def rgb(color: str) -> tuple[int, int, int]:
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))

    for row, node_cells in enumerate(built().nodes):
        for column, cell in enumerate(node_cells.cells):
            assert image.getpixel(cardmap.cell_center(row, column)) == rgb(cardmap.cell_color(cell)), (
                node_cells.node, column, cell)
    assert image.getpixel(cardmap.cell_center(1, 0)) != image.getpixel(cardmap.cell_center(1, 2))  # two jobs
    held = rgb(cardmap.cell_color(cardmap.OTHER))
    assert image.getpixel(cardmap.cell_center(4, 0)) == held != rgb(cardmap.cell_color(cardmap.FREE))
    assert ">other workloads</text>" in cardmap.svg(built())  # in the legend
