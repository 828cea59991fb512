"""Statistics of a ``compare`` job, as small pure functions on plain values.

``service.jobs.service.comparison`` gathers each optimizer's stored trials and calls
these; nothing here touches the database, so each function is tested on hand-made
values whose answer is known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

Direction: TypeAlias = Literal["minimize", "maximize"]

INTERVAL = 0.90
"""Coverage of the interval reported around each expected best value."""


@dataclass(frozen=True)
class BestOfK:
    """The best of ``k`` trials drawn with replacement: its mean and a central interval."""

    k: int
    mean: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class TrialTime:
    """One tuning trial, in trial order: its final value (None when it has none),
    whether that value counts (COMPLETE), and its training wall time in seconds."""

    value: float | None
    complete: bool
    seconds: float


@dataclass(frozen=True)
class TimeToTarget:
    target: float | None
    trials: int | None
    seconds: float | None


def best_of_k_distribution(
    values: Sequence[float], k: int, direction: Direction
) -> list[tuple[float, float]]:
    """The exact distribution of the best of ``k`` draws, with replacement, from ``values``.

    Returns ``(value, probability)`` pairs, values ascending, probabilities summing to 1.
    With the values ordered worst to best, ``x_1 .. x_n``, the best of ``k`` draws is
    ``x_i`` or worse with probability ``(i/n)^k``, so it is exactly ``x_i`` with
    probability ``(i/n)^k - ((i-1)/n)^k``. This is the bootstrap distribution (resampling
    ``k`` of the trials) with infinitely many resamples: no seed, no Monte Carlo noise.
    Tied values pool their probabilities.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = len(values)
    if n == 0:
        return []
    worst_first = sorted(values, reverse=direction == "minimize")
    pmf: dict[float, float] = {}
    for i, v in enumerate(worst_first, start=1):
        pmf[v] = pmf.get(v, 0.0) + (i / n) ** k - ((i - 1) / n) ** k
    return sorted(pmf.items())


def _quantile(dist: Sequence[tuple[float, float]], p: float) -> float:
    """The smallest value whose cumulative probability reaches ``p`` (lower quantile)."""
    total = 0.0
    for value, prob in dist:
        total += prob
        if total >= p - 1e-12:
            return value
    return dist[-1][0]


def expected_best(values: Sequence[float], budget: int, direction: Direction) -> list[BestOfK]:
    """Expected best value after ``k`` trials, ``k = 1 .. budget`` (random-restart curve).

    How good an optimizer's tuning is at a given budget: for each ``k``, the mean of the
    best of ``k`` of its trial values drawn with replacement, and the central
    ``INTERVAL`` (90%) interval of that best (its 5% and 95% lower quantiles), computed
    exactly (see ``best_of_k_distribution``). Non-finite values are ignored; with no
    value left every entry is ``None``. The mean at ``k = 1`` is the values' mean, and
    the mean improves (never worsens) with ``k``.

    The service passes COMPLETE trials only. A pruned trial's last value was measured
    at an earlier epoch than the others (a different training budget), and the pruner
    stopped it precisely because that value looked worse than its peers': it is not a
    draw from the same distribution, so counting it would bias the curve.
    """
    finite = [v for v in values if math.isfinite(v)]
    tail = (1.0 - INTERVAL) / 2
    out = []
    for k in range(1, budget + 1):
        dist = best_of_k_distribution(finite, k, direction)
        if not dist:
            out.append(BestOfK(k=k, mean=None, low=None, high=None))
            continue
        mean = math.fsum(v * p for v, p in dist)
        out.append(
            BestOfK(k=k, mean=mean, low=_quantile(dist, tail), high=_quantile(dist, 1.0 - tail))
        )
    return out


def reaches(value: float, target: float, direction: Direction) -> bool:
    """Whether ``value`` is at least as good as ``target`` (the job's ``target`` rule)."""
    return value >= target if direction == "maximize" else value <= target


def time_to_target(
    trials: Sequence[TrialTime], target: float | None, direction: Direction
) -> TimeToTarget:
    """How many trials, and how much training time, until one reached ``target``.

    ``trials`` are one optimizer's tuning trials in trial order. Every trial counts
    towards the budget spent (a pruned or failed trial used its time too), but only a
    COMPLETE trial's final value can reach the target, as for the job's own ``target``.
    ``trials`` and ``seconds`` are ``None`` when no trial reached it, or without a target.
    """
    if target is None:
        return TimeToTarget(target=None, trials=None, seconds=None)
    spent = 0.0
    for count, trial in enumerate(trials, start=1):
        spent += trial.seconds
        value = trial.value
        counts = trial.complete and value is not None and math.isfinite(value)
        if counts and value is not None and reaches(value, target, direction):
            return TimeToTarget(target=target, trials=count, seconds=spent)
    return TimeToTarget(target=target, trials=None, seconds=None)
