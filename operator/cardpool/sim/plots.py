"""The plots of a capacity-planning run as SVG files, drawn by hand (a line chart and a bar chart are a few
dozen elements: no plotting library to install): utilisation and fragmentation over time, queue length over
time, ETTR per job, training lost per cause."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 56, 48
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e")
FONT = 'font-family="sans-serif" font-size="12"'
TITLE_FONT = 'font-family="sans-serif" font-size="15"'
SMALL_FONT = 'font-family="sans-serif" font-size="10"'
VALUE_FONT = 'font-family="sans-serif" font-size="9"'
CHAR_W = 6.0
"""Width of a character at font size 10, near enough to leave room for slanted labels."""
SLANT = 50


def ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high`."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return [round(i * step, 10) for i in range(math.ceil(high / step - 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


class _Canvas:
    """Axes, grid, title and labels of a chart whose plot area is `w` x `h` at (LEFT, TOP)."""

    def __init__(self, title: str, x_label: str, y_label: str, y_top: float, bottom: float = BOTTOM) -> None:
        self.height = HEIGHT - BOTTOM + bottom
        self.w, self.h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
        self.y_ticks = ticks(y_top)
        self.y_top = self.y_ticks[-1]
        self.parts = [f'<rect width="{WIDTH}" height="{self.height}" fill="white"/>',
                      f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" {TITLE_FONT}>{escape(title)}</text>',
                      f'<text x="{LEFT + self.w / 2}" y="{self.height - 8}" text-anchor="middle" {FONT}>'
                      f'{escape(x_label)}</text>',
                      f'<text transform="translate(16 {TOP + self.h / 2}) rotate(-90)" text-anchor="middle" {FONT}>'
                      f'{escape(y_label)}</text>']
        for value in self.y_ticks:
            y = self.y(value)
            self.parts.append(f'<line x1="{LEFT}" x2="{LEFT + self.w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            self.parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_label(value)}</text>')
        self.parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + self.h}" stroke="black"/>')
        self.parts.append(f'<line x1="{LEFT}" x2="{LEFT + self.w}" y1="{TOP + self.h}" y2="{TOP + self.h}" '
                          'stroke="black"/>')

    def y(self, value: float) -> float:
        return TOP + self.h - self.h * min(max(value, 0.0), self.y_top) / self.y_top

    def note(self, text: str) -> None:
        self.parts.append(f'<text x="{LEFT + self.w / 2}" y="{TOP + self.h / 2}" text-anchor="middle" {FONT} '
                          f'fill="#666">{escape(text)}</text>')

    def legend(self, names: Sequence[str]) -> None:
        x = LEFT + 8
        for i, name in enumerate(names):
            color = COLORS[i % len(COLORS)]
            self.parts.append(f'<rect x="{x}" y="{TOP - 16}" width="14" height="3" fill="{color}"/>')
            self.parts.append(f'<text x="{x + 18}" y="{TOP - 11}" {FONT}>{escape(name)}</text>')
            x += 36 + len(name) * 7

    def svg(self) -> str:
        body = "\n".join(self.parts)
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
                f'height="{self.height:.0f}" viewBox="0 0 {WIDTH} {self.height:.0f}">\n{body}\n</svg>\n')


def line_chart(title: str, xs: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], x_label: str,
               y_label: str, y_top: float | None = None, steps: bool = False) -> str:
    """Lines over a shared x axis from 0 to its last value; `steps`: each value holds until the next (a count
    that jumps)."""
    top = y_top if y_top is not None else max((max(ys, default=0) for _, ys in series), default=0) or 1.0
    canvas = _Canvas(title, x_label, y_label, top)
    x_top = max(xs, default=0) or 1.0

    def x(value: float) -> float:
        return LEFT + canvas.w * value / x_top

    for value in ticks(x_top, 8):
        if value <= x_top:
            canvas.parts.append(f'<text x="{x(value):.1f}" y="{TOP + canvas.h + 16}" text-anchor="middle" {FONT}>'
                                f'{_label(value)}</text>')
    for i, (_, ys) in enumerate(series):
        points: list[str] = []
        for j, (a, b) in enumerate(zip(xs, ys, strict=True)):
            if steps and j:
                points.append(f"{x(a):.1f},{canvas.y(ys[j - 1]):.1f}")
            points.append(f"{x(a):.1f},{canvas.y(b):.1f}")
        if points:
            canvas.parts.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="1.5" '
                                f'points="{" ".join(points)}"/>')
    canvas.legend([name for name, _ in series])
    if not xs:
        canvas.note("no samples")
    return canvas.svg()


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float | None], y_label: str,
              y_top: float | None = None, empty: str = "nothing to show", digits: int = 3) -> str:
    """One bar per label, its value written on it; a None value leaves its slot empty and says n/a. Labels
    that do not fit under their bar are slanted (the chart grows to hold them)."""
    top = y_top if y_top is not None else max((v for v in values if v is not None), default=0) or 1.0
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    longest = max((len(s) for s in labels), default=0) * CHAR_W
    slanted = longest > slot * 0.95
    bottom = BOTTOM + longest * math.sin(math.radians(SLANT)) if slanted else BOTTOM
    canvas = _Canvas(title, "", y_label, top, bottom)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        middle = LEFT + slot * (i + 0.5)
        if value is None:
            canvas.parts.append(f'<text x="{middle:.1f}" y="{TOP + canvas.h - 4}" text-anchor="middle" {SMALL_FONT} '
                                'fill="#666">n/a</text>')
        else:
            y = canvas.y(value)
            canvas.parts.append(f'<rect x="{middle - slot * 0.35:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                                f'height="{TOP + canvas.h - y:.1f}" fill="{COLORS[0]}"><title>'
                                f'{escape(label)}: {value:.{digits}f}</title></rect>')
            if slot >= 28:  # the value on the bar's top, inside it when the bar reaches the top
                inside = y < TOP + 16
                canvas.parts.append(f'<text x="{middle:.1f}" y="{y + 12 if inside else y - 4:.1f}" '
                                    f'text-anchor="middle" {VALUE_FONT} fill="{"white" if inside else "black"}">'
                                    f'{value:.{digits}f}</text>')
        base = TOP + canvas.h + 14
        if slanted:
            canvas.parts.append(f'<text transform="translate({middle + 4:.1f} {base}) rotate(-{SLANT})" '
                                f'text-anchor="end" {SMALL_FONT}>{escape(label)}</text>')
        else:
            canvas.parts.append(f'<text x="{middle:.1f}" y="{base}" text-anchor="middle" {SMALL_FONT}>'
                                f'{escape(label)}</text>')
    if not labels:
        canvas.note(empty)
    return canvas.svg()


def write(figures: dict, directory: str | Path) -> list[Path]:
    """The run's four plots into `directory` (made if missing); returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    series, jobs, losses = figures["series"], figures["jobs"], figures["losses"]
    plots = {
        "utilisation.svg": line_chart(
            "Cards in use and fragmentation", series["time_h"],
            [("cards held by jobs (%)", [100 * u for u in series["utilisation"]]),
             ("free cards fragmented (%)", series["fragmentation_percent"])], "hours", "percent", 100.0),
        "queue.svg": line_chart("Jobs waiting (queued or restarting)", series["time_h"],
                                [("jobs waiting", series["waiting_jobs"])], "hours", "jobs", steps=True),
        "ettr.svg": bar_chart("ETTR per job (kept training time / wall time since first start)",
                              [j["name"] for j in jobs], [j["ettr"] for j in jobs], "ETTR", 1.0, "no jobs"),
        "lost-work.svg": bar_chart("Training lost per cause (hours redone; interruptions in brackets)",
                                   [f"{cause} ({v['interruptions']})" for cause, v in losses.items()],
                                   [v["lost_h"] for v in losses.values()], "hours", empty="no training was lost",
                                   digits=2),
    }
    paths = []
    for name, text in plots.items():
        path = out / name
        path.write_text(text)
        paths.append(path)
    return paths
