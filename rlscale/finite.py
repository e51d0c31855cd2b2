"""The one test of "a usable number" for metrics read from logs, tables and trackers.

A metric value is usable when it is a real number (Python or numpy int/float), not a bool (a
flag, though Python counts it as an int) and finite (NaN is "not measured", inf is a blow-up).
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def finite_float(v: Any) -> float | None:
    """float(v) when v is a finite real number that is not a bool; else None."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    x = float(v)
    return x if math.isfinite(x) else None
