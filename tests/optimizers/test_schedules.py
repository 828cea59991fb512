"""Schedules: shapes for any run length, torch's OneCycleLR, and the LambdaLR wrapper."""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable

import pytest
import torch

from optimizers import SCHEDULES, build_schedule
from optimizers.schedules import constant, one_cycle, warmup_cosine, warmup_stable_decay

LENGTHS = [1, 2, 7, 1000]
Schedule = Callable[[int], float]


def _values(f: Schedule, total: int) -> list[float]:
    return [f(s) for s in range(total + 1)]


def _assert_unit(values: list[float]) -> None:
    assert all(0.0 <= v <= 1.0 for v in values), values


def _is_monotone(values: list[float], increasing: bool) -> bool:
    pairs = itertools.pairwise(values)
    return all((b >= a - 1e-15) if increasing else (b <= a + 1e-15) for a, b in pairs)


# -- constant -------------------------------------------------------------------------------
@pytest.mark.parametrize("total", LENGTHS)
def test_constant(total: int) -> None:
    assert _values(lambda s: constant(s, total), total) == [1.0] * (total + 1)
    values = _values(lambda s: constant(s, total, warmup_frac=0.1), total)
    _assert_unit(values)
    assert max(values) == 1.0 and values[-1] == 1.0
    warmup = round(0.1 * total)
    assert values[:warmup] == [s / warmup for s in range(warmup)]
    assert _is_monotone(values, increasing=True)


# -- cosine ---------------------------------------------------------------------------------
@pytest.mark.parametrize("total", LENGTHS)
@pytest.mark.parametrize(("warmup_frac", "final_frac"), [(0.05, 0.0), (0.2, 0.1), (0.0, 0.5)])
def test_warmup_cosine_shape(total: int, warmup_frac: float, final_frac: float) -> None:
    values = _values(lambda s: warmup_cosine(s, total, warmup_frac, final_frac), total)
    _assert_unit(values)
    peak = values.index(max(values))
    assert values[peak] == 1.0
    assert values[-1] == pytest.approx(final_frac, abs=1e-15)
    assert peak == 0 or values[0] == 0.0
    assert _is_monotone(values[: peak + 1], increasing=True)
    assert _is_monotone(values[peak:], increasing=False)


def test_warmup_cosine_values() -> None:
    total, warmup = 1000, 50
    assert warmup_cosine(25, total, 0.05, 0.0) == 0.5
    assert warmup_cosine(warmup, total, 0.05, 0.0) == 1.0
    midpoint = warmup + (total - warmup) // 2
    assert warmup_cosine(midpoint, total, 0.05, 0.2) == pytest.approx(0.6)
    assert warmup_cosine(total + 10, total, 0.05, 0.2) == pytest.approx(0.2)
    # all warm-up: ends at the peak
    assert warmup_cosine(7, 7, 1.0, 0.0) == 1.0


# -- warmup-stable-decay ----------------------------------------------------------------------
@pytest.mark.parametrize("total", LENGTHS)
@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
@pytest.mark.parametrize(
    ("warmup_frac", "decay_frac", "final_frac"),
    [(0.05, 0.2, 0.0), (0.3, 0.5, 0.1), (0.0, 1.0, 0.0)],
)
def test_warmup_stable_decay_shape(
    total: int, shape: str, warmup_frac: float, decay_frac: float, final_frac: float
) -> None:
    def f(s: int) -> float:
        return warmup_stable_decay(s, total, warmup_frac, decay_frac, final_frac, shape)

    values = _values(f, total)
    _assert_unit(values)
    assert max(values) == 1.0
    assert values[-1] == pytest.approx(final_frac, abs=1e-15)
    peak = values.index(1.0)
    assert peak == 0 or values[0] == 0.0
    assert _is_monotone(values[: peak + 1], increasing=True)
    assert _is_monotone(values[peak:], increasing=False)


def test_warmup_stable_decay_values() -> None:
    total = 1000  # warm-up 100 steps, plateau to 700, cool-down 300 steps
    for shape in ("linear", "1-sqrt"):
        assert warmup_stable_decay(50, total, 0.1, 0.3, 0.0, shape) == 0.5
        assert warmup_stable_decay(100, total, 0.1, 0.3, 0.0, shape) == 1.0
        assert warmup_stable_decay(700, total, 0.1, 0.3, 0.0, shape) == 1.0
    assert warmup_stable_decay(775, total, 0.1, 0.3, 0.2, "linear") == pytest.approx(0.8)
    assert warmup_stable_decay(775, total, 0.1, 0.3, 0.2, "1-sqrt") == pytest.approx(0.6)
    # no cool-down requested: the plateau runs to the end
    assert warmup_stable_decay(total, total, 0.1, 0.0, 0.0) == 1.0


# -- one-cycle --------------------------------------------------------------------------------
def _torch_one_cycle(total: int, pct: float, div: float, final_div: float) -> list[float]:
    max_lr = 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=max_lr,
        total_steps=total,
        pct_start=pct,
        anneal_strategy="cos",
        three_phase=False,
        div_factor=div,
        final_div_factor=final_div,
        cycle_momentum=False,
    )
    out = [opt.param_groups[0]["lr"] / max_lr]
    for _ in range(total - 1):  # torch's schedule is defined for steps 0 .. total - 1
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"] / max_lr)
    return out


@pytest.mark.parametrize("total", [1, 2, 7, 1000])
@pytest.mark.parametrize(("pct", "div", "final_div"), [(0.3, 25.0, 1e4), (0.4, 10.0, 100.0)])
def test_one_cycle_matches_torch(total: int, pct: float, div: float, final_div: float) -> None:
    ours = [one_cycle(s, total, pct, div, final_div) for s in range(total)]
    assert ours == pytest.approx(_torch_one_cycle(total, pct, div, final_div), abs=1e-9, rel=1e-9)
    values = [*ours, one_cycle(total, total, pct, div, final_div)]
    _assert_unit(values)
    assert values[-1] == values[-2] == pytest.approx(1 / (div * final_div), rel=1e-12)
    if pct * total >= 1:  # torch's warm-up has at least one step
        assert values[0] == pytest.approx(1 / div, rel=1e-12)
    assert max(values) <= 1.0


@pytest.mark.parametrize(("total", "pct"), [(1000, 0.3), (7, 3 / 7), (10, 0.5)])
def test_one_cycle_peaks_at_one_on_a_whole_step(total: int, pct: float) -> None:
    values = [one_cycle(s, total, pct) for s in range(total + 1)]
    peak = round(pct * total) - 1
    assert values[peak] == pytest.approx(1.0, abs=1e-12)
    assert max(values) == values[peak]


def test_one_cycle_warmup_ending_at_step_zero() -> None:
    """torch divides 0 by 0 there; the limit is the peak."""
    assert one_cycle(0, 10, 0.1) == 1.0


# -- LambdaLR wrapper -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_build_schedule_follows_the_multiplier(name: str) -> None:
    from optimizers._build import import_path

    spec = SCHEDULES[name]
    fn = import_path(spec.fn_path)
    total = 20
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    scheduler = build_schedule(name, opt, total)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    for s in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * fn(s, total, **spec.defaults()))
        opt.step()
        scheduler.step()


def test_build_schedule_hyperparameters() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    build_schedule("wsd", opt, 10, warmup_frac=0.0, decay_frac=0.5, decay_shape="1-sqrt")
    assert opt.param_groups[0]["lr"] == 1.0
    with pytest.raises(ValueError, match="Unknown hyperparameter 'bogus'"):
        build_schedule("cosine", opt, 10, bogus=1.0)
    with pytest.raises(ValueError, match="Invalid warmup_frac value"):
        build_schedule("cosine", opt, 10, warmup_frac=1.5)
    with pytest.raises(ValueError, match="Invalid decay_shape value"):
        build_schedule("wsd", opt, 10, decay_shape="cubic")
    with pytest.raises(ValueError, match="Invalid total_steps value"):
        build_schedule("cosine", opt, 0)
    with pytest.raises(KeyError, match="Unknown schedule"):
        build_schedule("triangular", opt, 10)


def test_schedule_functions_are_torch_free() -> None:
    """Pure functions of Python numbers: plain floats out, usable without tensors."""
    for value in (constant(3, 10, 0.5), warmup_cosine(3, 10), warmup_stable_decay(3, 10)):
        assert type(value) is float
    assert type(one_cycle(3, 10)) is float
    assert math.isclose(warmup_cosine(10, 10, 0.0, 0.25), 0.25)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_function_defaults_match_the_registry(name: str) -> None:
    from optimizers._build import import_path

    spec = SCHEDULES[name]
    signature = inspect.signature(import_path(spec.fn_path))
    assert list(signature.parameters)[:2] == ["step", "total_steps"]
    for hp_name, value in spec.defaults().items():
        assert signature.parameters[hp_name].default == value, hp_name
