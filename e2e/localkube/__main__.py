"""python -m localkube up|down|status|kubeconfig|fleet|start|bench"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from . import fleet as fleets
from .cluster import Cluster
from .config import FLEETS, Ports


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))


def cmd_up(args: argparse.Namespace) -> int:
    cluster = Cluster()
    cluster.up()
    if args.fleet:
        fleet = fleets.Fleet.load(args.fleet)
        counts = fleets.apply(core_api(cluster.kubeconfig), fleet)
        print(f"fleet {fleet.name}: {counts['nodes']} nodes Ready ({counts['created']} created, "
              f"{counts['pruned']} pruned); cards: {fleet.cards()}")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    Cluster().down()
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    cluster = Cluster()
    up = cluster.is_up()
    print(json.dumps({
        "up": up,
        "server": cluster.server,
        "kubeconfig": str(cluster.kubeconfig),
        "processes": [{"name": p.name, "pid": p.pid, "alive": p.alive(), "rss_mib": round(p.rss_bytes() / 2**20, 1),
                       "log": p.log} for p in cluster.processes.load()],
    }, indent=1))
    return 0 if up else 3


def cmd_kubeconfig(_: argparse.Namespace) -> int:
    print(Cluster().kubeconfig)
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    cluster = Cluster()
    fleet = fleets.Fleet.load(args.file)
    counts = fleets.apply(core_api(cluster.kubeconfig), fleet, prune=not args.no_prune)
    print(json.dumps({"fleet": fleet.name, **counts, "cards": fleet.cards()}))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    """Start a process that `down` will stop (the operator under `make up`), optionally waiting for a URL."""
    command = args.command
    if not command:
        print("start: give the command after --", file=sys.stderr)
        return 2
    table = Cluster().processes
    running = table.get(args.name)
    if running and running.alive():
        print(f"{args.name} already running (pid {running.pid}, log {running.log})")
        return 0
    proc = table.start(args.name, command, ready_url=args.ready_url, timeout=args.timeout)
    log = table.get(args.name).log
    print(f"{args.name} running (pid {proc.pid}); log {log}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Start a private cluster, measure start time and control-plane memory with the small and the large fleet.

    Prints one JSON object. Runs on its own state folder and ports, so a cluster from `make up` is untouched.
    """
    with tempfile.TemporaryDirectory(prefix="localkube-bench-") as tmp:
        cluster = Cluster(state_dir=Path(tmp), ports=Ports(base=Ports().base + 100))
        result: dict = {}
        try:
            result["start_s"] = cluster.up(log=lambda *_: None)
            core = core_api(cluster.kubeconfig)
            result["idle_rss_mib"] = _mib(cluster.memory())
            for size in ("small", "large"):
                fleet = fleets.Fleet.load(FLEETS / f"{size}.yaml")
                started = time.monotonic()
                counts = fleets.apply(core, fleet, timeout=args.timeout)
                elapsed = time.monotonic() - started
                time.sleep(args.settle)  # let heartbeats and watch caches reach their steady state
                result[size] = {
                    "nodes": counts["nodes"],
                    "nodes_ready_s": round(elapsed, 1),
                    "nodes_per_s": round(counts["created"] / elapsed, 1),
                    "rss_mib": _mib(cluster.memory()),
                }
        finally:
            cluster.down(log=lambda *_: None)
    print(json.dumps(result))
    return 0


def _mib(memory: dict[str, int]) -> dict[str, float]:
    out = {name: round(rss / 2**20, 1) for name, rss in memory.items()}
    out["total"] = round(sum(memory.values()) / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the local cluster (reused if already up), then apply a fleet")
    up.add_argument("--fleet", type=Path, help="fleet file to apply, e.g. e2e/fleets/small.yaml")
    up.set_defaults(run=cmd_up)
    sub.add_parser("down", help="stop every process started here").set_defaults(run=cmd_down)
    sub.add_parser("status", help="processes, memory; exit 3 when the cluster is not up").set_defaults(
        run=cmd_status)
    sub.add_parser("kubeconfig", help="print the kubeconfig path").set_defaults(run=cmd_kubeconfig)
    fl = sub.add_parser("fleet", help="apply a fleet file to the running cluster")
    fl.add_argument("file", type=Path)
    fl.add_argument("--no-prune", action="store_true", help="keep nodes of other fleets")
    fl.set_defaults(run=cmd_fleet)
    st = sub.add_parser("start", help="start a process that `down` stops: start NAME [--ready-url U] -- CMD")
    st.add_argument("name")
    st.add_argument("--ready-url")
    st.add_argument("--timeout", type=float, default=60.0)
    st.set_defaults(run=cmd_start)
    be = sub.add_parser("bench", help="start time and memory with the small and large fleets (JSON)")
    be.add_argument("--timeout", type=float, default=600.0, help="deadline for a fleet to be Ready")
    be.add_argument("--settle", type=float, default=15.0, help="seconds to wait before reading memory")
    be.set_defaults(run=cmd_bench)
    argv = sys.argv[1:] if argv is None else argv
    # `start NAME ... -- CMD`: everything after the first -- is the command, verbatim.
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.command = command
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
