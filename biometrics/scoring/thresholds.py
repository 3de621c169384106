"""Operating thresholds from non-target (impostor) scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def threshold_at_far(nontargets: npt.ArrayLike, far: float) -> float:
    """The lowest threshold whose false-accept rate does not exceed ``far``
    (accepting scores at or above it)."""
    ordered = np.sort(np.asarray(nontargets, dtype=np.float64))[::-1]
    allowed = int(np.floor(far * ordered.size))  # non-targets that may pass
    if allowed >= ordered.size:
        return float(ordered[-1])
    # Accept strictly above the (allowed+1)-th highest non-target score.
    return float(np.nextafter(ordered[allowed], np.inf))
