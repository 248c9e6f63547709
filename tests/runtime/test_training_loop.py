"""A real data-parallel training loop (numpy, several processes) through save, kill and resume at another
world size: it continues from the saved step and ends with the same model as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAINER = Path(__file__).resolve().parents[2] / "e2e" / "trainers" / "linear_regression.py"


def contract(workers: int, ckpt: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CARDPOOL_JOB": "lr", "CARDPOOL_NAMESPACE": "test", "CARDPOOL_ATTEMPT": "1",
            "CARDPOOL_RANK": "0", "CARDPOOL_WORKERS": str(workers), "CARDPOOL_CARDS_PER_WORKER": "1",
            "CARDPOOL_WORLD_SIZE": str(workers), "CARDPOOL_CHECKPOINT_URI": ckpt.as_uri(), **extra}


def events(proc: subprocess.Popen) -> list[dict]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_save_kill_and_resume_at_another_world_size_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = events(subprocess.Popen([sys.executable, str(TRAINER)], env=contract(4, tmp_path / "whole"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reference = np.array(whole[-1]["w"])
    assert whole[-1] == {**whole[-1], "event": "done", "step": 40}

    first = subprocess.Popen([sys.executable, str(TRAINER)],
                             env=contract(4, tmp_path / "ckpt", TRAIN_STEP_SECONDS="0.05"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:  # wait, with a deadline, until training is under way
        seen.append(json.loads(first.stdout.readline()))
        if seen[-1]["step"] >= 10:
            break
    assert seen and seen[-1]["step"] >= 10, f"the trainer did not reach step 10 in 30 s: {seen}"
    first.send_signal(signal.SIGTERM)  # a planned disruption: save at the next step boundary and exit
    rest = events(first)
    saved = rest[-1]
    assert saved["event"] == "saved" and 10 <= saved["step"] < 40  # the step it was at, or the next

    resumed = events(subprocess.Popen(
        [sys.executable, str(TRAINER)], env=contract(2, tmp_path / "ckpt", CARDPOOL_RESUME_URI=saved["uri"],
                                                     CARDPOOL_RESUME_STEP=str(saved["step"]),
                                                     CARDPOOL_RESUME_WORLD_SIZE="4"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    assert resumed[0] == {"event": "resumed", "step": saved["step"], "from_world_size": 4, "world_size": 2}
    assert resumed[1] == {"event": "step", "step": saved["step"] + 1}  # continues, nothing repeated
    assert resumed[-1]["event"] == "done"
    np.testing.assert_allclose(np.array(resumed[-1]["w"]), reference, rtol=1e-12, atol=1e-12)
