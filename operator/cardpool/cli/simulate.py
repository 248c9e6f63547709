"""`cardpool simulate`: capacity planning offline. A pool, a fleet and a job trace run through seeded
failures in cardpool.sim, where the operator's own pass decides every placement and restart; prints what
each job and the pool went through, writes the figures as JSON and the plots as SVG.

Bad input files are bad usage (exit 2) with a message naming the file, the field and the rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from cardpool.sim import plots, report, scenario
from cardpool.sim.inputs import InputError, load_fleet, load_pool
from cardpool.sim.tracefile import load_trace
from cardpool.sim.trainer import TrainerModel

from .errors import OK, USAGE, Failure, _Console, writing
from .render import PHASE_STYLE

SHOW_PROGRESS_AFTER_S = 0.5
"""A run shorter than this shows no progress bar (it would only flicker)."""


def settings(args: argparse.Namespace) -> scenario.Settings:
    try:
        failures = scenario.Failures(args.failures, args.mtbf_hours, args.repair_hours, args.rack_share)
        trainer = TrainerModel(save_s=args.save_seconds, interval_s=args.interval, restart_s=args.restart_seconds)
    except ValueError as exc:
        raise Failure(str(exc), USAGE) from exc
    return scenario.Settings(args.hours, args.seed, failures, trainer)


def load(args: argparse.Namespace) -> scenario.Scenario:
    try:
        name, pool = load_pool(args.pool)
        fleet = load_fleet(args.nodes, pool)
        jobs = load_trace(args.jobs, pool)
    except InputError as exc:
        raise Failure(str(exc), USAGE) from exc
    return scenario.Scenario(name, pool, fleet, jobs, settings(args))


def simulate(plan: scenario.Scenario, console: Console):
    """The run, with a progress bar on the console once it has taken a while (on a terminal only)."""
    started = time.perf_counter()
    bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.fields[hours]:.0f}/{task.total:.0f} h"),
                   TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=True,
                   disable=not console.is_terminal)
    task = bar.add_task("simulate", total=plan.settings.hours, hours=0.0)
    shown = False

    def progress(done_s: float, _total_s: float) -> None:
        nonlocal shown
        if not shown and time.perf_counter() - started > SHOW_PROGRESS_AFTER_S:
            bar.start()
            shown = True
        bar.update(task, completed=done_s / 3600, hours=done_s / 3600)

    try:
        world = scenario.run(plan, progress)
    except RuntimeError as exc:  # the operator's pass would loop on a real cluster too: say so, no traceback
        raise Failure(f"the simulation stopped: {exc}") from exc
    finally:
        bar.stop()
    return world, time.perf_counter() - started


def writable(path: str | None, what: str) -> None:
    """Fail before a long run, not after it, when its output has nowhere to go."""
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise Failure(f"cannot write {what} {path}: no directory {Path(path).resolve().parent}")


def run(args: argparse.Namespace) -> int:
    plan = load(args)
    writable(args.json, "the JSON file")
    world, wall_s = simulate(plan, Console(stderr=True))
    figures = report.figures(plan, world)
    if args.json:
        with writing(f"the JSON file {args.json}"), open(args.json, "w") as f:
            f.write(json.dumps(figures, indent=2) + "\n")
    if args.plots:
        with writing(f"the plots into {args.plots}"):
            plots.write(figures, args.plots)
    with writing():
        if args.output == "json":
            print(json.dumps(figures, indent=2))
        elif args.output == "yaml":
            import yaml
            print(yaml.safe_dump(figures, sort_keys=False), end="")
        else:
            width = None if sys.stdout.isatty() else 160
            _Console(highlight=False, width=width).print(view(figures, wall_s))
        sys.stdout.flush()
    return OK


# -- the tables -------------------------------------------------------------------------------------------


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _causes(counts: dict[str, int]) -> str:
    """Restarts by cause; grows to different sizes are one cause here (GrowTo6, GrowTo7: Grow)."""
    merged: dict[str, int] = {}
    for cause, n in counts.items():
        key = "Grow" if cause.startswith("GrowTo") else cause
        merged[key] = merged.get(key, 0) + n
    return " ".join(f"{cause}:{n}" for cause, n in sorted(merged.items())) or "-"


def heading(figures: dict) -> str:
    """Two lines: the pool and fleet; the workload, failures and trainer."""
    inputs = figures["inputs"]
    groups = ", ".join(f"{g} {n}" for g, n in inputs["groups"].items())
    failures = inputs["failures"]
    if failures["preset"] == "none":
        faults = "no failures"
    else:
        rack = f", {failures['rack_share']:g} of node faults take the rack" if failures["rack_share"] else ""
        faults = (f"an interruption every {failures['system_mtbf_h']:.3g} h over the fleet, repaired in "
                  f"{failures['repair_h']:.3g} h{rack}")
    trainer = inputs["trainer"]
    interval = ("at the advised interval" if trainer["interval_s"] == "advised"
                else f"every {trainer['interval_s']:g} s of training")
    return (f"pool {inputs['pool']}: {inputs['nodes']} nodes, {inputs['cards']} cards ({groups})\n"
            f"{inputs['jobs']} jobs, {inputs['hours']:g} h, seed {inputs['seed']}: {faults}; saves block "
            f"{trainer['save_s']:g} s, {interval}")


def jobs_table(figures: dict) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column, justify in (("JOB", "left"), ("ARRIVAL h", "right"), ("WORKERS", "right"), ("ACCELERATORS", "left"),
                            ("RAN ON", "left"), ("WAITED h", "right"), ("PHASE", "left"), ("ETTR", "right"),
                            ("GOODPUT", "right"), ("RESTARTS", "left"), ("LOST h", "right"), ("DONE", "right")):
        table.add_column(column, justify=justify)
    for job in figures["jobs"]:
        table.add_row(job["name"], _h(job["arrival_h"]), f"{job['workers']}x{job['cards_per_worker']}",
                      " ".join(job["accelerators"]), " ".join(job["ran_on"]) or "-", _h(job["queue_delay_h"]),
                      Text(job["phase"], style=PHASE_STYLE.get(job["phase"], "")), _ratio(job["ettr"]),
                      _ratio(job["goodput"]), _causes(job["restarts"]), _h(job["lost_h"]),
                      f"{100 * job['progress']:.0f}%")
    return table


def pool_lines(figures: dict) -> Text:
    """The pool's figures, a line each (as text, not a table: no padding after the longest line)."""
    pool = figures["pool"]
    jobs = len(figures["jobs"])
    unfinished = jobs - pool["jobs_succeeded"] - pool["jobs_failed"]
    rows = [
        ("utilisation", f"{100 * pool['mean_utilisation']:.1f}% of the cards held by jobs (mean)"
         if pool["mean_utilisation"] is not None else "-"),
        ("queue", f"{pool['mean_queue_length']:.2f} jobs waiting (mean), {pool['max_queue_length']} at most"),
        ("fragmentation", f"{pool['mean_fragmentation_percent']:.1f}% of free cards (mean)"),
        ("jobs", f"{pool['jobs_succeeded']} succeeded, {pool['jobs_failed']} failed, {unfinished} unfinished "
                 f"({pool['jobs_never_placed']} never placed, {pool['jobs_not_submitted']} of them arriving after "
                 f"the horizon) of {jobs}"),
        ("ETTR", f"{_ratio(pool['mean_ettr'])} mean, {_ratio(pool['min_ettr'])} lowest"),
        ("waited", f"{_h(pool['mean_queue_delay_h'])} h mean, {_h(pool['max_queue_delay_h'])} h longest, "
                   "from arrival to first placement"),
        ("goodput", f"{_ratio(pool['goodput'])} of the card-hours held kept as training"),
        ("faults", " ".join(f"{k}:{n}" for k, n in pool["faults"].items()) or "none"),
        ("lost", f"{pool['lost_h']:.1f} h of training redone: " + (", ".join(
            f"{cause} {v['lost_h']:.1f} h in {v['interruptions']}" for cause, v in figures["losses"].items())
            or "none")),
    ]
    width = max(len(key) for key, _ in rows) + 2
    text = Text()
    for i, (key, value) in enumerate(rows):
        text.append(key.ljust(width), style="bold")
        text.append(value + ("\n" if i < len(rows) - 1 else ""))
    return text


def view(figures: dict, wall_s: float) -> Group:
    passes = figures["pool"]["passes"]
    return Group(Text(heading(figures)), Text(""), jobs_table(figures), Text(""), pool_lines(figures), Text(""),
                 Text(f"simulated in {wall_s:.1f} s ({passes:,} passes of the operator)", style="dim"))
