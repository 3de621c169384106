"""Thresholds from impostor scores: the lowest one that keeps a false-accept rate."""

from __future__ import annotations

import numpy as np


def threshold_at_far(nontargets: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate does not exceed ``far``."""
    ordered = np.sort(np.asarray(nontargets, dtype=np.float64))[::-1]
    allowed = int(np.floor(far * ordered.size))  # non-targets that may pass
    if allowed >= ordered.size:
        return float(ordered[-1])
    # Accept strictly above the (allowed+1)-th highest non-target score.
    return float(np.nextafter(ordered[allowed], np.inf))
