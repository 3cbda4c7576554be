"""Small-sample statistics for comparing variants over seeds, and the verdict rule every claim uses.

Runs of different variants with the same seed share their data order (and, for variants of one architecture,
their initialisation), so per-seed differences are paired: `difference` takes a paired Student t interval over the
seeds both sides ran when they share at least two, and a Welch t interval otherwise. Intervals come from scipy.stats, never from
normal quantiles: with 3 seeds the t quantile (4.30) is 2.2x the normal one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; `method` says how it was computed ("paired t, 3 seeds")."""

    estimate: float
    low: float
    high: float
    method: str

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    def text(self, fmt: str = "+.3f") -> str:
        """'+0.010 [-0.002, +0.022] (paired t, 3 seeds)'; without an interval, the estimate and the reason."""
        if not self.defined:
            return f"{self.estimate:{fmt}} ({self.method})"
        return f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}] ({self.method})"


def _no_interval(estimate: float, why: str) -> Interval:
    return Interval(float(estimate), math.nan, math.nan, why)


def mean_interval(values, level: float = LEVEL) -> Interval:
    """Mean of `values` with its one-sample Student t interval (n - 1 degrees of freedom)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return _no_interval(x.mean() if len(x) else math.nan, f"{len(x)} value{'s' * (len(x) != 1)}: no interval")
    if np.all(x == x[0]):  # scipy returns nan for zero spread; the interval is the point itself
        return Interval(float(x[0]), float(x[0]), float(x[0]), f"t, n = {len(x)}")
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(level)
    return Interval(float(x.mean()), float(ci.low), float(ci.high), f"t, n = {len(x)}")


def difference(a: pd.Series, b: pd.Series, level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) with its interval; `a` and `b` are indexed by seed.

    Same seeds on both sides: the paired t interval of the per-seed differences (n - 1 degrees of freedom). At
    least two seeds shared, but not all: the same, over the shared seeds only (a run and its baseline of one seed
    share initialization and data order, so their difference varies far less than either loss). Otherwise:
    Welch's unequal-variance t interval (Welch-Satterthwaite degrees of freedom)."""
    from scipy import stats

    a, b = a.astype(float), b.astype(float)
    shared = sorted(set(a.index) & set(b.index)) if a.index.is_unique and b.index.is_unique else []
    if (len(a) and len(shared) == len(a) == len(b)) or len(shared) >= 2:
        r = mean_interval(a[shared].to_numpy() - b[shared].to_numpy(), level)
        some = "" if len(shared) == len(a) == len(b) else f" shared of {len(a)} and {len(b)}"
        return Interval(r.estimate, r.low, r.high, f"paired t, {len(shared)} seeds{some}" if r.defined else
                        f"{len(shared)} seed: no interval")
    diff = a.mean() - b.mean() if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return _no_interval(diff, f"{len(a)} and {len(b)} seeds: no interval")
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return Interval(float(diff), float(ci.low), float(ci.high), f"Welch t, {len(a)} and {len(b)} seeds")


def paired_ratio_ci(num: list[float], den: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Ratio of two paired series (e.g. dense and 2:4 times of the same interleaved rounds): the geometric mean of
    the per-pair ratios num/den and its Student t interval on the log scale, (estimate, low, high); the interval
    is nan with fewer than 2 pairs."""
    logs = mean_interval([math.log(a / b) for a, b in zip(num, den, strict=True)], level)
    return math.exp(logs.estimate), math.exp(logs.low), math.exp(logs.high)


def nested_ratio_ci(num: dict, den: dict, level: float = LEVEL) -> Interval:
    """Ratio of two paired series measured in several independent processes (process -> times of its rounds, paired
    by round): the geometric mean of the per-round ratios num/den and its interval with the rounds nested within
    processes. Each process contributes the mean log ratio of its rounds, and the Student t interval is taken over
    those process means (n processes - 1 degrees of freedom), so the variation between processes (per-process
    choices, the machine's state) is in it. With one process, the paired t interval over its rounds, whose method
    says that the variation between processes is not in it."""
    logs = {p: [math.log(a / b) for a, b in zip(num[p], den[p], strict=True)] for p in num if num[p]}
    if len(logs) < 2:
        rounds = next(iter(logs.values()), [])
        r = mean_interval(rounds, level)
        why = f"paired t over the {len(rounds)} rounds of 1 process (no variation between processes in it)"
        return Interval(math.exp(r.estimate) if rounds else math.nan, math.exp(r.low), math.exp(r.high),
                        why if r.defined else r.method)
    r = mean_interval([sum(v) / len(v) for v in logs.values()], level)
    fewest, most = min(map(len, logs.values())), max(map(len, logs.values()))
    rounds = f"{fewest}" if fewest == most else f"{fewest}-{most}"
    return Interval(math.exp(r.estimate), math.exp(r.low), math.exp(r.high),
                    f"t over {len(logs)} processes ({rounds} rounds each)")


def verdict(interval: Interval, low: float = -math.inf, high: float = math.inf, unit: str = "") -> str:
    """The three-way rule of every claim compared with a threshold: "reproduced" if the whole interval lies in
    [low, high], "not reproduced" if it lies wholly outside, else "inconclusive" (saying why)."""
    if not interval.defined:
        return f"inconclusive: no interval ({interval.method})"
    if low <= interval.low and interval.high <= high:
        return "reproduced"
    if interval.high < low or interval.low > high:
        return "not reproduced"
    bound = low if interval.low < low else high
    return f"inconclusive: the {LEVEL:.0%} interval [{interval.low:.3f}, {interval.high:.3f}] contains {bound:g}{unit}"


BORDERLINE = 0.1  # a deciding interval end within this share of the claim's margin marks the verdict borderline


def borderline(interval: Interval, low: float = -math.inf, high: float = math.inf, margin: float | None = None) -> str:
    """Why the verdict of `verdict(interval, low, high)` is borderline ("" if it is not): the interval end that
    decides it lies within BORDERLINE x `margin` of its bound. `margin`: the distance from the bound to no effect
    (0.02 nats for a non-inferiority margin of 0.02; 0.2x for a speedup threshold of 1.2x); default |bound|.
    An inconclusive verdict has no deciding end."""
    if not interval.defined:
        return ""
    inside = low <= interval.low and interval.high <= high
    ends = [(interval.low, low, "lower end"), (interval.high, high, "upper end")] if inside else \
        [(interval.high, low, "upper end")] if interval.high < low else \
        [(interval.low, high, "lower end")] if interval.low > high else []
    for end, bound, name in ends:
        scale = abs(bound) if margin is None else margin
        if math.isfinite(bound) and abs(end - bound) <= BORDERLINE * scale:
            return f"borderline: the {name} {end:.4g} is within {BORDERLINE:.0%} of the margin from {bound:g}"
    return ""


def decide(interval: Interval, low: float = -math.inf, high: float = math.inf, unit: str = "",
           margin: float | None = None) -> str:
    """`verdict`, with the reason appended when it is borderline (`borderline`): the verdict a claims table shows."""
    v, near = verdict(interval, low, high, unit), borderline(interval, low, high, margin)
    return f"{v} ({near})" if near else v


def seeds_to_decide(values, low: float = -math.inf, high: float = math.inf, most: int = 1000) -> int | None:
    """The smallest number of seeds at which a t interval with the mean and spread of `values` (one value per seed,
    e.g. paired differences) would lie wholly inside or wholly outside [low, high]; None beyond `most` (or without
    a spread). What a rerun with more seeds would need, if the mean and spread stay as measured."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or not np.std(x, ddof=1) > 0:
        return None
    mean, sd = float(x.mean()), float(np.std(x, ddof=1))
    for n in range(2, most + 1):
        half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
        iv = Interval(mean, mean - half, mean + half, "")
        if not verdict(iv, low, high).startswith("inconclusive"):
            return n
    return None


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


def order_test(expected: list[float], observed: list[float]) -> tuple[float, float]:
    """(Kendall's tau of `observed` with `expected`, exact one-sided permutation p-value): the share of all n!
    orderings of `observed` whose tau with `expected` is at least as high (scipy.stats.permutation_test)."""
    from scipy import stats

    tau = kendall_tau(expected, observed)
    if len(observed) < 3:
        return tau, math.nan
    res = stats.permutation_test((list(observed),), lambda o: kendall_tau(expected, list(o)),
                                 permutation_type="pairings", alternative="greater", vectorized=False,
                                 n_resamples=math.factorial(len(observed)))
    return tau, float(res.pvalue)
