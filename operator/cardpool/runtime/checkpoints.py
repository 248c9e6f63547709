"""Checkpoints in a folder (file:// URIs): each step in its own directory, made complete by an atomic rename,
so a reader never sees half of one. Object stores plug in behind the same three calls."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class Saved:
    step: int
    uri: str
    world_size: int
    path: Path
    seconds: float | None = None
    """How long the save took (None: not measured, e.g. found by `latest`)."""


class FileCheckpoints:
    def __init__(self, uri: str):
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"FileCheckpoints needs a file:// URI, got {uri!r}")
        self.root = Path(parsed.path)

    def _final(self, step: int) -> Path:
        return self.root / f"step-{step:012d}"

    def save(self, step: int, world_size: int, write) -> Saved:
        """`write(folder)` writes the state into a fresh folder; the step becomes visible only when complete."""
        started = time.monotonic()
        final = self._final(step)
        staging = self.root / f".staging-{step:012d}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        write(staging)
        (staging / "cardpool.json").write_text(json.dumps({"step": step, "worldSize": world_size,
                                                           "complete": True}))
        for f in staging.iterdir():  # durable before it is visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return Saved(step, final.as_uri(), world_size, final, time.monotonic() - started)

    def latest(self) -> Saved | None:
        """The newest complete checkpoint, if any."""
        if not self.root.exists():
            return None
        for folder in sorted(self.root.glob("step-*"), reverse=True):
            meta = folder / "cardpool.json"
            if meta.exists():
                info = json.loads(meta.read_text())
                if info.get("complete"):
                    return Saved(info["step"], folder.as_uri(), info["worldSize"], folder)
        return None

    def load(self, uri: str) -> Path:
        path = Path(urlparse(uri).path)
        if not (path / "cardpool.json").exists():
            raise FileNotFoundError(f"{uri} is not a complete checkpoint")
        return path
