"""python -m clusterbench start|recovery|scale [--quick] (with PYTHONPATH=e2e, as `make bench` sets it)

`start` (clusterbench.start): gang start time on 64 KWOK nodes against an Indexed Job.
`recovery` (clusterbench.recovery): from a node fault under a running gang to the new attempt running, and
the operator's share of it: {"total_s": .., "operator_s": ..}.
`scale` (clusterbench.scale): 1,250 nodes / 10,000 cards: a burst of 400 jobs against plain pods, pass
durations and operator memory/CPU/writes at ~10,000 cardpool pods plus --other-pods, recovery of a 64 x 8
gang at rest and during a 4,000-pod burst. --quick: 250 nodes and smaller counts, a few minutes.

Each prints progress lines on stderr, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import import_module

from . import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusterbench", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=BENCHMARKS)
    parser.add_argument("--quick", action="store_true", help="start, recovery: one repeat; scale: 250 nodes")
    parser.add_argument("--fleet", default="bench64.yaml", help="start, recovery: fleet file in e2e/fleets")
    parser.add_argument("--other-pods", type=int, default=None, metavar="N",
                        help="scale: plain pods besides cardpool's (default 20000; 1000 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="scale: seed of the job mix")
    args = parser.parse_args(argv)
    if args.what == "scale":
        from .scale import run

        result = run(quick=args.quick, other_pods=args.other_pods, seed=args.seed)
        print(json.dumps(result))
        return 1 if "error" in result else 0
    run = import_module(f"clusterbench.{args.what}").run
    print(json.dumps(run(repeats=1 if args.quick else 3, fleet_file=args.fleet)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
