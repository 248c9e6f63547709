"""The env contract as a trainer reads it: who am I, how many of us, where to resume from."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Resume:
    uri: str
    step: int
    world_size: int


@dataclass(frozen=True)
class Contract:
    job: str
    namespace: str
    attempt: int
    rank: int
    workers: int
    cards_per_worker: int
    world_size: int
    coordinator: str
    accelerator: str
    checkpoint_uri: str | None
    graceful_save_seconds: int
    resume: Resume | None
    layout: list[dict]
    job_uid: str = ""
    pod: str = ""
    checkpoint_interval_seconds: int | None = None
    """The operator's advice on how often to save (Young/Daly for this attempt's nodes and the last reported
    save time); None before any save time was reported. See SaveSchedule."""

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Contract:
        """Read the CARDPOOL_* variables the operator sets; a missing required one names itself."""
        env = os.environ if env is None else env

        def need(name: str) -> str:
            if name not in env:
                raise KeyError(f"{name} is not set: not running under cardpool's env contract")
            return env[name]

        resume = None
        if "CARDPOOL_RESUME_URI" in env:
            resume = Resume(env["CARDPOOL_RESUME_URI"], int(need("CARDPOOL_RESUME_STEP")),
                            int(need("CARDPOOL_RESUME_WORLD_SIZE")))
        return cls(
            job=need("CARDPOOL_JOB"), namespace=need("CARDPOOL_NAMESPACE"), attempt=int(need("CARDPOOL_ATTEMPT")),
            rank=int(need("CARDPOOL_RANK")), workers=int(need("CARDPOOL_WORKERS")),
            cards_per_worker=int(need("CARDPOOL_CARDS_PER_WORKER")), world_size=int(need("CARDPOOL_WORLD_SIZE")),
            coordinator=env.get("CARDPOOL_COORDINATOR", ""), accelerator=env.get("CARDPOOL_ACCELERATOR", ""),
            checkpoint_uri=env.get("CARDPOOL_CHECKPOINT_URI"),
            graceful_save_seconds=int(env.get("CARDPOOL_GRACEFUL_SAVE_SECONDS", "0")),
            resume=resume, layout=json.loads(env.get("CARDPOOL_LAYOUT", "[]")), job_uid=env.get("CARDPOOL_JOB_UID", ""),
            pod=env.get("CARDPOOL_POD", ""),
            checkpoint_interval_seconds=int(env["CARDPOOL_CHECKPOINT_INTERVAL_SECONDS"])
            if env.get("CARDPOOL_CHECKPOINT_INTERVAL_SECONDS") else None)
