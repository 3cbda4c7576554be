"""Small statistics for comparing variants over seeds."""

from __future__ import annotations

import itertools
import math

import pandas as pd


def welch_ci95(a: pd.Series, b: pd.Series) -> float:
    """Half-width of a normal-approximation 95% interval of mean(a) - mean(b); nan below 2 seeds each."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return 1.96 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-a of two equally long sequences: (concordant - discordant pairs) / all pairs.
    Ties (including inf == inf, a diverged row) count as neither."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    if not pairs:
        return math.nan

    def order(a: float, b: float) -> int:  # compares, never subtracts: inf - inf would be nan
        return int(b > a) - int(b < a)

    total = sum(order(x[i], x[j]) * order(y[i], y[j]) for i, j in pairs)
    return total / len(pairs)


def paired_ratio_ci(num: list[float], den: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of two paired series (e.g. dense and 2:4 times of the same interleaved rounds): the geometric mean of
    the per-pair ratios num/den and its Student t interval on the log scale, (estimate, low, high); the interval
    is nan with fewer than 2 pairs."""
    from scipy import stats

    logs = [math.log(a / b) for a, b in zip(num, den, strict=True)]
    mean = sum(logs) / len(logs)
    if len(logs) < 2:
        return math.exp(mean), math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (len(logs) - 1))
    half = stats.t.ppf(0.5 + level / 2, len(logs) - 1) * sd / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)
