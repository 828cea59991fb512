"""The statistics of a compare job, on hand-made values whose answer is known."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from service.jobs.comparison import (
    BestOfK,
    TimeToTarget,
    TrialTime,
    best_of_k_distribution,
    expected_best,
    time_to_target,
)


def test_best_of_three_draws_from_one_two_three() -> None:
    # P(max <= i) = (i/3)^3: 1/27, 8/27, 27/27
    dist = dict(best_of_k_distribution([3.0, 1.0, 2.0], 3, "maximize"))
    assert dist == pytest.approx({1.0: 1 / 27, 2.0: 7 / 27, 3.0: 19 / 27})
    # the best when minimizing is the smallest: mirrored
    dist = dict(best_of_k_distribution([3.0, 1.0, 2.0], 3, "minimize"))
    assert dist == pytest.approx({1.0: 19 / 27, 2.0: 7 / 27, 3.0: 1 / 27})


def test_expected_best_of_one_two_three() -> None:
    curve = expected_best([1.0, 2.0, 3.0], 3, "maximize")
    assert [e.k for e in curve] == [1, 2, 3]
    assert curve[0].mean == pytest.approx(2.0)  # one draw: the plain mean
    assert curve[1].mean == pytest.approx(1 * 1 / 9 + 2 * 3 / 9 + 3 * 5 / 9)
    assert curve[2].mean == pytest.approx(1 * 1 / 27 + 2 * 7 / 27 + 3 * 19 / 27)
    # 90% interval: the 5% and 95% quantiles of the best of k
    assert (curve[0].low, curve[0].high) == (1.0, 3.0)
    assert (curve[2].low, curve[2].high) == (2.0, 3.0)  # P(best = 1) = 1/27 < 5%
    minimizing = expected_best([1.0, 2.0, 3.0], 3, "minimize")
    assert minimizing[2].mean == pytest.approx(3 * 1 / 27 + 2 * 7 / 27 + 1 * 19 / 27)
    assert (minimizing[2].low, minimizing[2].high) == (1.0, 2.0)


def test_ties_pool_their_probability() -> None:
    assert best_of_k_distribution([5.0, 5.0], 4, "maximize") == [(5.0, pytest.approx(1.0))]
    curve = expected_best([5.0, 5.0, 5.0], 2, "minimize")
    assert curve == [BestOfK(k, pytest.approx(5.0), 5.0, 5.0) for k in (1, 2)]  # type: ignore[arg-type]


def test_expected_best_matches_a_monte_carlo_bootstrap() -> None:
    values = [0.3, 0.9, 0.5, 0.7, 0.1, 0.8]
    rng = random.Random(0)
    for k in (1, 3, 6):
        draws = [max(rng.choices(values, k=k)) for _ in range(20_000)]
        exact = expected_best(values, k, "maximize")[-1]
        assert exact.mean == pytest.approx(sum(draws) / len(draws), abs=0.01)


def test_expected_best_is_monotone_and_ignores_non_finite_values() -> None:
    curve = expected_best([0.2, math.nan, 0.4, math.inf, 0.1], 5, "minimize")
    means = [e.mean for e in curve]
    assert means[0] == pytest.approx((0.2 + 0.4 + 0.1) / 3)
    assert all(a is not None and b is not None and b <= a for a, b in itertools.pairwise(means))
    assert all(e.low is not None and e.high is not None and e.low <= e.high for e in curve)


def test_expected_best_without_values_is_null_for_each_k() -> None:
    assert expected_best([], 2, "maximize") == [
        BestOfK(1, None, None, None),
        BestOfK(2, None, None, None),
    ]
    assert expected_best([1.0], 0, "maximize") == []
    with pytest.raises(ValueError, match="k must be"):
        best_of_k_distribution([1.0], 0, "maximize")


def test_time_to_target_counts_every_trial_but_only_complete_values_reach() -> None:
    trials = [
        TrialTime(0.5, True, 2.0),
        TrialTime(0.95, False, 1.0),  # pruned: its value does not count, its time does
        TrialTime(None, False, 0.5),  # failed
        TrialTime(0.9, True, 3.0),
        TrialTime(0.99, True, 4.0),
    ]
    assert time_to_target(trials, 0.9, "maximize") == TimeToTarget(0.9, 4, 6.5)
    assert time_to_target(trials, 0.5, "maximize") == TimeToTarget(0.5, 1, 2.0)
    assert time_to_target(trials, 1.0, "maximize") == TimeToTarget(1.0, None, None)
    assert time_to_target(trials, 0.6, "minimize") == TimeToTarget(0.6, 1, 2.0)
    assert time_to_target(trials, None, "maximize") == TimeToTarget(None, None, None)
    assert time_to_target([], 0.1, "minimize") == TimeToTarget(0.1, None, None)
    assert time_to_target([TrialTime(math.nan, True, 1.0)], 0.0, "minimize").trials is None
