"""Learning-rate schedules as multipliers of the base LR, and their LambdaLR wrapper.

Each schedule is a pure function ``f(step, total_steps, **hparams) -> float`` of Python
numbers (no torch), so it can be tested, plotted or previewed by the API process.
``step`` runs over ``[0, total_steps]``: ``f(s)`` scales the learning rate of the
optimizer step taken after ``s`` scheduler steps, and ``f(total_steps)`` is the end of
the run (values past it hold, values before 0 clamp to 0).

Phase lengths are whole numbers of steps, so a warm-up peaks at exactly 1 on a step:
``W = round(warmup_frac * T)`` and ``D = round(decay_frac * T)``, except that a
requested decay always spans at least one step, so that it reaches ``final_frac`` at
``T`` even for very short runs, and the warm-up yields the steps a decay needs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from optimizers.registry import get_schedule_spec

if TYPE_CHECKING:
    import torch

__all__ = [
    "build_schedule",
    "constant",
    "one_cycle",
    "warmup_cosine",
    "warmup_stable_decay",
]


def constant(step: int, total_steps: int, warmup_frac: float = 0.0) -> float:
    """1 after an optional linear warm-up from 0 over ``warmup_frac`` of the run."""
    s, total = _clamp(step, total_steps)
    warmup = _round(warmup_frac * total)
    return _warmup(s, warmup) if s < warmup else 1.0


def warmup_cosine(
    step: int, total_steps: int, warmup_frac: float = 0.05, final_frac: float = 0.0
) -> float:
    """Linear warm-up 0 -> 1, then cosine from 1 to ``final_frac`` at ``total_steps``.

    After the warm-up of ``W`` steps, with ``x = (s - W) / (T - W)``::

        f(s) = final_frac + (1 - final_frac) * (1 + cos(pi * x)) / 2

    A warm-up shorter than the run leaves at least one step of decay; with
    ``warmup_frac = 1`` the schedule only warms up.

    References:
        Loshchilov, Hutter. SGDR: Stochastic Gradient Descent with Warm Restarts.
        https://arxiv.org/abs/1608.03983
    """
    s, total = _clamp(step, total_steps)
    warmup = total if warmup_frac >= 1.0 else min(_round(warmup_frac * total), total - 1)
    if s < warmup:
        return _warmup(s, warmup)
    if warmup == total:
        return 1.0
    progress = (s - warmup) / (total - warmup)
    return final_frac + (1.0 - final_frac) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_stable_decay(
    step: int,
    total_steps: int,
    warmup_frac: float = 0.05,
    decay_frac: float = 0.2,
    final_frac: float = 0.0,
    decay_shape: str = "linear",
) -> float:
    """Trapezoid: linear warm-up, plateau at 1, cool-down over the last ``decay_frac``.

    With ``D`` cool-down steps starting at ``T - D`` and ``x = (s - (T - D)) / D``::

        linear:  f(s) = 1 - (1 - final_frac) * x
        1-sqrt:  f(s) = 1 - (1 - final_frac) * sqrt(x)

    References:
        Hägele, Bakouch, Kosson, Ben Allal, Von Werra, Jaggi. Scaling Laws and
        Compute-Optimal Training beyond Fixed Training Durations.
        https://arxiv.org/abs/2405.18392
    """
    if decay_shape not in ("linear", "1-sqrt"):
        raise ValueError(f"Invalid decay_shape value: {decay_shape!r} (linear or 1-sqrt)")
    s, total = _clamp(step, total_steps)
    decay = min(max(_round(decay_frac * total), 1 if decay_frac > 0.0 else 0), total)
    warmup = min(_round(warmup_frac * total), total - decay)
    decay_start = total - decay
    if s < warmup:
        return _warmup(s, warmup)
    if s < decay_start or decay == 0:
        return 1.0
    progress = (s - decay_start) / decay
    shaped = math.sqrt(progress) if decay_shape == "1-sqrt" else progress
    return 1.0 - (1.0 - final_frac) * shaped


def one_cycle(
    step: int,
    total_steps: int,
    warmup_frac: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """``torch.optim.lr_scheduler.OneCycleLR`` (cos, two phases) divided by ``max_lr``.

    Cosine from ``1 / div_factor`` up to 1 at step ``warmup_frac * T - 1``, then
    cosine down to ``1 / (div_factor * final_div_factor)`` at step ``T - 1``, where it
    stays (torch's schedule for a run of ``T`` optimizer steps, phase boundaries
    included, so the peak is exactly 1 only when ``warmup_frac * T`` is a whole number).

    References:
        Smith, Topin. Super-Convergence: Very Fast Training of Neural Networks Using
        Large Learning Rates. https://arxiv.org/abs/1708.07120
    """
    s, total = _clamp(step, total_steps)
    s = min(s, total - 1)
    initial = 1.0 / div_factor
    minimum = initial / final_div_factor
    peak_step = float(warmup_frac * total) - 1.0
    last_step = float(total - 1)
    if s <= peak_step:
        # torch divides 0 by 0 here when the warm-up ends at step 0; its limit is the peak.
        return _cos_anneal(initial, 1.0, s / peak_step if peak_step > 0 else 1.0)
    return _cos_anneal(1.0, minimum, (s - peak_step) / (last_step - peak_step))


def build_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, **hparams: Any
) -> torch.optim.lr_scheduler.LRScheduler:
    """A ``LambdaLR`` over the registry schedule ``name`` for a run of ``total_steps``.

    Hyperparameters are checked against the schedule's spec (``ValueError`` naming the
    one at fault) and missing ones take its defaults. Call ``scheduler.step()`` after
    every ``optimizer.step()``.

    Raises:
        KeyError: unknown schedule name.
        ValueError: ``total_steps`` not an int >= 1, or a bad hyperparameter.
    """
    import torch

    from optimizers._build import import_path

    spec = get_schedule_spec(name)
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"Invalid total_steps value: {total_steps!r} (must be an integer >= 1)")
    kwargs = spec.resolve(hparams)
    fn = import_path(spec.fn_path)

    def multiplier(step: int) -> float:
        return float(fn(step, total_steps, **kwargs))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def _clamp(step: int, total_steps: int) -> tuple[int, int]:
    if total_steps < 1:
        raise ValueError(f"Invalid total_steps value: {total_steps!r} (must be >= 1)")
    return min(max(step, 0), total_steps), total_steps


def _round(x: float) -> int:
    """Round half up: ``round`` would send 2.5 to 2 and 3.5 to 4."""
    return math.floor(x + 0.5)


def _warmup(step: int, warmup_steps: int) -> float:
    return step / warmup_steps


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """torch's ``OneCycleLR._annealing_cos``, term for term, for bit-level agreement."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
