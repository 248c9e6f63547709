"""Data-parallel linear regression with numpy: the reference trainer of cardpool's tests.

Reads cardpool's env contract. Each step's global batch depends only on the step number and is split over
CARDPOOL_WORLD_SIZE processes, so any world size computes the same model (to floating-point rounding).
Rank 0 trains (its process pool stands for the whole world); the other ranks hold their place until they are
stopped. On SIGTERM rank 0 saves a checkpoint at the next step boundary and exits 0; with CARDPOOL_RESUME_*
it continues from that checkpoint. Under the operator (CARDPOOL_POD set) rank 0 reports its checkpoints
(every TRAIN_CHECKPOINT_EVERY steps and on SIGTERM) and its progress. Prints one JSON line per event.
"""

from __future__ import annotations

import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np

from cardpool.runtime import Contract, FileCheckpoints, GracefulStop, ProgressReporter, report_checkpoint

DIM, SAMPLES, GLOBAL_BATCH, LR, SEED = 8, 4096, 64, 0.05, 7


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(SAMPLES, DIM))
    y = x @ rng.normal(size=DIM) + 0.01 * rng.normal(size=SAMPLES)
    return x, y


X, Y = dataset()


def shard_gradient(args: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    w, rows = args
    xs, ys = X[rows], Y[rows]
    return xs.T @ (xs @ w - ys)  # summed; divided by the global batch once all shards are in


def batch(step: int) -> np.ndarray:
    return np.random.default_rng(SEED + step).choice(SAMPLES, GLOBAL_BATCH, replace=False)


def emit(**event) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    contract = Contract.from_env()
    if not contract.is_rank0:
        return hold(contract)
    total = int(os.environ.get("TRAIN_STEPS", "40"))
    pause = float(os.environ.get("TRAIN_STEP_SECONDS", "0"))
    every = int(os.environ.get("TRAIN_CHECKPOINT_EVERY", "0"))
    store = FileCheckpoints(contract.checkpoint_uri)
    under_operator = bool(contract.pod)
    progress = ProgressReporter(contract)

    def save(step: int, weights: np.ndarray, event: str, **extra) -> None:
        saved = store.save(step, contract.world_size, lambda d: np.save(d / "w.npy", weights))
        if under_operator:
            report_checkpoint(contract, saved, progress=progress)
        emit(event=event, step=saved.step, uri=saved.uri, **extra)
    if contract.resume:
        w = np.load(store.load(contract.resume.uri) / "w.npy")
        start = contract.resume.step
        emit(event="resumed", step=start, from_world_size=contract.resume.world_size,
             world_size=contract.world_size)
    else:
        w, start = np.zeros(DIM), 0
    with Pool(min(contract.world_size, os.cpu_count() or 1)) as pool:
        stop = GracefulStop()  # after the fork: the pool's workers keep the default SIGTERM, so they can end
        for step in range(start, total):
            shards = np.array_split(batch(step), contract.world_size)
            grads = pool.map(shard_gradient, [(w, rows) for rows in shards])
            w = w - LR * np.sum(grads, axis=0) / GLOBAL_BATCH
            emit(event="step", step=step + 1)
            if under_operator:
                progress.report(step + 1, total)
            if stop.requested and step + 1 < total:
                save(step + 1, w, "saved")
                return 0
            if every and (step + 1) % every == 0 and step + 1 < total:
                save(step + 1, w, "checkpoint")
            time.sleep(pause)
    save(total, w, "done", w=w.tolist())
    return 0


def hold(contract: Contract) -> int:
    """A rank other than 0: present in the gang until stopped."""
    stop = GracefulStop()
    emit(event="holding", rank=contract.rank)
    while not stop.requested:
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
