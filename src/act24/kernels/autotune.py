"""Choosing a kernel per problem shape, one routine for every search (cuSPARSELt's algorithms, the sm90a GEMM's
launches, the 2:4 FP8 GEMM of `auto`): check each candidate's result against a reference (a failing or wrong one
is a line of what was tried, never timed), then time the correct ones (and, optionally, the fastest few again,
closer to sustained load), then cache the fastest for the life of the process."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import torch

from .timing import rel_error


@dataclass(frozen=True)
class Candidate:
    pick: Hashable  # what is chosen: an algorithm id, a launch, a GEMM
    label: str
    call: Callable[[], torch.Tensor] | None  # None: it cannot run here (`unavailable` says why)
    unavailable: str = ""


@dataclass(frozen=True)
class Choice:
    """What `autotune` chose for one shape, and what it saw of every candidate."""

    pick: Hashable
    label: str
    ms: float
    tried: tuple[str, ...]

    def describe(self) -> str:
        bad = sum(": wrong" in t or ": failed" in t for t in self.tried)
        return (f"{self.label} ({self.ms:.3f} ms; {len(self.tried)} tried"
                + (f", {bad} wrong or failed" if bad else "") + ")")


def autotune(cache: dict, key: Hashable, candidates: Iterable[Candidate], reference: torch.Tensor, tolerance: float,
             time: Callable[[Callable], float], *, what: str, end_on: type[Exception] | None = None,
             finalists: int = 0, refine: Callable[[dict], dict] | None = None,
             annotate: Callable[[Hashable], str] | None = None) -> Choice:
    """cache[key], else the fastest candidate whose result is within `tolerance` (relative error) of `reference`,
    timed by `time(call)`; with `refine`, the `finalists` fastest are timed again ({pick: call} -> {pick: ms}) and
    those times decide. `end_on`: a candidate raising it ends the list (not the first: that error propagates);
    any other exception marks that candidate failed. `annotate(pick)` adds to a timed candidate's line. When none
    is correct: RuntimeError, `what` (the sentence saying so) and every candidate's line."""
    if key in cache:
        return cache[key]
    tried, timed, calls = {}, {}, {}
    for i, c in enumerate(candidates):
        if c.call is None:
            tried[c.pick] = f"{c.label}: unavailable ({c.unavailable})"
            continue
        try:
            err = rel_error(c.call(), reference)
        except Exception as exc:  # noqa: BLE001 - a failing kernel is a result
            if end_on is not None and isinstance(exc, end_on):
                if i == 0:
                    raise
                tried[c.pick] = f"{c.label}: rejected, the end of the list ({str(exc).splitlines()[0][:80]})"
                break
            tried[c.pick] = f"{c.label}: failed ({type(exc).__name__}: {str(exc)[:120]})"
            continue
        if not err <= tolerance:
            tried[c.pick] = f"{c.label}: wrong (relative error {err:.2g})"
            continue
        timed[c.pick], calls[c.pick] = time(c.call), (c.call, c.label)
        tried[c.pick] = f"{c.label}: {timed[c.pick]:.3f} ms (relative error {err:.1e})" + (
            f", {note}" if annotate and (note := annotate(c.pick)) else "")
    if not timed:
        raise RuntimeError(f"{what}: " + "; ".join(tried.values()))
    if refine is not None:
        best = sorted(timed, key=timed.get)[:finalists]
        timed = refine({pick: calls[pick][0] for pick in best})
        for pick, ms in timed.items():
            tried[pick] += f", {ms:.3f} ms sustained"
    pick = min(timed, key=timed.get)
    cache[key] = Choice(pick, calls[pick][1], timed[pick], tuple(tried.values()))
    return cache[key]
