"""The `cardpool` command line: subcommands and options, checked before anything reaches the cluster.

kubectl's global options (--kubeconfig, --context, -n, -A, -o, -w) are accepted before or after the
subcommand: each subparser gets them too, with SUPPRESS defaults so that a value given before the subcommand
is not overwritten by the subparser's default. Options with a closed set of values refuse anything else and
list what they accept.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cardpool import __version__
from cardpool.api.trainingjob import Phase

OUTPUTS = ("table", "json", "yaml")
PHASES = tuple(p.value for p in Phase)
JOB_KINDS = ("job", "jobs", "trainingjob", "trainingjobs", "tj")
DEFAULT_WATCH_SECONDS = 2.0
WATCH_FLAGS = ("-w", "--watch")


def hours(text: str) -> float:
    return _positive(text, "hours")


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def interval(text: str) -> float | None:
    """`advised` (None: the Young/Daly interval) or seconds."""
    return None if text.strip().lower() == "advised" else seconds(text)


def at_least_zero(text: str) -> float:
    """Seconds, 0 or more."""
    try:
        return 0.0 if float(text) == 0 else seconds(text)
    except ValueError:
        return seconds(text)


def phase(text: str) -> str:
    """A job phase, any case -> its canonical spelling."""
    found = next((p for p in PHASES if p.lower() == text.strip().lower()), None)
    if found is None:
        raise argparse.ArgumentTypeError(f"unknown phase {text!r} (choose from {', '.join(PHASES)})")
    return found


def _positive(text: str, unit: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of {unit}")
    return value


def seconds(text: str) -> float:
    return _positive(text, "seconds")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def attach_watch_seconds(argv: list[str]) -> list[str]:
    """`-w [SECONDS]` anywhere: a bare -w/--watch followed by a word that is not a number (`cardpool -w jobs`)
    would otherwise take that word as its SECONDS; it becomes --watch=2 here, before argparse sees it."""
    out: list[str] = []
    rest = iter(range(len(argv)))
    for i in rest:
        token = argv[i]
        if token == "--":
            out += argv[i:]
            break
        if token in WATCH_FLAGS:
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is not None and _is_number(following):
                out.append(f"--watch={following}")
                next(rest)
            else:
                out.append(f"--watch={DEFAULT_WATCH_SECONDS}")
            continue
        out.append(token)
    return out


class _Parser(argparse.ArgumentParser):
    def _print_message(self, message: str, file=None) -> None:
        # argparse drops write errors, so `cardpool --help | head -1` would lose the rest and exit 0: let a
        # closed pipe through to main, which exits 141 as for any output
        if message:
            (file or sys.stderr).write(message)
            (file or sys.stderr).flush()


def _global_options(parser: argparse.ArgumentParser, in_subcommand: bool) -> None:
    # in a subcommand: no defaults of its own, or they would overwrite what was given before the subcommand
    def default(value: object) -> object:
        return argparse.SUPPRESS if in_subcommand else value

    parser.add_argument("--kubeconfig", default=default(None),
                        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", default=default(None), help="kubeconfig context")
    parser.add_argument("-n", "--namespace", default=default(None), help="namespace (default: the context's)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", default=default(False),
                        help="jobs of every namespace")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default=default("table"))
    parser.add_argument("-w", "--watch", nargs="?", type=seconds, const=DEFAULT_WATCH_SECONDS, metavar="SECONDS",
                        default=default(None),
                        help="show again every SECONDS (default 2) until Ctrl-C: status, jobs, describe, pool, map")


def program() -> str:
    """How the user called it: kubectl runs a plugin as kubectl-cardpool, and its usage should say what they typed."""
    return "kubectl cardpool" if Path(sys.argv[0]).name.startswith("kubectl-cardpool") else "cardpool"


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog=program(), description="cardpool: training jobs on accelerator pools",
                  epilog="Global options go before or after the command. Exit codes: 0 done, 1 failed "
                         "(API unreachable or refused, output not written, a request nothing would act on: "
                         "a drain of a node in no CardPool, an undrain with no drain request), 2 bad usage, "
                         "3 not found, 141 output pipe closed.")
    top.add_argument("--version", action="version", version=f"cardpool {__version__}")
    _global_options(top, in_subcommand=False)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=help)
        _global_options(parser, in_subcommand=True)
        return parser

    command("version", "print the version")
    command("status", "pools and jobs at a glance")
    jobs = command("jobs", "TrainingJobs as a table")
    jobs.add_argument("--pool", help="only jobs of this CardPool")
    jobs.add_argument("--phase", type=phase, metavar="PHASE",
                      help=f"only jobs in this phase, any case: {', '.join(PHASES)}")
    describe = command("describe", "a job's story: attempts, placement, conditions, events")
    describe.add_argument("kind", choices=JOB_KINDS)
    describe.add_argument("name")
    command("pool", "a CardPool's capacity per group").add_argument("name")
    command("queues", "TenantQueues: per queue and model, cards guaranteed, used, borrowed, lent; jobs running "
                      "and waiting")
    card_map = command("map", "a pool's card map: each node's cards, busy by job, free, unhealthy")
    card_map.add_argument("name")
    card_map.add_argument("--svg", metavar="FILE", help="also write the map as an SVG image")
    drain = command("drain", "ask the operator to drain a node of a CardPool (its jobs restart elsewhere)")
    drain.add_argument("node")
    drain.add_argument("--reason", help="why, shown in the node's drain record and events")
    command("undrain", "withdraw a drain request; the operator returns the node").add_argument("node")
    _simulate(command("simulate", "capacity planning: a pool, a fleet and a job trace through seeded failures, "
                                  "the operator's own pass deciding (offline: no cluster)"))
    return top


def _simulate(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("inputs (formats: docs/simulate.md)")
    files.add_argument("--pool", required=True, metavar="POOL.yaml", help="a CardPool manifest")
    files.add_argument("--nodes", required=True, metavar="FLEET.yaml", help="nodes per group of the pool")
    files.add_argument("--jobs", required=True, metavar="TRACE", help="the job trace, .csv or .yaml")
    run = parser.add_argument_group("the run")
    run.add_argument("--hours", type=hours, default=168.0, help="simulated hours (default 168, a week)")
    run.add_argument("--seed", type=int, default=1, help="seed of the failures (default 1)")
    faults = parser.add_argument_group("failures")
    faults.add_argument("--failures", choices=("none", "default"), default="default",
                        help="none, or default: published mix and rates, one interruption per 30,000 card-hours "
                             "(default)")
    faults.add_argument("--mtbf-hours", type=hours, metavar="H",
                        help="hours between interruptions over the whole fleet (instead of the default rate)")
    faults.add_argument("--repair-hours", type=hours, metavar="H", help="a node or card back after H (default 4)")
    faults.add_argument("--rack-share", type=share, metavar="F",
                        help="share of node faults that take the node's whole rack (default 0)")
    trainer = parser.add_argument_group("trainer")
    trainer.add_argument("--save-seconds", type=seconds, default=1.0, metavar="S",
                         help="training stopped by each checkpoint save (default 1: asynchronous, in memory)")
    trainer.add_argument("--interval", type=interval, default=None, metavar="advised|S",
                         help="seconds of training between saves, or advised: Young/Daly for the cards an attempt "
                              "holds (default)")
    trainer.add_argument("--restart-seconds", type=at_least_zero, default=60.0, metavar="S",
                         help="from an attempt's last pod running to training: rendezvous, checkpoint load "
                              "(default 60)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="OUT.json", help="write every figure as JSON")
    out.add_argument("--plots", metavar="DIR", help="write SVG plots: utilisation, queue, ETTR, lost work")


def parse(argv: list[str]) -> argparse.Namespace:
    """Raises SystemExit as argparse does (2 after printing the usage error, 0 after --help/--version)."""
    top = parser()
    args = top.parse_args(attach_watch_seconds(argv))
    if args.watch and args.command in ("drain", "undrain", "simulate"):
        top.error(f"--watch does not apply to {args.command}")
    if args.command == "simulate" and args.failures == "none":
        given = [flag for flag, value in (("--mtbf-hours", args.mtbf_hours), ("--repair-hours", args.repair_hours),
                                          ("--rack-share", args.rack_share)) if value is not None]
        if given:
            top.error(f"simulate: {', '.join(given)} does not apply with --failures none")
    return args
