"""RAdam against torch.optim.RAdam, foreach against the reference loop, and its contract."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from typing import Any

import pytest
import torch

from optimizers import RAdam, build, get_spec

STEPS = 200
SHAPES = [(7,), (3, 4), (2, 3, 2), ()]


def _problem(dtype: torch.dtype = torch.float64, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "theta": torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype),
            "h": torch.rand(shape, generator=gen, dtype=torch.float64).add(0.5).to(dtype),
            "target": torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype),
        }
        for shape in SHAPES
    ]


def _run(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    *,
    steps: int = STEPS,
    dtype: torch.dtype = torch.float64,
) -> list[torch.Tensor]:
    """Minimise a quartic-plus-quadratic through a closure (autograd computes the grads)."""
    problem = _problem(dtype)
    params = [prob["theta"].clone().requires_grad_() for prob in problem]
    opt = make(params)

    def closure() -> float:
        opt.zero_grad()
        loss = sum(
            (0.5 * prob["h"] * (p - prob["target"]) ** 2 + 0.025 * p**4).sum()
            for p, prob in zip(params, problem, strict=True)
        )
        loss.backward()  # type: ignore[union-attr]
        return float(loss.detach())  # type: ignore[union-attr]

    for _ in range(steps):
        opt.step(closure)
    return [p.detach() for p in params]


@pytest.mark.parametrize("decoupled", [False, True], ids=["l2", "decoupled"])
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_matches_torch_radam(decoupled: bool, foreach: bool) -> None:
    kwargs: dict[str, Any] = {
        "lr": 1e-2,
        "betas": (0.9, 0.99),
        "eps": 1e-8,
        "weight_decay": 0.1,
        "decoupled_weight_decay": decoupled,
    }
    ours = _run(lambda ps: RAdam(ps, foreach=foreach, **kwargs))
    theirs = _run(lambda ps: torch.optim.RAdam(ps, foreach=False, **kwargs))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_matches_torch_radam_float32() -> None:
    """Same operation order as torch's loop: float32 agrees to rounding too."""
    kwargs: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.05}
    ours = _run(lambda ps: RAdam(ps, foreach=False, **kwargs), dtype=torch.float32)
    theirs = _run(lambda ps: torch.optim.RAdam(ps, foreach=False, **kwargs), dtype=torch.float32)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_both_phases_are_exercised() -> None:
    """With b2 = 0.99 the first steps are un-rectified (rho_t <= 5), the rest rectified."""
    from optimizers.radam import _rectification

    assert _rectification(1, 0.99) is None
    assert _rectification(STEPS, 0.99) is not None


def _run_groups(foreach: bool, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Two param groups; one tensor misses every third gradient (its step count lags)."""
    problem = _problem(dtype, seed=1)
    params = [prob["theta"].clone() for prob in problem]
    opt = RAdam(
        [
            {"params": params[:2]},
            {"params": params[2:], "lr": 3e-3, "decoupled_weight_decay": True},
        ],
        lr=1e-2,
        weight_decay=0.05,
        foreach=foreach,
    )
    for t in range(STEPS):
        for i, (p, prob) in enumerate(zip(params, problem, strict=True)):
            skip = i == 1 and t % 3 == 0
            p.grad = None if skip else prob["h"] * (p - prob["target"]) + 0.1 * p**3
        opt.step()
    return params


def test_foreach_matches_single_tensor() -> None:
    for a, b in zip(_run_groups(True), _run_groups(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _loss(params: list[torch.Tensor], problem: list[dict[str, torch.Tensor]]) -> float:
    return float(
        sum(
            (0.5 * prob["h"] * (p.double() - prob["target"]) ** 2 + 0.025 * p.double() ** 4).sum()
            for p, prob in zip(params, problem, strict=True)
        )
    )


@pytest.mark.parametrize(
    "path",
    [{"foreach": False}, {"foreach": True}, {"fused": True}],
    ids=["loop", "foreach", "fused"],
)
def test_no_weight_decay_leaves_an_infinite_weight_infinite(path: dict[str, bool]) -> None:
    """Without weight decay the weights are not read into the moments: an infinite one
    stays infinite, as with torch.optim.RAdam (``g + 0 * inf`` would make it nan)."""
    values = [float("inf"), 1.0] + [1.0] * 20_000  # large enough for the fused kernel
    ours = torch.tensor(values, requires_grad=True)
    theirs = torch.tensor(values, requires_grad=True)
    opt, ref = RAdam([ours], lr=0.1, **path), torch.optim.RAdam([theirs], lr=0.1)
    for _ in range(7):  # both phases: rectified from step 6 with the default betas
        ours.grad, theirs.grad = torch.ones_like(ours), torch.ones_like(theirs)
        opt.step()
        ref.step()
    assert ours[0].item() == float("inf")
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_bf16_parameters(foreach: bool) -> None:
    """bf16 parameters keep bf16 state and descend about as far as float64 ones."""
    problem = _problem()
    start = _loss([prob["theta"] for prob in problem], problem)
    best = _loss(_run(lambda ps: RAdam(ps, lr=5e-2, foreach=False)), problem)
    holder: list[torch.optim.Optimizer] = []

    def make(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
        holder.append(RAdam(ps, lr=5e-2, foreach=foreach))
        return holder[0]

    out = _run(make, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in out)
    assert all(s["exp_avg_sq"].dtype == torch.bfloat16 for s in holder[0].state.values())
    assert _loss(out, problem) - best < 0.05 * (start - best)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"lr": float("nan")}, "Invalid learning rate: nan"),
        ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
        ({"betas": (0.9,)}, "Invalid betas"),
        ({"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
        ({"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
        ({"weight_decay": float("inf")}, "Invalid weight_decay value: inf"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RAdam([torch.zeros(2, requires_grad=True)], **kwargs)


def _save_load(opt: torch.optim.Optimizer) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_round_trip_is_bit_identical(foreach: bool) -> None:
    problem = _problem(seed=2)
    params = [prob["theta"].clone() for prob in problem]

    def grads(ps: list[torch.Tensor]) -> None:
        for p, prob in zip(ps, problem, strict=True):
            p.grad = prob["h"] * (p - prob["target"]) + 0.1 * p**3

    opt = RAdam(params, lr=1e-2, weight_decay=0.1, foreach=foreach)
    for _ in range(10):
        grads(params)
        opt.step()
    resumed_params = [p.clone() for p in params]
    resumed = RAdam(resumed_params, foreach=foreach)
    resumed.load_state_dict(_save_load(opt))
    assert resumed.param_groups[0]["lr"] == 1e-2
    for _ in range(20):
        grads(params)
        opt.step()
        grads(resumed_params)
        resumed.step()
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)


def test_loads_torch_radam_state() -> None:
    """State keys follow torch.optim.RAdam, so its checkpoints continue here."""
    problem = _problem(seed=3)
    theirs = [prob["theta"].clone() for prob in problem]
    ours = [p.clone() for p in theirs]

    def grads(ps: list[torch.Tensor]) -> None:
        for p, prob in zip(ps, problem, strict=True):
            p.grad = prob["h"] * (p - prob["target"]) + 0.1 * p**3

    torch_opt = torch.optim.RAdam(theirs, lr=1e-2, weight_decay=0.1, foreach=False)
    for _ in range(50):
        grads(theirs)
        torch_opt.step()
    ours = [p.clone() for p in theirs]
    our_opt = RAdam(ours, foreach=False)
    our_opt.load_state_dict(_save_load(torch_opt))
    for _ in range(STEPS - 50):
        grads(theirs)
        torch_opt.step()
        grads(ours)
        our_opt.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_registry_defaults_match_the_class() -> None:
    spec = get_spec("radam")
    signature = inspect.signature(RAdam)
    resolved = spec.resolve({})
    for name, value in resolved.items():
        assert signature.parameters[name].default == value, name
    opt = build("radam", [torch.zeros(3, requires_grad=True)], lr=3e-3, beta2=0.99)
    assert isinstance(opt, RAdam)
    assert opt.param_groups[0]["lr"] == 3e-3
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)
