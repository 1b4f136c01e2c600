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


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test of paired right/wrong outcomes: b pairs where only the first
    is right, c where only the second is. Under "no difference" each discordant pair goes either
    way with probability 1/2, so p = min(1, 2·P(Binomial(b + c, 1/2) ≤ min(b, c)))."""
    require(isinstance(b, int) and isinstance(c, int) and b >= 0 and c >= 0,
            f"discordant counts must be integers >= 0, got {b!r}, {c!r}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)
