"""Entry point of the `cardpool` command."""

from __future__ import annotations

import argparse
import sys

from cardpool import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cardpool", description="cardpool: training jobs on accelerator pools")
    parser.add_argument("--version", action="version", version=f"cardpool {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"cardpool {__version__}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
