"""The AdEMAMix paper's Rosenbrock claim, with the settings of ``bench/rosenbrock_ademamix.py``.

AdEMAMix (``beta3 = 0.999``, ``alpha = 8``) must reach the 0.1-neighbourhood of the
minimum in fewer steps than Adam at the same learning rate, and stay there.
"""

from __future__ import annotations

from bench.rosenbrock_ademamix import MAX_STEPS, TOLERANCE, adam, ademamix, steps_to_minimum


def test_ademamix_reaches_the_minimum_before_adam() -> None:
    fast = steps_to_minimum(ademamix())
    slow = steps_to_minimum(adam())
    assert fast.steps is not None, f"AdEMAMix never came within {TOLERANCE} in {MAX_STEPS} steps"
    assert fast.final_distance < TOLERANCE
    assert slow.steps is None or fast.steps < slow.steps, (fast, slow)
