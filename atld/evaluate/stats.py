"""Statistics of the evaluation tables (torch-free)."""

from __future__ import annotations

import math

from atld.errors import check_int_at_least, require

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95 % by default), as fractions in [0, 1].
    Unlike the normal approximation it stays inside [0, 1] and is sensible at k = 0 or k = n."""
    check_int_at_least("n", n, 1)
    require(isinstance(k, int) and 0 <= k <= n, f"k must be an integer in [0, n={n}], got {k!r}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); say so instead of leaving a rounding error
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def p_value_text(p: float | None) -> str:
    """A p-value as a reader should see it: "p < 0.001" / "p < 0.01" below those thresholds (a
    permutation test with 100 permutations cannot go below 1/101 = 0.0099, and printing that
    floor as "p = 0.0099" reads as a measured value), else "p = 0.03" (two significant digits)."""
    if p is None or p != p:
        return "p = –"
    for threshold in (0.001, 0.01):
        if p < threshold:
            return f"p < {threshold:g}"
    return f"p = {p:.2g}"
