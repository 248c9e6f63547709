"""The `cardpool` command (also `kubectl cardpool`): pools and jobs at a glance, job stories, pool capacity,
drain requests; and offline, capacity planning (`simulate`, in cli/simulate.py).

Follows kubectl's conventions: --kubeconfig (else $KUBECONFIG, else ~/.kube/config), --context,
-n/--namespace (else the context's namespace), -A/--all-namespaces, -o table|json|yaml, before or after the
subcommand. Every error names what it is about (the node, the job and its namespace, the pool, the file).
Exit codes: 0 done (also a drain asked again: it is in effect), 1 failed (the API could not be reached or
refused, the output could not be written, a request nothing would act on: a drain of a node no CardPool
selects, an undrain with no drain request to withdraw), 2 bad usage (also an input file simulate cannot use),
3 not found; 141 when the reader of the output went away (`| head`), silently, as a Unix tool killed by
SIGPIPE; 130 on Ctrl-C outside --watch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import yaml
from rich.live import Live
from rich.text import Text

from cardpool import __version__
from cardpool.api.keys import GROUP, LABEL_MANAGED_BY, MANAGED_BY, VERSION
from cardpool.kube.observe import FOREIGN_POD_SELECTORS

from . import cardmap, drain, options, render
from .errors import API_ERROR, INTERRUPTED, NOT_FOUND, OK, PIPE_CLOSED, USAGE, Failure, PipeClosed, _Console, writing

CUSTOM_KINDS = ("trainingjob", "trainingjobs", "cardpool", "cardpools", "tenantqueues")


def _server_message(exc: Exception) -> tuple[str, dict]:
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except ValueError:
        return "", {}
    return (body.get("message") or "", body) if isinstance(body, dict) else ("", {})


@contextmanager
def about(kind: str, name: str | None = None, namespace: str | None = None, verb: str = "read") -> Iterator[None]:
    """API refusals inside become a Failure naming the object: `kind "name"` (or the listed kind) and where."""
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        message, body = _server_message(exc)
        place = f' in namespace "{namespace}"' if namespace else ""
        subject = f'{kind} "{name}"' if name else kind
        if exc.status == 404 and name and (body.get("details") or {}).get("name") == name:
            raise Failure(f"{subject} not found{place}", NOT_FOUND) from exc
        if exc.status == 404:  # the resource itself is missing, not one object of it
            hint = " (are cardpool's CRDs installed?)" if kind in CUSTOM_KINDS else ""
            raise Failure(f"cannot {verb} {subject}{place}: the API server does not serve {kind}{hint}",
                          NOT_FOUND if name else API_ERROR) from exc
        said = f": {message}" if message else ""
        raise Failure(f"cannot {verb} {subject}{place}: {exc.status} {exc.reason}{said}") from exc


def _silence_stdout() -> None:
    """After the reader left: what is still buffered goes nowhere, instead of failing again at exit."""
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (a test's capture): nothing buffered below Python
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    try:
        args = options.parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return USAGE if exc.code not in (0, None) else OK
    except BrokenPipeError:  # --help or --version into `head`
        _silence_stdout()
        return PIPE_CLOSED
    try:
        return _main(args)
    except PipeClosed:
        _silence_stdout()
        return PIPE_CLOSED
    except Failure as exc:
        with contextlib.suppress(OSError):  # stderr closed too: the exit code still tells
            print(f"cardpool: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return INTERRUPTED


def _main(args: argparse.Namespace) -> int:
    if args.command in (None, "version"):
        with writing():
            print(f"cardpool {__version__}", flush=True)
        return OK
    if args.command == "simulate":  # offline: no kubeconfig, no cluster
        from . import simulate

        return simulate.run(args)
    import urllib3
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    path = args.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if args.kubeconfig and not os.path.exists(args.kubeconfig):
        raise Failure(f"cannot use the kubeconfig {args.kubeconfig}: no such file")
    try:
        api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
    except (config.ConfigException, OSError, ValueError) as exc:
        context = f" (context {args.context})" if args.context else ""
        raise Failure(f"cannot use the kubeconfig {path}{context}: {exc}") from exc
    namespace = args.namespace or (active.get("context") or {}).get("namespace") or "default"
    host = api.configuration.host
    try:
        return _run(args, client.CoreV1Api(api), client.CustomObjectsApi(api), namespace)
    except urllib3.exceptions.HTTPError as exc:
        reason = str(getattr(exc, "reason", None) or exc)
        if reason.startswith("<"):  # "<urllib3.connection.HTTPSConnection object at 0x..>: Failed to ..."
            reason = reason.split(": ", 1)[-1]
        raise Failure(f"cannot reach the cluster at {host}: {reason}") from exc
    except ApiException as exc:  # a call outside `about`: still no traceback
        raise Failure(f"the API refused: {exc.status} {exc.reason}: {_server_message(exc)[0]}") from exc


Emit = Callable[..., None]


def _emit(args: argparse.Namespace, data: object, view: Callable[[], object], note: str | None = None) -> None:
    """`note`: said instead of an empty table, on stderr as kubectl's "No resources found"."""
    with writing():
        if args.output == "json":
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        elif args.output == "yaml":
            print(yaml.safe_dump(data, sort_keys=True), end="")
        elif note is not None:
            print(note, file=sys.stderr)
        else:
            # piped into a script or a file: whole lines, as kubectl prints them, never cut to 80 columns
            width = None if sys.stdout.isatty() else 400
            _Console(highlight=False, width=width).print(view())
        sys.stdout.flush()


def _run(args: argparse.Namespace, core, custom, namespace: str) -> int:
    if not args.watch:
        return _show(args, core, custom, namespace, _emit)
    try:
        # a stream of documents (like kubectl get -w -o json), or of tables when the output is not a terminal
        if args.output != "table" or not sys.stdout.isatty():
            while True:
                _show(args, core, custom, namespace, _emit)
                time.sleep(args.watch)
        with Live(console=_Console(highlight=False), auto_refresh=False) as live:
            def update(_args: argparse.Namespace, _data: object, view: Callable[[], object],
                       note: str | None = None) -> None:
                with writing():
                    live.update(view() if note is None else Text(note), refresh=True)

            while True:
                _show(args, core, custom, namespace, update)
                time.sleep(args.watch)
    except KeyboardInterrupt:
        return OK


def _jobs(custom, args: argparse.Namespace, namespace: str) -> list[dict]:
    if args.all_namespaces:
        with about("trainingjobs", verb="list"):
            items = custom.list_cluster_custom_object(GROUP, VERSION, "trainingjobs")["items"]
    else:
        with about("trainingjobs", namespace=namespace, verb="list"):
            items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")["items"]
    pool, phase = getattr(args, "pool", None), getattr(args, "phase", None)
    return sorted((j for j in items if (pool is None or j["spec"]["pool"] == pool)
                   and (phase is None or ((j.get("status") or {}).get("phase") or "Queued") == phase)),
                  key=lambda j: (j["metadata"]["namespace"], j["metadata"]["name"]))


def _no_jobs(custom, args: argparse.Namespace, namespace: str) -> str:
    """What an empty `jobs` table says instead: where it looked, with which filters, and whether the pool
    asked for exists (a typo'd --pool or -n would otherwise look like an idle cluster)."""
    from kubernetes.client.exceptions import ApiException

    where = "in any namespace" if args.all_namespaces else f'in namespace "{namespace}"'
    filters = [f"of pool {args.pool}"] if args.pool else []
    filters += [f"in phase {args.phase}"] if args.phase else []
    note = f"No jobs found {where}{' ' + ' '.join(filters) if filters else ''}."
    if args.pool:
        try:
            custom.get_cluster_custom_object(GROUP, VERSION, "cardpools", args.pool)
        except ApiException as exc:
            if exc.status == 404:
                note += f' There is no CardPool "{args.pool}".'
    return note


def _show(args: argparse.Namespace, core, custom, namespace: str, emit: Emit) -> int:
    """Read what the command shows and hand it to `emit` (print once, or update a live view)."""
    if args.command == "jobs":
        jobs = _jobs(custom, args, namespace)
        note = _no_jobs(custom, args, namespace) if not jobs and args.output == "table" else None
        emit(args, [render.job_row(j) for j in jobs], lambda: render.jobs_table(jobs), note)
    elif args.command == "status":
        with about("cardpools", verb="list"):
            pools = custom.list_cluster_custom_object(GROUP, VERSION, "cardpools")["items"]
        jobs = _jobs(custom, args, namespace)
        emit(args, {"pools": [{"name": p["metadata"]["name"], **(p.get("status") or {})} for p in pools],
                     "jobs": [render.job_row(j) for j in jobs]}, lambda: render.status_view(pools, jobs))
    elif args.command == "pool":
        with about("cardpool", args.name):
            pool = custom.get_cluster_custom_object(GROUP, VERSION, "cardpools", args.name)
        emit(args, {"name": args.name, **(pool.get("status") or {})}, lambda: render.pool_table(pool))
    elif args.command == "queues":
        with about("tenantqueues", verb="list"):
            queues = custom.list_cluster_custom_object(GROUP, VERSION, "tenantqueues")["items"]
        note = "No TenantQueues found: jobs are not limited by quotas." if not queues and (
            args.output == "table") else None
        emit(args, render.queue_rows(queues), lambda: render.queues_table(queues), note)
    elif args.command == "map":
        _map(args, core, custom, emit)
    elif args.command in ("drain", "undrain"):
        _drain(args, core, custom)
    elif args.command == "describe":
        with about("trainingjob", args.name, namespace):
            job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", args.name)
        with about("events", namespace=namespace, verb="list"):
            events = [core.api_client.sanitize_for_serialization(e) for e in core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={args.name},involvedObject.kind=TrainingJob").items]
        emit(args, {"job": job, "events": events}, lambda: render.describe_job(job, events))
    return OK


def _map(args: argparse.Namespace, core, custom, emit: Emit) -> None:
    with about("cardpool", args.name):
        pool = custom.get_cluster_custom_object(GROUP, VERSION, "cardpools", args.name)
    sanitize = core.api_client.sanitize_for_serialization
    with about("nodes", verb="list"):
        nodes = [sanitize(n) for n in core.list_node().items]
    with about("pods", verb="list"):
        pods = [sanitize(p) for p in core.list_pod_for_all_namespaces(
            label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}").items]
        others, bound_and_live = FOREIGN_POD_SELECTORS  # cards held by other workloads show as such
        pods += [sanitize(p) for p in core.list_pod_for_all_namespaces(label_selector=others,
                                                                       field_selector=bound_and_live).items]
    built = cardmap.build(pool, nodes, pods)
    if args.svg:
        with writing(f"the SVG file {args.svg}"), open(args.svg, "w") as f:
            f.write(cardmap.svg(built))
    emit(args, {"pool": built.pool, "jobs": built.jobs,
                 "nodes": [{"group": r.group, "node": r.node, "cells": "".join(r.cells)} for r in built.nodes]},
         lambda: cardmap.terminal(built))


def _drain(args: argparse.Namespace, core, custom) -> None:
    """The operator's own mechanism: a request on the node that its drain pass acts on (one writer)."""
    with about("node", args.node):
        node = core.api_client.sanitize_for_serialization(core.read_node(args.node))
    if args.command == "drain":
        with about("cardpools", verb="list"):
            pools = custom.list_cluster_custom_object(GROUP, VERSION, "cardpools")["items"]
        outcome = drain.drain(node, pools, args.reason)
    else:
        outcome = drain.undrain(node)
    if outcome.failed:
        raise Failure(outcome.message)
    if outcome.annotations is not None:
        with about("node", args.node, verb="patch"):
            core.patch_node(args.node, {"metadata": {"annotations": outcome.annotations}})
    with writing():
        print(outcome.message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
