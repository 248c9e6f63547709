"""How the `cardpool` command fails: exit codes, the Failure main prints, and output errors told apart from
the cluster's (shared by every subcommand's module)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

OK, API_ERROR, USAGE, NOT_FOUND = 0, 1, 2, 3
PIPE_CLOSED = 128 + signal.SIGPIPE  # what a shell reports for a tool SIGPIPE ended (`yes | head -1`)
INTERRUPTED = 128 + signal.SIGINT


class Failure(Exception):
    """What went wrong, in words that name its object; main prints it and exits with `code`."""

    def __init__(self, message: str, code: int = API_ERROR) -> None:
        super().__init__(message)
        self.code = code


class PipeClosed(Exception):
    """The reader of stdout went away: not an error of the cluster nor of the command."""


class _Console(Console):
    def on_broken_pipe(self) -> None:  # rich's own exits 1; main decides (141, quietly)
        self.quiet = True
        raise PipeClosed


@contextmanager
def writing(what: str = "the output") -> Iterator[None]:
    """Output errors are told apart from the cluster's: a closed pipe ends quietly, others name the target."""
    try:
        yield
    except BrokenPipeError as exc:
        raise PipeClosed from exc
    except OSError as exc:
        raise Failure(f"cannot write {what}: {exc.strerror or exc}") from exc
