"""What the `cardpool` command shows, as pure functions of the objects it read: rich renderables for the
terminal (tested against golden text) and plain dicts for -o json|yaml."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PHASE_STYLE = {"Running": "green", "Succeeded": "green", "Starting": "cyan", "Queued": "yellow",
               "Restarting": "yellow", "Suspended": "dim", "Failed": "red"}


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    seconds = int((now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _ready(obj: dict) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {})


def job_row(job: dict) -> dict:
    """One job as the `jobs` table and -o json show it."""
    status = job.get("status") or {}
    restarts = status.get("restarts") or {}
    checkpoint = status.get("lastCheckpoint") or {}
    return {"namespace": job["metadata"]["namespace"], "name": job["metadata"]["name"],
            "pool": job["spec"]["pool"], "phase": status.get("phase") or "Queued",
            "size": status.get("size") or "", "accelerator": status.get("accelerator") or "",
            "attempt": status.get("attempt", 0),
            "restarts": restarts.get("counted", 0) + restarts.get("uncounted", 0),
            "checkpoint": checkpoint.get("step"), "reason": _ready(job).get("reason", "")}


def jobs_table(jobs: list[dict], now: datetime | None = None) -> Table:
    now = now or datetime.now(UTC)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAMESPACE", "NAME", "POOL", "PHASE", "SIZE", "ACCELERATOR", "ATTEMPT", "RESTARTS",
                   "CHECKPOINT", "REASON", "AGE"):
        table.add_column(column)
    for job in jobs:
        row = job_row(job)
        table.add_row(row["namespace"], row["name"], row["pool"],
                      Text(row["phase"], style=PHASE_STYLE.get(row["phase"], "")), row["size"], row["accelerator"],
                      str(row["attempt"]), str(row["restarts"]),
                      "-" if row["checkpoint"] is None else str(row["checkpoint"]), row["reason"],
                      _age(job["metadata"].get("creationTimestamp"), now))
    return table


def _advice(advice: dict | None) -> str:
    if not advice:
        return "- (advised once a checkpoint reports its saveSeconds)"
    return (f"{advice['intervalSeconds']} s (Young/Daly: {advice['saveSeconds']:g} s saves, a fault every "
            f"{advice['mtbfSeconds'] / 3600:.1f} h on its {advice['nodes']} nodes, {advice['faults']} observed)")


def pool_rows(pool: dict) -> list[dict]:
    return [{"pool": pool["metadata"]["name"], **g} for g in (pool.get("status") or {}).get("groups", [])]


def pool_table(pool: dict) -> Table:
    table = Table(title=f"CardPool {pool['metadata']['name']}", box=None, pad_edge=False, header_style="bold",
                  title_justify="left")
    # OTHER: cards held by pods cardpool does not manage, neither allocated to its jobs nor free for them
    # FAULTS: faults of the group's nodes counted since the operator began watching it (checkpoint advice)
    for column in ("GROUP", "MODEL", "NODES", "CARDS", "ALLOCATED", "OTHER", "FREE", "UNHEALTHY", "DRAINING",
                   "FAULTS", "LARGEST BLOCK", "FRAG%"):
        table.add_column(column, justify="left" if column in ("GROUP", "MODEL") else "right")
    for g in (pool.get("status") or {}).get("groups", []):
        table.add_row(g["name"], g.get("model", ""), str(g.get("nodes", 0)), str(g.get("cards", 0)),
                      str(g.get("allocatedCards", 0)), str(g.get("otherCards", 0)), str(g.get("freeCards", 0)),
                      str(g.get("unhealthyCards", 0)), str(g.get("drainingNodes", 0)),
                      str((g.get("faults") or {}).get("count", 0)),
                      str(g.get("largestFreeBlock", 0)), str(g.get("fragmentationPercent", 0)))
    return table


def queue_rows(queues: list[dict]) -> list[dict]:
    """Each TenantQueue's figures per model (a queue with no model yet: one row of zeros)."""
    rows = []
    for q in sorted(queues, key=lambda q: q["metadata"]["name"]):
        spec, status = q.get("spec") or {}, q.get("status") or {}
        ready = _ready(q)
        base = {"queue": q["metadata"]["name"], "parent": spec.get("parent") or "", "weight": spec.get("weight", 1),
                "running": status.get("runningJobs", 0), "waiting": status.get("waitingJobs", 0),
                "ready": ready.get("status", "Unknown"),
                "problem": ready.get("message", "") if ready.get("status") == "False" else ""}
        models = status.get("models") or [{"model": m["model"], "guaranteed": m.get("guaranteed", 0)}
                                          for m in spec.get("quotas", [])] or [{"model": ""}]
        for m in models:
            rows.append({**base, "model": m["model"], "guaranteed": m.get("guaranteed", 0), "used": m.get("used", 0),
                         "borrowed": m.get("borrowed", 0), "lent": m.get("lent", 0)})
    return rows


def queues_table(queues: list[dict]) -> Table:
    """Per queue and model: guaranteed, used, borrowed, lent; its running and waiting jobs."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("QUEUE", "PARENT", "WEIGHT", "MODEL", "GUARANTEED", "USED", "BORROWED", "LENT", "RUNNING",
                   "WAITING", "READY"):
        table.add_column(column, justify="right" if column in ("WEIGHT", "GUARANTEED", "USED", "BORROWED", "LENT",
                                                                 "RUNNING", "WAITING") else "left")
    for row in queue_rows(queues):
        table.add_row(row["queue"], row["parent"] or "-", str(row["weight"]), row["model"] or "-",
                      str(row["guaranteed"]), str(row["used"]), str(row["borrowed"]), str(row["lent"]),
                      str(row["running"]), str(row["waiting"]),
                      row["ready"] + (f" ({row['problem']})" if row["problem"] else ""))
    return table


def status_view(pools: list[dict], jobs: list[dict], now: datetime | None = None) -> Group:
    """Pools and jobs at a glance."""
    summary = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("POOL", "GROUPS", "CARDS", "FREE", "UNHEALTHY", "FRAG%", "READY", "JOBS"):
        summary.add_column(column)
    for pool in pools:
        status = pool.get("status") or {}
        mine = [j for j in jobs if j["spec"]["pool"] == pool["metadata"]["name"]]
        phases: dict[str, int] = {}
        for j in mine:
            phase = (j.get("status") or {}).get("phase") or "Queued"
            phases[phase] = phases.get(phase, 0) + 1
        summary.add_row(pool["metadata"]["name"], str(status.get("groupCount", 0)), str(status.get("cards", 0)),
                        str(status.get("freeCards", 0)), str(status.get("unhealthyCards", 0)),
                        str(status.get("fragmentationPercent", 0)), _ready(pool).get("status", "Unknown"),
                        ", ".join(f"{n} {p}" for p, n in sorted(phases.items())) or "-")
    return Group(summary, Text(""), jobs_table(jobs, now))


def describe_job(job: dict, events: list[dict], now: datetime | None = None) -> Group:
    """A job's story: where it stands, each attempt (size, where it resumed, why it ended), placement per
    group, conditions, progress, recent events."""
    now = now or datetime.now(UTC)
    status = job.get("status") or {}
    meta = job["metadata"]
    parts: list = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    restarts = status.get("restarts") or {}
    checkpoint = status.get("lastCheckpoint")
    failure = status.get("lastFailure")
    for key, value in (("Name", f"{meta['namespace']}/{meta['name']}"), ("Pool", job["spec"]["pool"]),
                       ("Queue", job["spec"].get("queue") or "- (its namespace's, if a TenantQueue maps it)"),
                       ("Phase", status.get("phase") or "Queued"), ("Reason", _ready(job).get("reason", "")),
                       ("Message", _ready(job).get("message", "")), ("Size", status.get("size") or "-"),
                       ("Accelerator", status.get("accelerator") or "-"), ("Attempt", str(status.get("attempt", 0))),
                       ("Restarts", f"{restarts.get('counted', 0)} counted, {restarts.get('uncounted', 0)} not "
                                    f"counted, {restarts.get('scaling', 0)} to resize"),
                       ("Checkpoint", f"step {checkpoint['step']} at {checkpoint['uri']}" if checkpoint else "-"),
                       ("Save every", _advice(status.get("checkpointAdvice"))),
                       ("Last failure", f"{failure['reason']} (attempt {failure['attempt']}): {failure['message']}"
                        if failure else "-")):
        head.add_row(key, value)
    parts.append(head)
    progress = status.get("progress")
    if progress and progress.get("totalSteps"):
        parts += [Text(f"\nProgress: step {progress['step']} of {progress['totalSteps']}", style="bold"),
                  ProgressBar(total=progress["totalSteps"], completed=progress["step"], width=50)]
    elif progress:
        parts.append(Text(f"\nProgress: step {progress['step']}", style="bold"))
    attempts = Table(title="Attempts", box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column in ("ATTEMPT", "WORKERS", "ACCELERATOR", "RESUMED FROM", "STARTED", "ENDED", "WHY"):
        attempts.add_column(column)
    for a in status.get("history", []):
        attempts.add_row(str(a["attempt"]), str(a["workers"]), a.get("accelerator", ""),
                         "-" if a.get("resumedFromStep") is None else f"step {a['resumedFromStep']}",
                         _age(a.get("startTime"), now) + " ago", _age(a["endTime"], now) + " ago"
                         if a.get("endTime") else "running", a.get("endReason") or "")
    parts += [Text(""), attempts]
    placement = Table(title="Placement", box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column in ("GROUP", "ACCELERATOR", "RANKS", "THROUGHPUT", "BATCH SHARE", "NODES"):
        placement.add_column(column)
    for g in status.get("placement", []):
        ranks = f"{g.get('firstRank', 0)}-{g.get('firstRank', 0) + g['workers'] - 1}"
        placement.add_row(g["group"], g["accelerator"], ranks, str(g.get("relativeThroughput", 1.0)),
                          "-" if g.get("batchShare") is None else str(g["batchShare"]), ",".join(g.get("nodes", [])))
    parts += [Text(""), placement]
    conditions = Table(title="Conditions", box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column in ("TYPE", "STATUS", "REASON", "MESSAGE"):
        conditions.add_column(column)
    for c in status.get("conditions", []):
        conditions.add_row(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
    parts += [Text(""), conditions]
    recent = Table(title="Events", box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column in ("AGE", "TYPE", "REASON", "MESSAGE"):
        recent.add_column(column)
    for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")[-15:]:
        recent.add_row(_age(e.get("lastTimestamp"), now), e.get("type", ""), e.get("reason", ""),
                       e.get("message", ""))
    parts += [Text(""), recent]
    return Group(*parts)
