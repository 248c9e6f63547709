"""cardpool at scale, on a private local cluster: 1,250 KWOK nodes / 10,000 cards in 4 groups (e2e/fleets/
scale.yaml; --quick takes a fifth of each group and smaller counts), one CardPool over all of them.

Phases, in order (progress on stderr, one JSON object as the last stdout line):
1. gang:     a 64 x 8 gang (32 x 8 with --quick) on H800, submitted first and left running throughout.
2. burst:    a seeded mix of 400 TrainingJobs (80), submitted at once by 16 threads: 50% 1 x 1 card, 20% 1 x 8,
             20% 2-8 x 8, 10% 16-64 x 8, sized so the jobs and the gang ask for ~90% of the cards, with
             accelerator preference lists. `submit_to_running_s`: from the first create until every admitted
             job is Running (jobs left Queued for lack of room, Ready reason NoCapacity/Reserved/
             BehindReservation/Unplaceable, are counted in `jobs_queued`, not waited for). `pods_per_s`: the
             admitted jobs' pods / that time.
3. ceiling:  the burst's jobs are deleted; the same pods (same nodes, card requests, required node affinity by
             matchFields metadata.name, label count) are created as plain pods by 32 threads under a token
             bucket of CARDPOOL_KUBE_QPS/CARDPOOL_KUBE_BURST (default 300/500): `ceiling_pods_per_s`, `ratio`.
4. fill:     ~1,000 jobs of one-card workers: ~9,500 cardpool pods Running (a few H800 nodes stay free for
             the gang's recovery).
5. other:    --other-pods plain pods (no cards, 10m cpu) bound straight to nodes across the fleet.
6. idle/churn: a quiet window (--idle-seconds), then one as long where a job is deleted or submitted every
             2 s. From the operator's /metrics: the pass-duration histogram (cardpool_pass_duration_seconds,
             else cardpool_reconcile_seconds: `pass_metric`) per window -> `pass_ms_median`, `pass_ms_p95` as
             Prometheus' histogram_quantile computes them over both windows; over the quiet window the
             operator's CPU (/proc/<pid>/stat) and API writes per second (cardpool_api_requests_total without
             leases, else an approximation from kube-apiserver's apiserver_request_total); its RSS after it;
             the max of cardpool_event_loop_lag_seconds if exported.
7. recovery: the node of the gang's rank 1 turns NotReady (localkube.faults); from Ready=False seen in the
             API until all pods of the next attempt run, polled every 50 ms: `recovery_s_steady`. Then the
             same while ~4,000 pods (800) of new jobs are being created, after deleting fill jobs to make
             room, the fault injected ~1 s into their submission: `recovery_s_burst`.
Setup waits until kube-controller-manager has lifted the not-ready taints of every new node (a few nodes a
second: minutes at 1,250 nodes); before that kube-scheduler refuses pods bound to those nodes. The jobs get
startupTimeoutSeconds 3600, so a gang queued behind thousands of pods is not restarted for being slow.
A phase that fails ends the run: the JSON then carries what was measured and `error`; the exit code is 1.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from cardpool.api.keys import GROUP, LABEL_ATTEMPT, LABEL_JOB, LABEL_RANK, VERSION
from localkube import faults
from localkube import fleet as fleets
from localkube.config import FLEETS
from localkube.waiting import NotYet, wait_for

from .cluster import BenchCluster, bench_cluster, new_namespace

POOL = "scale"
PORT_OFFSET = 240
SET_LABEL = "bench.cardpool.io/set"
RELEASE_LABEL = "bench.cardpool.io/release"
# A job "kept Queued for lack of room": its Ready condition's reason (cardpool.core.queue).
NO_ROOM = ("NoCapacity", "Reserved", "BehindReservation", "Unplaceable")
PASS_METRIC, PASS_FALLBACK = "cardpool_pass_duration_seconds", "cardpool_reconcile_seconds"
LAG_METRIC = "cardpool_event_loop_lag_seconds"
API_METRIC = "cardpool_api_requests_total"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
RECOVERY_POLL_S = 0.05
# A wait's check failing with these is a bug in this file, not "not yet": stop at once.
FATAL = (TypeError, AttributeError, NameError)
CEILING_THREADS = 32
SUBMIT_THREADS = 16
# A gang queued behind thousands of pods at kube-scheduler's 50 binds/s may wait longer than the default
# 600 s to start; a restart for that would blur every figure after it.
STARTUP_TIMEOUT_S = 3600
# kube-controller-manager's node monitor grace period here. localkube's 40 s is too short at 1,250 nodes on 2
# cores: KWOK renews every node's lease (about 125 writes a second) through an API server busy with thousands
# of pods, renewals fall behind, nodes turn Ready=Unknown and cardpool rightly drains them and restarts their
# gangs; the first full run collapsed that way (every node drained once, thousands of pods restarted). Real
# kubelets do not share two cores with the control plane. The injected faults (Ready=False) do not depend on it.
NODE_MONITOR_GRACE = "300s"
# Preference lists per home group: most jobs may fall back within the vendor.
PREFERENCES = {"h800": (["H800", "A100"], ["H800"]), "a100": (["A100", "H800"], ["A100"]),
               "ascend910b": (["Ascend910B"],), "mlu590": (["MLU590"],)}


@dataclass(frozen=True)
class Sizes:
    fleet_scale: float  # share of each group of scale.yaml
    burst_jobs: int
    gang_workers: int
    steady_jobs: int  # jobs at the steady state, the gang included
    spare_nodes: int  # H800 nodes left free at the steady state, for the gang's next attempt
    burst2_pods: int
    other_pods: int
    idle_s: float
    wait_s: float  # deadline of each big wait


FULL = Sizes(1.0, 400, 64, 1000, 8, 4000, 20000, 30.0, 1800.0)
QUICK = Sizes(0.2, 80, 32, 200, 4, 800, 1000, 10.0, 300.0)


# ---- small tools ---------------------------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        print(f"[scale {time.monotonic() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


log = Log()


class TokenBucket:
    """Client-side rate limit as client-go's: `qps` tokens a second, at most `burst` saved up."""

    def __init__(self, qps: float, burst: int):
        self.qps, self.burst = qps, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.qps
            time.sleep(wait)


class Progress:
    """Rate-limited progress lines from inside a wait's check."""

    def __init__(self, every: float = 10.0):
        self.every, self.last = every, 0.0

    def __call__(self, msg: str) -> None:
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            log(msg)


def _api(bench: BenchCluster) -> client.ApiClient:
    """A client of its own with a connection pool for the submitting threads."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(bench.cluster.kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = CEILING_THREADS + 8
    return client.ApiClient(configuration)


def _drain(resp) -> bytes:
    """Read a response taken with _preload_content=False and give its connection back to the pool."""
    try:
        return resp.data
    finally:
        resp.release_conn()


def _raw(fn: Callable, *args, **kwargs) -> dict:
    """Call as plain JSON, no model objects: listing thousands of pods must stay cheap."""
    kwargs = {k: v for k, v in kwargs.items() if v not in (None, "")}
    return json.loads(_drain(fn(*args, _preload_content=False, _request_timeout=60, **kwargs)))


def _pods(api: client.ApiClient, ns: str, **query) -> dict:
    return _raw(client.CoreV1Api(api).list_namespaced_pod, ns, **query)


def _jobs(api: client.ApiClient, ns: str, **query) -> dict:
    return _raw(client.CustomObjectsApi(api).list_namespaced_custom_object, GROUP, VERSION, ns, "trainingjobs",
                **query)


def _list_all(lister: Callable[..., dict], *args, **query) -> list[dict]:
    items: list[dict] = []
    token = None
    while True:
        page = lister(*args, limit=2000, _continue=token, **query)
        items += page.get("items", [])
        token = page.get("metadata", {}).get("continue")
        if not token:
            return items


def _not_running(api: client.ApiClient, ns: str, selector: str = "", cap: int = 500) -> int:
    """Pods of `ns` not Running, counted up to `cap` (a cheap poll of thousands of pods)."""
    page = _pods(api, ns, label_selector=selector, field_selector="status.phase!=Running", limit=cap)
    return len(page.get("items", []))


def _parallel(fn: Callable, items: Iterable, threads: int) -> list:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def _create(fn: Callable, *args) -> None:
    """Create, retrying a refused or failed call a few times (a busy API server may answer 429/5xx)."""
    for attempt in range(6):
        try:
            _drain(fn(*args, _preload_content=False, _request_timeout=60))
            return
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status not in (0, 429, 500, 502, 503, 504) or attempt == 5:
                raise
        except OSError:
            if attempt == 5:
                raise
        time.sleep(0.2 * 2**attempt)


# ---- the fleet, the pool, the jobs ---------------------------------------------------------------------------


def scaled_fleet(scale: float) -> fleets.Fleet:
    fleet = fleets.Fleet.load(FLEETS / "scale.yaml")
    if scale == 1.0:
        return fleet
    groups = [g.model_copy(update={"nodes": max(1, round(g.nodes * scale))}) for g in fleet.groups]
    return fleet.model_copy(update={"name": "scale-quick", "groups": groups})


def pool_manifest(fleet: fleets.Fleet) -> dict:
    selectors = {"h800": {"nvidia.com/gpu.product": "NVIDIA-H800"},
                 "a100": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                 "ascend910b": {"node.kubernetes.io/npu.chip.name": "910B"},
                 "mlu590": {"cambricon.com/mlu.model": "MLU590"}}
    groups = [{"name": g.name, "nodeSelector": selectors.get(g.name, {fleets.GROUP_LABEL: g.name}),
               "accelerator": {"vendor": g.vendor, "model": g.model, "resource": g.resource,
                               "cardsPerNode": g.cards_per_node},
               "topologyKeys": [fleets.RACK_LABEL, fleets.SPINE_LABEL]} for g in fleet.groups]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CardPool", "metadata": {"name": POOL},
            "spec": {"nodeGroups": groups, "health": {"probationSeconds": 0, "maxDrainedPercent": 10}}}


@dataclass(frozen=True)
class JobShape:
    name: str
    workers: int
    cards: int
    accelerators: tuple[str, ...]
    home: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        return self.workers * self.cards


def job_manifest(job: JobShape, set_name: str) -> dict:
    labels = {SET_LABEL: set_name, **dict(job.labels)}
    container = {"name": "trainer", "image": "registry.example.com/train:1",
                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
            "metadata": {"name": job.name, "labels": labels},
            "spec": {"pool": POOL, "framework": "PyTorch", "startupTimeoutSeconds": STARTUP_TIMEOUT_S,
                     "workers": {"cardsPerWorker": job.cards, "size": {"min": job.workers, "max": job.workers},
                                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
                     "placement": {"accelerators": list(job.accelerators)}}}


def _scale_excess(sizes: list[int], lows: list[int], budget: int) -> list[int]:
    """Shrink each size's excess over its minimum by one factor so the sizes sum to `budget` (at least the
    minima), largest remainders first, as a seeded mix is "scaled" to a target."""
    low, excess = sum(lows), [s - lo for s, lo in zip(sizes, lows, strict=True)]
    room = max(budget - low, 0)
    if sum(excess) <= room:
        return sizes
    factor = room / sum(excess)
    exact = [e * factor for e in excess]
    out = [lo + int(x) for lo, x in zip(lows, exact, strict=True)]
    left = budget - sum(out)
    for i in sorted(range(len(out)), key=lambda i: exact[i] - int(exact[i]), reverse=True)[:max(left, 0)]:
        out[i] += 1
    return out


def _assign(jobs: list[tuple[int, int]], room: dict[str, int], cap: dict[str, int]) -> list[str]:
    """A home group per (workers, cards) job, largest first, to the group left emptiest (by share) that still
    has the cards; what fits nowhere goes to the roomiest group (and will wait there)."""
    homes = [""] * len(jobs)
    for i in sorted(range(len(jobs)), key=lambda i: -jobs[i][0] * jobs[i][1]):
        need = jobs[i][0] * jobs[i][1]
        fits = [g for g in room if room[g] >= need]
        home = max(fits or room, key=lambda g: ((room[g] - need) / cap[g], g))
        room[home] -= need
        homes[i] = home
    return homes


def burst_mix(rng: random.Random, count: int, target_cards: int, room: dict[str, int],
              cap: dict[str, int]) -> list[JobShape]:
    """50% 1 x 1, 20% 1 x 8, 20% 2-8 x 8, 10% 16-64 x 8, the multi-worker sizes scaled to `target_cards`."""
    n_single, n_node, n_mid = count // 2, count // 5, count // 5
    n_big = count - n_single - n_node - n_mid
    mid = [rng.randint(2, 8) for _ in range(n_mid)]
    big = [rng.randint(16, 64) for _ in range(n_big)]
    fixed = n_single + 8 * n_node
    scaled = _scale_excess(mid + big, [2] * n_mid + [16] * n_big, (target_cards - fixed) // 8)
    shapes = [(1, 1)] * n_single + [(1, 8)] * n_node + [(w, 8) for w in scaled]
    rng.shuffle(shapes)
    homes = _assign(shapes, dict(room), cap)
    return [JobShape(f"b{i:03d}-{w}x{c}", w, c, tuple(rng.choice(PREFERENCES[h])), h)
            for i, ((w, c), h) in enumerate(zip(shapes, homes, strict=True))]


def one_card_mix(rng: random.Random, prefix: str, count: int, room: dict[str, int],
                 release_cards: int = 0) -> tuple[list[JobShape], dict[str, int]]:
    """`count` jobs of one-card workers filling `room` exactly: half 1 x 1, the rest 2-64 workers scaled to fit.
    With `release_cards`, jobs outside H800 worth at least that many cards are labelled for release (deleted
    later to make room); returns the released cards per group too."""
    total = sum(room.values())
    count = min(count, total)
    singles = count // 2
    multi = [rng.randint(2, 64) for _ in range(count - singles)]
    budget = total - singles
    scaled = _scale_excess(multi, [2] * len(multi), budget)
    if sum(scaled) < budget and scaled:  # too few jobs to fill: grow them evenly
        short = budget - sum(scaled)
        for i in range(short):
            scaled[i % len(scaled)] += 1
    sizes = [1] * singles + scaled
    rng.shuffle(sizes)
    homes = _assign([(w, 1) for w in sizes], dict(room), {g: max(c, 1) for g, c in room.items()})
    models = {"h800": "H800", "a100": "A100", "ascend910b": "Ascend910B", "mlu590": "MLU590"}
    released: dict[str, int] = {}
    jobs = []
    for i, (w, h) in enumerate(zip(sizes, homes, strict=True)):
        labels: tuple[tuple[str, str], ...] = ()
        if release_cards > sum(released.values()) and h != "h800" and w > 1:
            labels = ((RELEASE_LABEL, "true"),)
            released[h] = released.get(h, 0) + w
        jobs.append(JobShape(f"{prefix}{i:04d}-{w}x1", w, 1, (models.get(h, h),), h, labels))
    return jobs, released


# ---- watching jobs -------------------------------------------------------------------------------------------


@dataclass
class JobStates:
    running: dict[str, int] = field(default_factory=dict)  # name -> workers
    queued: list[str] = field(default_factory=list)  # kept Queued for lack of room
    other: dict[str, str] = field(default_factory=dict)  # name -> phase/reason, not decided yet

    @property
    def pods(self) -> int:
        return sum(self.running.values())


def job_states(api: client.ApiClient, ns: str, selector: str = "") -> JobStates:
    out = JobStates()
    for job in _list_all(_jobs, api, ns, label_selector=selector):
        name, status = job["metadata"]["name"], job.get("status") or {}
        phase = status.get("phase")
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
        if phase == "Running":
            out.running[name] = status.get("workers") or job["spec"]["workers"]["size"]["min"]
        elif phase == "Queued" and ready.get("reason") in NO_ROOM:
            out.queued.append(name)
        else:
            out.other[name] = f"{phase}/{ready.get('reason')}"
    return out


def wait_jobs_settled(api: client.ApiClient, ns: str, expected: int, what: str, timeout: float,
                      selector: str = "", interval: float = 0.5) -> JobStates:
    """Until all `expected` jobs are Running or kept Queued for lack of room."""
    progress = Progress()

    def settled() -> JobStates:
        states = job_states(api, ns, selector)
        seen = len(states.running) + len(states.queued) + len(states.other)
        progress(f"  {what}: {len(states.running)} Running ({states.pods} pods), {len(states.queued)} queued "
                 f"for room, {len(states.other)} other of {expected}")
        if seen < expected or states.other:
            sample = dict(list(states.other.items())[:5])
            raise NotYet(f"{seen}/{expected} jobs seen; {len(states.running)} Running, {len(states.queued)} "
                         f"queued for room, {len(states.other)} undecided, e.g. {sample}")
        return states

    return wait_for(what, settled, timeout=timeout, interval=interval, fatal=FATAL)


def submit(custom: client.CustomObjectsApi, ns: str, jobs: list[JobShape], set_name: str,
           threads: int = SUBMIT_THREADS) -> None:
    _parallel(lambda j: _create(custom.create_namespaced_custom_object, GROUP, VERSION, ns, "trainingjobs",
                                job_manifest(j, set_name)), jobs, threads)


def delete_jobs(bench: BenchCluster, api: client.ApiClient, ns: str, selector: str, what: str,
                timeout: float) -> None:
    """Delete the jobs, then (once they are gone) their pods, with grace 0: the garbage collector's 20
    requests a second would take minutes. Waits until the pods are gone; services and config maps are left
    to the garbage collector."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", label_selector=selector)
    wait_for(f"the {what} jobs to be deleted",
             lambda: not _jobs(api, ns, label_selector=selector, limit=1)["items"], timeout=timeout,
             fatal=FATAL)
    _drain(core.delete_collection_namespaced_pod(ns, label_selector=selector, grace_period_seconds=0,
                                                 _preload_content=False))
    progress = Progress()

    def gone() -> bool:
        left = len(_pods(api, ns, label_selector=selector, limit=500)["items"])
        progress(f"  {what}: {left}{'+' if left == 500 else ''} pods left")
        if left:
            raise NotYet(f"{left}{'+' if left == 500 else ''} pods left")
        return True

    wait_for(f"the pods of the {what} jobs to go", gone, timeout=timeout, interval=1.0, fatal=FATAL)


# ---- metrics -------------------------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def buckets(samples: dict, metric: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram, summed over its other labels: upper bound -> count."""
    out: dict[float, float] = {}
    for labels, value in samples.get(f"{metric}_bucket", []):
        le = float(labels["le"])
        out[le] = out.get(le, 0.0) + value
    return out


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the q-th rank; the
    lowest bucket starts at 0; a rank in the +Inf bucket gives the highest finite bound."""
    bounds = sorted(cumulative)
    if not bounds or not math.isinf(bounds[-1]) or cumulative[bounds[-1]] <= 0:
        return math.nan
    total = cumulative[bounds[-1]]
    rank = q * total
    i = next(k for k, le in enumerate(bounds) if cumulative[le] >= rank)
    le = bounds[i]
    if math.isinf(le):
        return bounds[-2] if len(bounds) > 1 else math.nan
    lower = bounds[i - 1] if i > 0 else 0.0
    below = cumulative[bounds[i - 1]] if i > 0 else 0.0
    if i == 0 and le <= 0:
        return le
    inside = cumulative[le] - below
    return lower + (le - lower) * ((rank - below) / inside if inside else 0.0)


def _delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def _add(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
    return {le: a.get(le, 0.0) + b.get(le, 0.0) for le in a.keys() | b.keys()}


def api_writes(samples: dict) -> float | None:
    """The operator's own writes (cardpool_api_requests_total, leases excluded), None if not exported."""
    rows = samples.get(API_METRIC)
    if rows is None:
        return None
    return sum(v for labels, v in rows if labels.get("verb") in WRITE_VERBS and labels.get("resource") != "leases")


# What the operator writes, for the approximation from kube-apiserver's counters (which have no client label).
OPERATOR_RESOURCES = ("trainingjobs", "cardpools", "checkpoints", "pods", "services", "configmaps", "events")


def apiserver_writes(samples: dict) -> float:
    return sum(v for labels, v in samples.get("apiserver_request_total", [])
               if labels.get("verb", "").lower() in WRITE_VERBS and labels.get("resource") in OPERATOR_RESOURCES)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Scraper:
    """Samples the operator's metrics once a second in the background: the event-loop lag's maximum (a gauge
    of the loop's last wake-up, so the maximum is a sampled one). Paused while `quiet` is set, so the idle
    window measures the operator alone."""

    def __init__(self, bench: BenchCluster):
        self.bench = bench
        self.lag_max: float | None = None
        self.stop = threading.Event()
        self.quiet = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            if self.quiet.is_set():
                continue
            try:
                samples = parse_metrics(self.bench.operator_metrics())
            except Exception:  # a busy operator may time out: this sampler only notes the lag
                continue
            values = [v for name in (LAG_METRIC, f"{LAG_METRIC}_max") for _, v in samples.get(name, [])]
            if cumulative := buckets(samples, LAG_METRIC):  # a histogram: its highest used bucket bound
                used = [le for le, c in cumulative.items() if c > 0 and not math.isinf(le)]
                values += [min(used)] if used else []
            if values:
                self.lag_max = max(self.lag_max or 0.0, *values)

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _stamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def timeline(pods: list[dict], start: float) -> dict[str, float | None]:
    """Where the burst's time went, from the API's own timestamps (whole seconds): when its last pod was
    created (the operator), scheduled (kube-scheduler) and Ready (KWOK), in seconds after `start`."""
    def last(stamps: list[float | None]) -> float | None:
        known = [t for t in stamps if t is not None]
        return round(max(known) - start, 1) if known else None

    def condition(pod: dict, type_: str) -> float | None:
        return next((_stamp(c.get("lastTransitionTime")) for c in pod.get("status", {}).get("conditions", [])
                     if c.get("type") == type_ and c.get("status") == "True"), None)

    return {"last_pod_created": last([_stamp(p["metadata"].get("creationTimestamp")) for p in pods]),
            "last_pod_scheduled": last([condition(p, "PodScheduled") for p in pods]),
            "last_pod_ready": last([condition(p, "Ready") for p in pods])}


def scheduling_failures(api: client.ApiClient, ns: str) -> dict:
    """kube-scheduler's FailedScheduling events in `ns`: how many pods it could not place at first, and why."""
    events = _list_all(_raw_events, api, ns, field_selector="reason=FailedScheduling")
    pods = {e.get("involvedObject", {}).get("name") for e in events}
    messages: dict[str, int] = {}
    for e in events:
        messages[e.get("message", "")[:160]] = messages.get(e.get("message", "")[:160], 0) + e.get("count", 1)
    return {"failed_scheduling_events": sum(messages.values()), "pods": len(pods),
            "messages": dict(sorted(messages.items(), key=lambda kv: -kv[1])[:3])}


def _raw_events(api: client.ApiClient, ns: str, **query) -> dict:
    return _raw(client.CoreV1Api(api).list_namespaced_event, ns, **query)


class NodeWatch:
    """Lists the nodes every 15 s in the background and keeps those seen not Ready that no fault of this
    benchmark made so (KWOK falling behind on heartbeats): a run with any is suspect."""

    def __init__(self, api: client.ApiClient):
        self.api = api
        self.injected: set[str] = set()
        self.lapsed: dict[str, float] = {}  # node -> when first seen not Ready
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(15.0):
            try:
                nodes = _raw(client.CoreV1Api(self.api).list_node)["items"]
            except Exception:  # a busy API server: try again next round
                continue
            for node in nodes:
                name = node["metadata"]["name"]
                ready = next((c["status"] for c in node.get("status", {}).get("conditions", [])
                              if c["type"] == "Ready"), "Unknown")
                if ready != "True" and name not in self.injected and name not in self.lapsed:
                    self.lapsed[name] = time.monotonic() - log.t0
                    log(f"  node {name} not Ready (Ready={ready}) without an injected fault")

    def __enter__(self) -> NodeWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=20)


# ---- recovery ------------------------------------------------------------------------------------------------


def gang_pods(api: client.ApiClient, attempt: int) -> list[dict]:
    return _pods(api, "gang", label_selector=f"{LABEL_JOB}=gang,{LABEL_ATTEMPT}={attempt}")["items"]


def gang_attempt(api: client.ApiClient) -> int:
    job = _raw(client.CustomObjectsApi(api).get_namespaced_custom_object, GROUP, VERSION, "gang", "trainingjobs",
               "gang")
    return (job.get("status") or {}).get("attempt") or 0


def recover(bench: BenchCluster, api: client.ApiClient, workers: int, timeout: float,
            during: Callable[[], None] | None = None, watch: NodeWatch | None = None) -> dict:
    """Fault the node of the gang's rank 1; seconds from Ready=False seen until every pod of the next attempt
    runs (and until the last of them exists: the operator's share). `during` runs first, in a thread (the
    burst); the fault goes in ~1 s after it started."""
    core = bench.core
    attempt = gang_attempt(api)
    pods = gang_pods(api, attempt)
    if len(pods) != workers or any(p["status"].get("phase") != "Running" for p in pods):
        raise RuntimeError(f"the gang is not running before the fault: {len(pods)} pods of attempt {attempt}")
    victim = next(p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"][LABEL_RANK] == "1")
    if watch is not None:
        watch.injected.add(victim)
    burst = None
    if during is not None:
        burst = threading.Thread(target=during, daemon=True)
        burst.start()
        time.sleep(1.0)
    faults.make_node_not_ready(core, victim)
    injected = time.monotonic()
    fault = created = None
    deadline = injected + timeout
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if fault is None:
                node = _raw(core.read_node, victim)
                if any(c["type"] == "Ready" and c["status"] == "False" for c in node["status"].get("conditions", [])):
                    fault = now
                    log(f"  node {victim} Ready=False seen {fault - injected:.2f} s after the injection")
                else:
                    time.sleep(RECOVERY_POLL_S)
                continue
            pods = gang_pods(api, attempt + 1)
            if created is None and len(pods) >= workers:
                created = now
            if len(pods) >= workers and all(p["status"].get("phase") == "Running" for p in pods):
                if victim in {p["spec"].get("nodeName") for p in pods}:
                    raise AssertionError(f"the new attempt runs on the faulty node {victim}")
                return {"recovery_s": round(now - fault, 2), "operator_s": round(created - fault, 2),
                        "victim": victim, "attempt": attempt + 1}
            time.sleep(RECOVERY_POLL_S)
        raise TimeoutError(f"attempt {attempt + 1} of the gang did not run within {timeout:g} s of the fault on "
                           f"{victim} (Ready=False seen: {fault is not None}, new pods existed: {created is not None})")
    finally:
        if burst is not None:
            burst.join(timeout=timeout)
        faults.make_node_ready(core, victim)

        def returned() -> bool:
            node = core.read_node(victim)
            if node.spec.unschedulable or any(t.key.startswith("cardpool.io/") or "not-ready" in t.key
                                              for t in node.spec.taints or []):
                raise NotYet(f"unschedulable {node.spec.unschedulable}, taints "
                             f"{[t.key for t in node.spec.taints or []]}")
            return True

        wait_for(f"node {victim} to be back in the pool (Ready, untainted, schedulable)", returned, timeout=120)


# ---- the run -------------------------------------------------------------------------------------------------


def run(quick: bool = False, other_pods: int | None = None, seed: int = 1) -> dict:
    sizes = QUICK if quick else FULL
    if other_pods is not None:
        sizes = replace(sizes, other_pods=other_pods)
    qps = float(os.environ.get("CARDPOOL_KUBE_QPS", "300"))
    burst_budget = int(os.environ.get("CARDPOOL_KUBE_BURST", "500"))
    fleet = scaled_fleet(sizes.fleet_scale)
    rng = random.Random(seed)
    result: dict = {"setup": {"nodes": fleet.node_count, "cards": sum(fleet.cards().values()),
                              "groups": {g.name: g.nodes for g in fleet.groups}, "seed": seed,
                              "quick": quick, "kube_qps": qps, "kube_burst": burst_budget,
                              "gang": f"{sizes.gang_workers} x 8"},
                    "phases_s": {}, "notes": []}
    phases = result["phases_s"]
    log(f"starting a private cluster with {fleet.node_count} nodes")
    started = time.monotonic()
    try:
        with bench_cluster("scale", fleet, PORT_OFFSET, pool_manifest(fleet), metrics=True,
                           fleet_timeout=sizes.wait_s, node_monitor_grace=NODE_MONITOR_GRACE, log=log) as bench:
            result["setup"]["setup_s"] = bench.setup_s
            result["setup"]["node_monitor_grace"] = NODE_MONITOR_GRACE
            with Scraper(bench) as scraper, NodeWatch(_api(bench)) as watch:
                try:
                    _phases(bench, sizes, fleet, rng, qps, burst_budget, result, scraper, watch)
                except (Exception, KeyboardInterrupt) as exc:  # Ctrl-C too: report what was measured
                    result["error"] = f"{type(exc).__name__}: {exc}"
                    log(f"FAILED: {result['error']}")
                try:
                    restarts = parse_metrics(bench.operator_metrics()).get("cardpool_restarts_total", [])
                    result["restarts_by_reason"] = {labels.get("reason", ""): int(v) for labels, v in restarts if v}
                except Exception as exc:
                    result["restarts_by_reason"] = f"unavailable: {exc}"
            result["nodes_not_ready_uninjected"] = len(watch.lapsed)
            if watch.lapsed:
                first = min(watch.lapsed.values())
                result["notes"].append(f"{len(watch.lapsed)} nodes went not Ready without an injected fault (KWOK "
                                       f"behind on heartbeats), the first {first:.0f} s into the run: figures "
                                       "after that include the restarts cardpool made for them")
            if scraper.lag_max is not None:
                result["event_loop_lag_s_max"] = round(scraper.lag_max, 3)
                result["notes"].append("event_loop_lag_s_max: the largest value of the operator's lag gauge "
                                       "sampled once a second outside the idle window")
            phases["teardown_start"] = round(time.monotonic() - started, 1)
    except Exception as exc:  # the cluster did not come up
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {result['error']}")
    phases["total"] = round(time.monotonic() - started, 1)
    return result


def _phases(bench: BenchCluster, sizes: Sizes, fleet: fleets.Fleet, rng: random.Random, qps: float,
            burst_budget: int, result: dict, scraper: Scraper, watch: NodeWatch) -> None:
    phases, notes = result["phases_s"], result["notes"]
    api = _api(bench)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    cap = {g.name: g.nodes * g.cards_per_node for g in fleet.groups}
    h800 = next(g for g in fleet.groups if g.name == "h800")
    for ns in ("gang", "burst", "ceiling", "fill", "other"):
        new_namespace(bench, ns)

    def phase(name: str, t0: float) -> None:
        phases[name] = round(time.monotonic() - t0, 1)
        log(f"phase {name}: {phases[name]} s")

    # 1. the gang
    t0 = time.monotonic()
    gang = JobShape("gang", sizes.gang_workers, 8, ("H800",), "h800")
    submit(custom, "gang", [gang], "gang")
    states = wait_jobs_settled(api, "gang", 1, "the gang to run", sizes.wait_s)
    if "gang" not in states.running:
        raise RuntimeError(f"the gang did not start: {states}")
    phase("gang", t0)

    # 2. the burst
    t0 = time.monotonic()
    total_cards = sum(cap.values())
    room = dict(cap)
    room["h800"] -= gang.total
    target = int(0.9 * total_cards) - gang.total
    jobs = burst_mix(rng, sizes.burst_jobs, target, room, cap)
    asked = sum(j.total for j in jobs)
    result["burst_mix"] = {"jobs": len(jobs), "cards": asked, "share_of_cards": round((asked + gang.total)
                                                                                      / total_cards, 3),
                           "by_home": {g: sum(j.total for j in jobs if j.home == g) for g in cap}}
    log(f"burst: {len(jobs)} jobs asking {asked} cards ({result['burst_mix']['share_of_cards']:.0%} of the fleet "
        f"with the gang)")
    first, first_wall = time.monotonic(), time.time()
    submit(custom, "burst", jobs, "burst")
    submitted = time.monotonic() - first
    states = wait_jobs_settled(api, "burst", len(jobs), "the burst's admitted jobs to run", sizes.wait_s)
    elapsed = time.monotonic() - first
    result.update(submit_to_running_s=round(elapsed, 2), jobs_running=len(states.running),
                  jobs_queued=len(states.queued), pods=states.pods, pods_per_s=round(states.pods / elapsed, 1))
    result["burst_submit_s"] = round(submitted, 2)
    log(f"burst: {len(states.running)} jobs / {states.pods} pods Running in {elapsed:.1f} s "
        f"({result['pods_per_s']} pods/s; submitting took {submitted:.1f} s); {len(states.queued)} queued")
    phase("burst", t0)

    # 3. the ceiling: the same pods, plain, created straight
    t0 = time.monotonic()
    burst_pods = _list_all(_pods, api, "burst", label_selector=f"{SET_LABEL}=burst")
    result["burst_timeline_s"] = timeline(burst_pods, first_wall)
    log(f"burst timeline (from the first submit, 1 s resolution): {result['burst_timeline_s']}")
    result["burst_scheduling"] = scheduling_failures(api, "burst")
    if result["burst_scheduling"]["failed_scheduling_events"]:
        log(f"burst: kube-scheduler could not place some pods at first: {result['burst_scheduling']}")
    shapes = [{"node": p["spec"]["nodeName"], "resources": p["spec"]["containers"][0].get("resources", {}),
               "labels": len(p["metadata"].get("labels", {})), "tolerations": p["spec"].get("tolerations", [])}
              for p in burst_pods if p["spec"].get("nodeName")]
    delete_jobs(bench, api, "burst", f"{SET_LABEL}=burst", "burst", sizes.wait_s)
    phase("burst_cleanup", t0)
    t0 = time.monotonic()
    bucket = TokenBucket(qps, burst_budget)

    def ceiling_pod(item: tuple[int, dict]) -> None:
        i, shape = item
        labels = {SET_LABEL: "ceiling", **{f"bench.cardpool.io/l{k}": "x" for k in range(shape["labels"] - 1)}}
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"ceiling-{i:05d}", "labels": labels},
                "spec": {"restartPolicy": "Never", "tolerations": shape["tolerations"],
                         "containers": [{"name": "trainer", "image": "registry.example.com/train:1",
                                         "resources": shape["resources"]}],
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                                     "values": [shape["node"]]}]}]}}}}}
        bucket.take()
        _create(core.create_namespaced_pod, "ceiling", body)

    first = time.monotonic()
    done = threading.Event()
    creator = threading.Thread(target=lambda: (_parallel(ceiling_pod, enumerate(shapes), CEILING_THREADS),
                                               done.set()), daemon=True)
    creator.start()
    progress = Progress()

    def ceiling_running() -> bool:
        left = _not_running(api, "ceiling")
        progress(f"  ceiling: creating {'done' if done.is_set() else 'in progress'}, {left} not Running")
        if not done.is_set() or left:
            raise NotYet(f"creates {'done' if done.is_set() else 'in progress'}, {left} pods not Running")
        return True

    wait_for(f"{len(shapes)} plain pods to run", ceiling_running, timeout=sizes.wait_s, interval=0.2, fatal=FATAL)
    elapsed = time.monotonic() - first
    result["ceiling_pods_per_s"] = round(len(shapes) / elapsed, 1)
    result["ceiling_s"] = round(elapsed, 2)
    result["ratio"] = round(result["pods_per_s"] / result["ceiling_pods_per_s"], 2) if shapes else None
    log(f"ceiling: {len(shapes)} plain pods Running in {elapsed:.1f} s ({result['ceiling_pods_per_s']} pods/s); "
        f"ratio {result['ratio']}")
    _drain(core.delete_collection_namespaced_pod("ceiling", grace_period_seconds=0, _preload_content=False))
    wait_for("the ceiling pods to go", lambda: not _pods(api, "ceiling", limit=1)["items"],
             timeout=sizes.wait_s, interval=1.0, fatal=FATAL)
    phase("ceiling", t0)

    # 4. the fill: ~1,000 jobs, ~10,000 pods
    t0 = time.monotonic()
    room = dict(cap)
    room["h800"] -= gang.total + sizes.spare_nodes * h800.cards_per_node
    fill, released = one_card_mix(rng, "f", sizes.steady_jobs - 1, room, release_cards=sizes.burst2_pods)
    log(f"fill: {len(fill)} jobs of one-card workers, {sum(j.total for j in fill)} pods")
    submit(custom, "fill", fill, "fill")
    states = wait_jobs_settled(api, "fill", len(fill), "the fill jobs to run", sizes.wait_s, interval=2.0)
    result["steady"] = {"jobs": len(states.running) + 1, "queued": len(states.queued),
                        "cardpool_pods": states.pods + gang.workers}
    phase("fill", t0)
    log(f"steady state: {result['steady']}")

    # 5. other pods
    t0 = time.monotonic()
    names = [n["metadata"]["name"] for n in fleet.node_objects()]
    if sizes.other_pods:
        def other_pod(i: int) -> None:
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"other-{i:05d}",
                                                                    "labels": {SET_LABEL: "other"}},
                    "spec": {"nodeName": names[i % len(names)], "restartPolicy": "Always",
                             "containers": [{"name": "app", "image": "registry.example.com/app:1",
                                             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}
            _create(core.create_namespaced_pod, "other", body)

        _parallel(other_pod, range(sizes.other_pods), CEILING_THREADS)
        created = time.monotonic() - t0
        progress = Progress()

        def others_running() -> bool:
            left = _not_running(api, "other")
            progress(f"  other pods: {left}{'+' if left == 500 else ''} not Running")
            if left:
                raise NotYet(f"{left}{'+' if left == 500 else ''} not Running")
            return True

        wait_for(f"{sizes.other_pods} other pods to run", others_running, timeout=sizes.wait_s, interval=1.0,
                 fatal=FATAL)
        elapsed = time.monotonic() - t0
        result["other_pods"] = {"count": sizes.other_pods, "created_s": round(created, 1),
                                "running_s": round(elapsed, 1),
                                "pods_per_s": round(sizes.other_pods / elapsed, 1)}
        notes.append(f"other pods (bound by nodeName, no scheduler): {sizes.other_pods} created in {created:.0f} s "
                     f"by {CEILING_THREADS} threads, all Running after {elapsed:.0f} s "
                     f"({sizes.other_pods / elapsed:.0f} pods/s: KWOK's and the API server's throughput here)")
    phase("other_pods", t0)

    # 6. idle and churn windows
    t0 = time.monotonic()
    pid = bench.operator_pid()
    first_scrape = parse_metrics(bench.operator_metrics())
    metric = PASS_METRIC if buckets(first_scrape, PASS_METRIC) else PASS_FALLBACK
    result["pass_metric"] = metric if metric == PASS_METRIC else (
        f"{PASS_FALLBACK} ({PASS_METRIC} not exported by this operator)")
    scraper.quiet.set()
    before_api = bench.apiserver_metrics()
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    log(f"idle window: {sizes.idle_s:g} s")
    time.sleep(sizes.idle_s)
    cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    idle_end = parse_metrics(bench.operator_metrics())
    after_api = bench.apiserver_metrics()
    scraper.quiet.clear()
    result["operator_rss_mib"] = round(bench.operator_rss_mib(), 1)
    result["operator_rss_peak_mib"] = round(peak_rss_mib(pid), 1)
    result["idle_cpu_percent"] = round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1)
    own = (api_writes(first_scrape), api_writes(idle_end))
    if own[0] is not None and own[1] is not None:
        result["idle_writes_per_s"] = round((own[1] - own[0]) / (wall1 - wall0), 2)
        result["idle_writes_source"] = f"{API_METRIC} (leases excluded)"
    else:
        writes = apiserver_writes(parse_metrics(after_api)) - apiserver_writes(parse_metrics(before_api))
        result["idle_writes_per_s"] = round(writes / (wall1 - wall0), 2)
        result["idle_writes_source"] = ("approximate: kube-apiserver apiserver_request_total writes to "
                                        f"{', '.join(OPERATOR_RESOURCES)} by any client ({API_METRIC} not "
                                        "exported by this operator)")
    # churn: a job deleted or submitted every 2 s
    log(f"churn window: {sizes.idle_s:g} s, a job deleted or submitted every 2 s")
    singles = [j for j in fill if j.workers == 1 and not j.labels]
    churn_end = time.monotonic() + sizes.idle_s
    changes = 0
    while time.monotonic() < churn_end:
        victim = singles[changes // 2]
        if changes % 2 == 0:
            custom.delete_namespaced_custom_object(GROUP, VERSION, "fill", "trainingjobs", victim.name)
        else:
            replacement = JobShape(f"churn-{changes:03d}", 1, 1, victim.accelerators, victim.home)
            _create(custom.create_namespaced_custom_object, GROUP, VERSION, "fill", "trainingjobs",
                    job_manifest(replacement, "churn"))
        changes += 1
        time.sleep(max(0.0, min(2.0, churn_end - time.monotonic())))
    churn_metrics = parse_metrics(bench.operator_metrics())
    idle = _delta(buckets(idle_end, metric), buckets(first_scrape, metric))
    churn = _delta(buckets(churn_metrics, metric), buckets(idle_end, metric))
    both = _add(idle, churn)
    windows = {}
    for name, hist in (("idle", idle), ("churn", churn)):
        windows[name] = {"passes": int(hist.get(math.inf, 0)),
                         "median_ms": _ms(histogram_quantile(0.5, hist)),
                         "p95_ms": _ms(histogram_quantile(0.95, hist))}
    result["pass_ms_median"] = _ms(histogram_quantile(0.5, both))
    result["pass_ms_p95"] = _ms(histogram_quantile(0.95, both))
    result["pass_windows"] = {**windows, "window_s": sizes.idle_s, "churn_changes": changes}
    log(f"passes: {windows}")
    phase("idle_churn", t0)

    # 7. recovery, steady
    t0 = time.monotonic()
    steady = recover(bench, api, gang.workers, timeout=sizes.wait_s, watch=watch)
    result["recovery_s_steady"] = steady["recovery_s"]
    result["recovery_operator_s_steady"] = steady["operator_s"]
    log(f"recovery at steady state: {steady}")
    wait_jobs_settled(api, "gang", 1, "the gang to run again", sizes.wait_s)
    phase("recovery_steady", t0)

    # 8. recovery during a burst
    t0 = time.monotonic()
    delete_jobs(bench, api, "fill", f"{RELEASE_LABEL}=true", "released fill", sizes.wait_s)
    burst2, _ = one_card_mix(rng, "r", max(1, sum(released.values()) // 10), released)
    burst2_pods = sum(j.total for j in burst2)
    log(f"burst during recovery: released {released} cards; {len(burst2)} new jobs, {burst2_pods} pods")
    new_namespace(bench, "burst2")
    marks: dict[str, float] = {}

    def burst() -> None:
        marks["start"] = time.monotonic()
        submit(custom, "burst2", burst2, "burst2")
        marks["submitted"] = time.monotonic()

    during = recover(bench, api, gang.workers, timeout=sizes.wait_s, during=burst, watch=watch)
    result["recovery_s_burst"] = during["recovery_s"]
    result["recovery_operator_s_burst"] = during["operator_s"]
    rest = during["recovery_s"] - during["operator_s"]
    notes.append(f"recovery during the burst: the operator had the new attempt's pods created "
                 f"{during['operator_s']} s after the fault; the other {rest:.1f} s they waited behind the "
                 "burst's pods in kube-scheduler's queue (50 binds/s) and for KWOK")
    log(f"recovery during the burst: {during}")
    states = wait_jobs_settled(api, "burst2", len(burst2), "the second burst's jobs to run", sizes.wait_s,
                               interval=1.0)
    result["burst2"] = {"jobs": len(burst2), "pods": burst2_pods, "running_pods": states.pods,
                        "queued": len(states.queued),
                        "submit_s": round(marks["submitted"] - marks["start"], 1),
                        "running_s": round(time.monotonic() - marks["start"], 1)}
    wait_jobs_settled(api, "gang", 1, "the gang to run again", sizes.wait_s)
    phase("recovery_burst", t0)
    result["operator_rss_mib_end"] = round(bench.operator_rss_mib(), 1)
    result["control_plane_rss_mib"] = {k: round(v / 2**20, 1) for k, v in bench.cluster.memory().items()}
    notes.append("kube-scheduler binds with its default client budget (50 QPS, burst 100): every pod that needs "
                 "scheduling, cardpool's and the ceiling's alike, passes through it")


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 1)

