"""The `cardpool` command (also `kubectl cardpool`): pools and jobs at a glance, job stories, pool capacity,
drain requests.

Follows kubectl's conventions: --kubeconfig (else $KUBECONFIG, else ~/.kube/config), --context,
-n/--namespace (else the context's namespace), -A/--all-namespaces, -o table|json|yaml.
Exit codes: 0 shown, 1 the API could not be reached or refused, 2 bad usage, 3 not found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import yaml
from rich.console import Console
from rich.live import Live

from cardpool import __version__
from cardpool.api.keys import ANNOTATION_DRAIN_REQUEST, GROUP, LABEL_MANAGED_BY, MANAGED_BY, VERSION
from cardpool.kube.observe import FOREIGN_POD_SELECTORS

from . import cardmap, render

OK, API_ERROR, USAGE, NOT_FOUND = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardpool", description="cardpool: training jobs on accelerator pools")
    parser.add_argument("--version", action="version", version=f"cardpool {__version__}")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    parser.add_argument("-w", "--watch", nargs="?", type=float, const=2.0, metavar="SECONDS",
                        help="show again every SECONDS (default 2) until Ctrl-C: status, jobs, describe, pool, map")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("version", help="print the version")
    sub.add_parser("status", help="pools and jobs at a glance")
    jobs = sub.add_parser("jobs", help="TrainingJobs as a table")
    jobs.add_argument("--pool", help="only jobs of this CardPool")
    jobs.add_argument("--phase", help="only jobs in this phase (e.g. Running, Queued, Failed)")
    describe = sub.add_parser("describe", help="a job's story: attempts, placement, conditions, events")
    describe.add_argument("kind", choices=["job", "trainingjob", "tj"])
    describe.add_argument("name")
    pool = sub.add_parser("pool", help="a CardPool's capacity per group")
    pool.add_argument("name")
    card_map = sub.add_parser("map", help="a pool's card map: each node's cards, busy by job, free, unhealthy")
    card_map.add_argument("name")
    card_map.add_argument("--svg", metavar="FILE", help="also write the map as an SVG image")
    drain = sub.add_parser("drain", help="ask the operator to drain a node (its jobs restart elsewhere)")
    drain.add_argument("node")
    drain.add_argument("--reason", default="", help="why, shown in the node's drain record and events")
    undrain = sub.add_parser("undrain", help="withdraw a drain request; the operator returns the node")
    undrain.add_argument("node")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return USAGE if exc.code not in (0, None) else OK
    if args.command in (None, "version"):
        print(f"cardpool {__version__}")
        return OK
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        namespace = args.namespace or (active.get("context") or {}).get("namespace") or "default"
        custom = client.CustomObjectsApi(api)
        return _run(args, client.CoreV1Api(api), custom, namespace)
    except ApiException as exc:
        if exc.status == 404:
            print(f"cardpool: not found: {exc.reason}", file=sys.stderr)
            return NOT_FOUND
        print(f"cardpool: the API refused: {exc.status} {exc.reason}", file=sys.stderr)
        return API_ERROR
    except (config.ConfigException, OSError) as exc:
        print(f"cardpool: cannot reach the cluster: {exc}", file=sys.stderr)
        return API_ERROR
    except Exception as exc:  # urllib3 connection errors and the like: say what failed, exit 1
        print(f"cardpool: {type(exc).__name__}: {exc}", file=sys.stderr)
        return API_ERROR


def _jobs(custom, args: argparse.Namespace, namespace: str) -> list[dict]:
    if args.all_namespaces:
        items = custom.list_cluster_custom_object(GROUP, VERSION, "trainingjobs")["items"]
    else:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")["items"]
    pool, phase = getattr(args, "pool", None), getattr(args, "phase", None)
    return sorted((j for j in items if (pool is None or j["spec"]["pool"] == pool)
                   and (phase is None or ((j.get("status") or {}).get("phase") or "Queued") == phase)),
                  key=lambda j: (j["metadata"]["namespace"], j["metadata"]["name"]))


def _emit(args: argparse.Namespace, data: object, view) -> None:
    if args.output == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif args.output == "yaml":
        print(yaml.safe_dump(data, sort_keys=True), end="")
    else:
        # piped into a script or a file: whole lines, as kubectl prints them, never cut to 80 columns
        width = None if sys.stdout.isatty() else 400
        Console(highlight=False, width=width).print(view())


def _run(args: argparse.Namespace, core, custom, namespace: str) -> int:
    if not args.watch or args.command in ("drain", "undrain"):
        return _show(args, core, custom, namespace, _emit)
    try:
        if args.output != "table":  # a stream of documents, like kubectl get -w -o json
            while True:
                _show(args, core, custom, namespace, _emit)
                time.sleep(args.watch)
        with Live(console=Console(highlight=False), auto_refresh=False) as live:
            while True:
                _show(args, core, custom, namespace, lambda _a, _d, view: live.update(view(), refresh=True))
                time.sleep(args.watch)
    except KeyboardInterrupt:
        return OK


def _show(args: argparse.Namespace, core, custom, namespace: str, emit) -> int:
    """Read what the command shows and hand it to `emit` (print once, or update a live view)."""
    if args.command == "jobs":
        jobs = _jobs(custom, args, namespace)
        emit(args, [render.job_row(j) for j in jobs], lambda: render.jobs_table(jobs))
    elif args.command == "status":
        pools = custom.list_cluster_custom_object(GROUP, VERSION, "cardpools")["items"]
        jobs = _jobs(custom, args, namespace)
        emit(args, {"pools": [{"name": p["metadata"]["name"], **(p.get("status") or {})} for p in pools],
                     "jobs": [render.job_row(j) for j in jobs]}, lambda: render.status_view(pools, jobs))
    elif args.command == "pool":
        pool = custom.get_cluster_custom_object(GROUP, VERSION, "cardpools", args.name)
        emit(args, {"name": args.name, **(pool.get("status") or {})}, lambda: render.pool_table(pool))
    elif args.command == "map":
        pool = custom.get_cluster_custom_object(GROUP, VERSION, "cardpools", args.name)
        sanitize = core.api_client.sanitize_for_serialization
        nodes = [sanitize(n) for n in core.list_node().items]
        pods = [sanitize(p) for p in core.list_pod_for_all_namespaces(
            label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}").items]
        others, bound_and_live = FOREIGN_POD_SELECTORS  # cards held by other workloads show as such
        pods += [sanitize(p) for p in core.list_pod_for_all_namespaces(label_selector=others,
                                                                       field_selector=bound_and_live).items]
        built = cardmap.build(pool, nodes, pods)
        if args.svg:
            with open(args.svg, "w") as f:
                f.write(cardmap.svg(built))
        emit(args, {"pool": built.pool, "jobs": built.jobs,
                     "nodes": [{"group": r.group, "node": r.node, "cells": "".join(r.cells)} for r in built.nodes]},
              lambda: cardmap.terminal(built))
    elif args.command in ("drain", "undrain"):
        # the operator's own mechanism: a request on the node that its drain pass acts on (one writer)
        request = (args.reason or "requested with cardpool drain") if args.command == "drain" else None
        core.patch_node(args.node, {"metadata": {"annotations": {ANNOTATION_DRAIN_REQUEST: request}}})
        print(f"node {args.node}: drain {'requested' if request else 'request withdrawn'}")
    elif args.command == "describe":
        job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", args.name)
        events = [core.api_client.sanitize_for_serialization(e) for e in core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={args.name},involvedObject.kind=TrainingJob").items]
        emit(args, {"job": job, "events": events}, lambda: render.describe_job(job, events))
    return OK


if __name__ == "__main__":
    sys.exit(main())
