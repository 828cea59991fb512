"""SET-Adam against a literal NumPy transcription of the equations of arXiv 2302.01029."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from optimizers import SETAdam

STEPS = 200
SHAPES = [(7,), (3, 4), (2, 3, 2)]


# -- the problem: a diagonal quadratic plus fixed noise, the same for both sides ---------
def _problem(seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "theta": rng.standard_normal(shape),
            "h": rng.uniform(0.5, 2.0, shape),
            "target": rng.standard_normal(shape),
            "noise": 0.3 * rng.standard_normal((STEPS, *shape)),
        }
        for shape in SHAPES
    ]


def _grad(prob: dict[str, Any], theta: np.ndarray, t: int) -> np.ndarray:
    return prob["h"] * (theta - prob["target"]) + prob["noise"][t - 1]


def _run_torch(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> list[np.ndarray]:
    problem = _problem()
    params = [torch.tensor(p["theta"], dtype=torch.float64) for p in problem]
    opt = make(params)
    for t in range(1, STEPS + 1):
        for p, prob in zip(params, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.detach().numpy(), t))
        opt.step()
    return [p.detach().numpy() for p in params]


# -- the paper's three operations on a copy of v, one line per equation -------------------
def _reference(prob, lr, b1, b2, eps, tau, wd, eps_mode, decoupled):
    theta = prob["theta"].copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, STEPS + 1):
        g = _grad(prob, theta, t)
        if not decoupled:
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2 + (eps if eps_mode == "accumulate" else 0.0)
        d = v.size
        c = v.sum() ** 2 / (d * (v**2).sum()) if (v**2).sum() > 0 else 1.0
        v_tilde = c * v
        w = np.sqrt(v_tilde / (1 - b2**t) + (eps if eps_mode == "root" else 0.0))
        w_tilde = w - tau * w.min()
        if decoupled:
            theta = theta - lr * wd * theta
        theta = theta - lr / (1 - b1**t) * m / w_tilde
    return theta


CONFIGS = {
    "root+decoupled": {"eps_mode": "root", "decoupled_weight_decay": True},
    "root+l2": {"eps_mode": "root", "decoupled_weight_decay": False},
    "accumulate+decoupled": {"eps_mode": "accumulate", "decoupled_weight_decay": True},
    "accumulate+l2": {"eps_mode": "accumulate", "decoupled_weight_decay": False},
    "root+default-eps": {"eps_mode": "root", "eps": 1e-16, "tau": 0.9, "weight_decay": 0.0},
}


def _config(name: str) -> dict[str, Any]:
    # eps large enough that putting it in the wrong place changes the trajectory
    base = {
        "lr": 1e-2,
        "betas": (0.9, 0.99),
        "eps": 1e-3,
        "tau": 0.5,
        "weight_decay": 0.05,
        "decoupled_weight_decay": True,
    }
    return base | CONFIGS[name]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_reference(name: str, foreach: bool) -> None:
    cfg = _config(name)
    got = _run_torch(lambda ps: SETAdam(ps, **cfg, foreach=foreach))
    b1, b2 = cfg["betas"]
    for prob, theta in zip(_problem(), got, strict=True):
        want = _reference(
            prob,
            cfg["lr"],
            b1,
            b2,
            cfg["eps"],
            cfg["tau"],
            cfg["weight_decay"],
            cfg["eps_mode"],
            cfg["decoupled_weight_decay"],
        )
        np.testing.assert_allclose(theta, want, rtol=1e-6, atol=1e-12)


def test_eps_modes_differ() -> None:
    root = _run_torch(lambda ps: SETAdam(ps, **_config("root+decoupled")))
    acc = _run_torch(lambda ps: SETAdam(ps, **_config("accumulate+decoupled")))
    assert not np.allclose(root[0], acc[0], rtol=1e-6)


# -- foreach == for-loop, with tensors at different step counts --------------------------
def _run_pair(cfg: dict[str, Any], foreach: bool) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [*SHAPES, (5,), (1,)]]
    opt = SETAdam(params, **cfg, foreach=foreach)
    for t in range(1, STEPS + 1):
        for i, p in enumerate(params):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            # the last tensor only gets a gradient every other step: its own step count
            p.grad = None if i == len(params) - 1 and t % 2 else 0.5 * p + noise
        opt.step()
    return params


@pytest.mark.parametrize("name", list(CONFIGS))
def test_foreach_matches_forloop(name: str) -> None:
    cfg = _config(name)
    for a, b in zip(_run_pair(cfg, False), _run_pair(cfg, True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)


# -- the denominator never divides by zero ------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(("tau", "eps"), [(1.0, 1e-16), (0.5, 0.0), (1.0, 0.0)])
def test_zero_denominators_take_no_step(tau: float, eps: float, foreach: bool) -> None:
    big = torch.ones(4, 3, dtype=torch.float64)
    single = torch.ones(1, dtype=torch.float64)
    opt = SETAdam([big, single], lr=0.1, tau=tau, eps=eps, foreach=foreach)
    for _ in range(5):
        grad = torch.randn(4, 3, dtype=torch.float64)
        grad[0] = 0.0  # a row that never sees a gradient: v == 0 there
        big.grad, single.grad = grad, torch.randn(1, dtype=torch.float64)
        opt.step()
    assert torch.isfinite(big).all() and torch.isfinite(single).all()
    assert torch.equal(big[0], torch.ones(3, dtype=torch.float64))
    if tau == 1.0:  # w - min(w) == 0 for a one-element layer: documented as "no step"
        assert single.item() == 1.0
    else:
        assert single.item() != 1.0


def test_nan_gradient_still_propagates() -> None:
    p = torch.ones(3)
    opt = SETAdam([p], tau=1.0, eps=0.0)
    p.grad = torch.tensor([1.0, math.nan, 2.0])
    opt.step()
    assert torch.isnan(p).any()


# -- construction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1e-3}, "Invalid learning rate"),
        ({"lr": math.inf}, "Invalid learning rate"),
        ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, 1.5)}, "Invalid beta parameter at index 1"),
        ({"betas": (0.9, 0.99, 0.9)}, "Invalid betas"),
        ({"eps": -1e-16}, "Invalid epsilon value"),
        ({"tau": 1.01}, "Invalid tau value"),
        ({"tau": -0.1}, "Invalid tau value"),
        ({"weight_decay": -0.1}, "Invalid weight_decay value"),
        ({"eps_mode": "inside"}, "Invalid eps_mode value"),
        ({"decoupled_weight_decay": 1}, "Invalid decoupled_weight_decay value"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SETAdam([torch.zeros(2, requires_grad=True)], **kwargs)


# -- state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_round_trip_continues_bit_identically(foreach: bool) -> None:
    cfg = {**_config("accumulate+l2"), "foreach": foreach}
    gen = torch.Generator().manual_seed(2)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    opt = SETAdam(params, **cfg)
    grads = [
        [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES] for _ in range(60)
    ]

    def run(opt: torch.optim.Optimizer, ps: list[torch.Tensor], steps: range) -> None:
        for t in steps:
            for p, g in zip(ps, grads[t], strict=True):
                p.grad = g.clone()
            opt.step()

    run(opt, params, range(30))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    clones = [p.detach().clone() for p in params]
    reloaded = SETAdam(clones, **{**cfg, "eps_mode": "root", "tau": 0.1})  # overwritten
    buffer.seek(0)
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert reloaded.param_groups[0]["eps_mode"] == "accumulate"
    run(opt, params, range(30, 60))
    run(reloaded, clones, range(30, 60))
    for a, b in zip(params, clones, strict=True):
        assert torch.equal(a, b)


def test_bf16_parameters() -> None:
    p = torch.randn(8, 4, dtype=torch.bfloat16, requires_grad=True)
    q = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    for foreach in (False, True):
        opt = SETAdam([p, q], lr=1e-2, foreach=foreach)
        for _ in range(10):
            p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
            opt.step()
        assert torch.isfinite(p).all() and torch.isfinite(q).all()
        assert all(v.dtype == torch.bfloat16 for k, v in opt.state[p].items() if k != "step")


def test_empty_tensor_is_skipped() -> None:
    empty = torch.zeros(0, requires_grad=True)
    p = torch.ones(2, requires_grad=True)
    opt = SETAdam([empty, p], lr=0.1)
    empty.grad, p.grad = torch.zeros(0), torch.ones(2)
    opt.step()
    assert (p < 1).all()


def test_closure_is_evaluated_with_grad() -> None:
    p = torch.ones(3, requires_grad=True)
    opt = SETAdam([p], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 3.0
    assert (p < 1).all()
