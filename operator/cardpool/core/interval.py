"""How often a job should checkpoint: the Young/Daly interval.

Saving every T seconds of training costs the save's blocking time δ per save (a share δ/T of the time) and,
at each interruption, the training since the last save (T/2 on average, a share T/(2·M) at one interruption
per M seconds). The sum is least at T = √(2·M·δ) (Young 1974; Daly 2006 refines it for δ close to M), where
the waste is about √(2·δ/M): with a 1 s asynchronous save at one interruption per 3 hours, a save every
2.5 minutes and 1.4% of the time.
"""

from __future__ import annotations

import math


def young_daly(mtbf_s: float, save_s: float) -> float:
    """Seconds of training between saves for interruptions every `mtbf_s` seconds on the job's cards and a
    save that blocks training for `save_s` seconds. A save at least as long as half the MTBF gets the MTBF
    (saving more often could not finish)."""
    if mtbf_s <= 0:
        raise ValueError(f"mtbf_s must be positive, got {mtbf_s}")
    if save_s <= 0:
        raise ValueError(f"save_s must be positive, got {save_s}")
    if save_s >= mtbf_s / 2:
        return mtbf_s
    return math.sqrt(2 * mtbf_s * save_s)


def expected_waste(interval_s: float, mtbf_s: float, save_s: float, restart_s: float = 0.0) -> float:
    """Share of the wall time not spent on kept training, to first order: saves (δ/T), the training lost at
    each interruption (T/2/M) and the restart after it (R/M)."""
    return save_s / interval_s + interval_s / (2 * mtbf_s) + restart_s / mtbf_s
