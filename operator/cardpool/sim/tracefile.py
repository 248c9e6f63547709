"""The workload `cardpool simulate` plays: a trace of jobs, as CSV (a header row, one job a row, `#` lines
are comments) or YAML (a list of jobs, or `jobs:` holding one), with the same column names:

| column           | required | meaning                                                                      |
| ---------------- | -------- | ---------------------------------------------------------------------------- |
| name             | no       | the job's name (a DNS label, unique); default job-<n> by order               |
| arrival          | yes      | when it is submitted, from the start: 90 (seconds), 90s, 15m, 2h, 1.5d       |
| workers          | yes      | N (fixed size) or MIN-MAX (elastic: runs with as few as MIN)                 |
| cards_per_worker | yes      | cards of each worker, all on one node                                        |
| accelerators     | yes      | models of the pool it may run on, most preferred first, space or | between   |
| mode             | no       | Homogeneous (default: every worker on one model) or Mixed                    |
| steps            | *        | training steps to its end (needs step_time)                                  |
| step_time        | *        | a step's time at MAX workers on the best of its accelerators: 1.5s, 2m       |
| duration         | *        | training time at MAX workers on the best of its accelerators (instead of     |
|                  |          | steps; cut in steps of step_time, 1 s by default)                            |
| priority         | no       | queue priority, -1000..1000 (higher first), default 0                        |

*: steps and step_time, or duration. Each problem names the line (CSV) or the entry (YAML) and the column.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from cardpool.api.base import DNS_LABEL
from cardpool.api.cardpool import CardPoolSpec

from .inputs import InputError, fail, read_text, read_yaml, refusals
from .trainer import TrainerModel
from .world import JobTrace, job_spec

COLUMNS = ("name", "arrival", "workers", "cards_per_worker", "accelerators", "mode", "steps", "step_time",
           "duration", "priority")
REQUIRED = ("arrival", "workers", "cards_per_worker", "accelerators")
MODES = ("Homogeneous", "Mixed")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")
WORKERS = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
DEFAULT_STEP_S = 1.0
"""A job given by its duration is cut into steps of this (what a fault can lose beyond a save is a step)."""


class RowError(Exception):
    """A problem with one column of one row; the loader names the row."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"column {column}: {message}")


@dataclass(frozen=True)
class Row:
    where: str
    """How a message names the row: `line 4` (CSV) or `jobs[2]` (YAML)."""
    values: dict[str, object]


def load_trace(path: str | Path, pool: CardPoolSpec) -> list[JobTrace]:
    """The jobs of the trace, in arrival order, each checked against the pool."""
    rows = _csv_rows(path) if str(path).lower().endswith(".csv") else _yaml_rows(path)
    if not rows:
        raise InputError(f"{path}: no jobs in the trace")
    models = {g.accelerator.model: g.accelerator.cards_per_node for g in pool.node_groups}
    jobs, problems, names = [], [], {}
    for index, row in enumerate(rows, 1):
        label = f"{row.where} ({row.values.get('name') or default_name(index)})"
        try:
            job = parse_row(row.values, index, models)
            if job.name in names:
                raise RowError("name", f"{job.name!r} is already the name of {names[job.name]}")
            names[job.name] = row.where
            _as_training_job(job)
            jobs.append(job)
        except RowError as exc:
            problems.append(f"{label}, {exc}")
    if problems:
        raise fail(path, problems)
    return sorted(jobs, key=lambda j: j.arrival_s)


def _csv_rows(path: str | Path) -> list[Row]:
    text = read_text(path)
    # comments and blank lines are dropped but counted, so a message names the line an editor shows
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV: {exc}") from exc
    header = [h.strip().lower() for h in records[0]]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(f"{path}: line {lines[0][0]}: unknown column(s) {', '.join(map(repr, unknown))} "
                         f"(columns: {', '.join(COLUMNS)})")
    if len(set(header)) != len(header):
        raise InputError(f"{path}: line {lines[0][0]}: a column is named twice in the header")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}: line {lines[0][0]}: the header lacks the required column(s) {', '.join(missing)}")
    rows = []
    for (number, _), record in zip(lines[1:], records[1:], strict=True):
        if len(record) > len(header):
            raise InputError(f"{path}: line {number}: {len(record)} cells for {len(header)} columns")
        rows.append(Row(f"line {number}", {h: v.strip() for h, v in zip(header, record, strict=False)
                                           if v.strip()}))
    return rows


def _yaml_rows(path: str | Path) -> list[Row]:
    data = read_yaml(path)
    if isinstance(data, dict) and set(data) == {"jobs"}:
        data = data["jobs"]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of jobs (or jobs: [...]), got {type(data).__name__}")
    rows = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: jobs[{i}]: expected a mapping of columns, got {type(entry).__name__}")
        unknown = [str(k) for k in entry if k not in COLUMNS]
        if unknown:
            raise InputError(f"{path}: jobs[{i}]: unknown column(s) {', '.join(map(repr, unknown))} "
                             f"(columns: {', '.join(COLUMNS)})")
        rows.append(Row(f"jobs[{i}]", {k: v for k, v in entry.items() if v is not None and v != ""}))
    return rows


def default_name(index: int) -> str:
    return f"job-{index:03d}"


def duration(value: object, column: str) -> float:
    """Seconds from 90, "90s", "15m", "2h" or "1.5d"."""
    if isinstance(value, bool):
        raise RowError(column, f"expected a duration such as 90s, 15m, 2h or 1.5d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = DURATION.match(str(value))
        if match is None:
            raise RowError(column, f"expected a duration such as 90s, 15m, 2h or 1.5d, got {value!r}")
        seconds = float(match[1]) * UNITS[match[2] or "s"]
    if not math.isfinite(seconds) or seconds < 0:
        raise RowError(column, f"must be a duration of 0 or more, got {value!r}")
    return seconds


def whole(value: object, column: str, low: int, high: int) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[-+]?\d+", text):
        raise RowError(column, f"expected a whole number, got {value!r}")
    number = int(text)
    if not low <= number <= high:
        raise RowError(column, f"must be between {low} and {high}, got {number}")
    return number


def models_of(value: object) -> tuple[str, ...]:
    items: Iterable[object] = value if isinstance(value, list) else re.split(r"[\s|]+", str(value).strip())
    return tuple(str(m).strip() for m in items if str(m).strip())


def parse_row(values: dict[str, object], index: int, models: dict[str, int]) -> JobTrace:
    """One job from its columns; `models`: the pool's accelerator models and their cards per node."""
    for column in REQUIRED:
        if column not in values:
            raise RowError(column, "required, and missing")
    name = str(values.get("name", default_name(index)))
    if len(name) > 63 or not re.match(DNS_LABEL, name):
        raise RowError("name", f"must be a DNS label (lower case letters, digits and -, at most 63), got {name!r}")
    arrival = duration(values["arrival"], "arrival")
    match = WORKERS.match(str(values["workers"]))
    if match is None or isinstance(values["workers"], bool):
        raise RowError("workers", f"expected N or MIN-MAX (e.g. 4 or 2-8), got {values['workers']!r}")
    low, high = int(match[1]), int(match[2] or match[1])
    if not 1 <= low <= high:
        raise RowError("workers", f"MIN must be at least 1 and at most MAX, got {values['workers']!r}")
    cards = whole(values["cards_per_worker"], "cards_per_worker", 1, 64)
    accelerators = models_of(values["accelerators"])
    if not accelerators:
        raise RowError("accelerators", "name at least one accelerator model of the pool")
    unknown = [m for m in accelerators if m not in models]
    if unknown:
        raise RowError("accelerators", f"the pool has no {', '.join(unknown)} (its models: {', '.join(models)})")
    if len(set(accelerators)) != len(accelerators):
        raise RowError("accelerators", f"a model is named twice in {' '.join(accelerators)}")
    if all(models[m] < cards for m in accelerators):
        raise RowError("cards_per_worker", f"{cards} cards per worker fit on no node of "
                       f"{', '.join(accelerators)} ({', '.join(str(models[m]) for m in accelerators)} cards a node)")
    mode = next((m for m in MODES if m.lower() == str(values.get("mode", "Homogeneous")).strip().lower()), None)
    if mode is None:
        raise RowError("mode", f"expected Homogeneous or Mixed, got {values['mode']!r}")
    if mode == "Mixed" and len(accelerators) < 2:
        raise RowError("accelerators", "mode Mixed needs at least two models")
    steps, step_s = _length(values)
    priority = whole(values.get("priority", 0), "priority", -1000, 1000)
    return JobTrace(name, arrival, cards, low, high, accelerators, steps, step_s, priority, mode)


def _length(values: dict[str, object]) -> tuple[int, float]:
    """(steps, seconds a step) from steps and step_time, or from duration."""
    step_s = duration(values["step_time"], "step_time") if "step_time" in values else None
    if step_s is not None and step_s <= 0:
        raise RowError("step_time", "must be more than 0")
    if "duration" in values:
        if "steps" in values:
            raise RowError("duration", "give steps (with step_time) or duration, not both")
        length = duration(values["duration"], "duration")
        if length <= 0:
            raise RowError("duration", "must be more than 0")
        step_s = step_s or DEFAULT_STEP_S
        return max(math.ceil(length / step_s - 1e-9), 1), step_s
    if "steps" not in values:
        raise RowError("steps", "give steps (with step_time) or duration: the job's length is missing")
    if step_s is None:
        raise RowError("step_time", "required with steps, and missing")
    return whole(values["steps"], "steps", 1, 10**12), step_s


def _as_training_job(job: JobTrace) -> None:
    """The TrainingJob the simulation applies for it must be one the API accepts."""
    try:
        job_spec(job, TrainerModel())
    except ValidationError as exc:
        raise RowError("(all)", "the TrainingJob it makes is refused: " + "; ".join(refusals(exc, "spec"))) from exc
