"""Data-parallel linear regression with numpy: the reference trainer of cardpool's tests.

Reads cardpool's env contract. Each step's global batch depends only on the step number and is split over
CARDPOOL_WORKERS processes, so any number of workers computes the same model (to floating-point rounding).
On SIGTERM it saves a checkpoint at the next step boundary and exits 0; with CARDPOOL_RESUME_* it continues
from that checkpoint. Prints one JSON line per event.
"""

from __future__ import annotations

import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np

from cardpool.runtime import Contract, FileCheckpoints, GracefulStop

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
    total = int(os.environ.get("TRAIN_STEPS", "40"))
    pause = float(os.environ.get("TRAIN_STEP_SECONDS", "0"))
    store = FileCheckpoints(contract.checkpoint_uri)
    if contract.resume:
        w = np.load(store.load(contract.resume.uri) / "w.npy")
        start = contract.resume.step
        emit(event="resumed", step=start, from_world_size=contract.resume.world_size,
             world_size=contract.world_size)
    else:
        w, start = np.zeros(DIM), 0
    with Pool(contract.workers) as pool:
        stop = GracefulStop()  # after the fork: the pool's workers keep the default SIGTERM, so they can end
        for step in range(start, total):
            shards = np.array_split(batch(step), contract.workers)
            grads = pool.map(shard_gradient, [(w, rows) for rows in shards])
            w = w - LR * np.sum(grads, axis=0) / GLOBAL_BATCH
            emit(event="step", step=step + 1)
            if stop.requested and step + 1 < total:
                saved = store.save(step + 1, contract.world_size, lambda d, w=w: np.save(d / "w.npy", w))
                emit(event="saved", step=saved.step, uri=saved.uri)
                return 0
            time.sleep(pause)
    saved = store.save(total, contract.world_size, lambda d: np.save(d / "w.npy", w))
    emit(event="done", step=total, uri=saved.uri, w=w.tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
