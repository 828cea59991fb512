"""EVE against a literal NumPy transcription of the equations of arXiv 2308.10740."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from optimizers import EVE

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


def _run_torch(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    lr_lambda: Callable[[int], float] | None = None,
) -> list[np.ndarray]:
    problem = _problem()
    params = [torch.tensor(p["theta"], dtype=torch.float64) for p in problem]
    opt = make(params)
    sched = None if lr_lambda is None else torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    for t in range(1, STEPS + 1):
        for p, prob in zip(params, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.detach().numpy(), t))
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().numpy() for p in params]


# -- the equations, one line each; lr and lr2 may be per-step schedules -------------------
def _reference(prob, lr, lr2, b1, b2, b3, alpha, eps, wd, amsgrad, scale=lambda t: 1.0):
    theta = prob["theta"].copy()
    m_s, m_l, v_s, v_l = (np.zeros_like(theta) for _ in range(4))
    v_s_max = np.zeros_like(theta)
    for t in range(1, STEPS + 1):
        lr_t, lr2_t = lr * scale(t - 1), lr2 * scale(t - 1)
        g = _grad(prob, theta, t)
        m_s = b1 * m_s + (1 - b1) * g
        m_l = b2 * m_l + (1 - b2) * g
        v_s = b2 * v_s + (1 - b2) * (g - np.sqrt(v_l)) ** 2
        v_l = alpha * v_l + (1 - alpha) * (g - np.sqrt(v_s)) ** 2
        v_s_max = np.maximum(v_s_max, v_s)
        a1 = lr_t * np.sqrt(1 - alpha**t) / (1 - b1**t)
        a2 = lr2_t * np.sqrt(1 - alpha**t) / (1 - b2**t)
        m = b3 * m_s + (1 - b3) * m_l
        theta = theta - lr_t * wd * theta
        v_s_den = v_s_max if amsgrad else v_s
        theta = theta - 0.5 * (a1 / (np.sqrt(v_l) + eps) + a2 / (np.sqrt(v_s_den) + eps)) * m
    return theta


CONFIGS = {
    "plain": {},
    "amsgrad": {"amsgrad": True},
    "weight_decay": {"weight_decay": 0.1},
    "amsgrad+weight_decay+eps": {"amsgrad": True, "weight_decay": 0.1, "eps": 1e-2},
    "betas": {"betas": (0.8, 0.95, 0.3), "alpha": 0.99},
}


def _config(name: str) -> dict[str, Any]:
    base = {
        "lr": 1e-2,
        "lr2": 4e-3,
        "betas": (0.9, 0.99, 0.5),
        "alpha": 0.999,
        "eps": 1e-7,
        "weight_decay": 0.0,
        "amsgrad": False,
    }
    return base | CONFIGS[name]


def _check_reference(cfg: dict[str, Any], got: list[np.ndarray], **extra: Any) -> None:
    b1, b2, b3 = cfg["betas"]
    for prob, theta in zip(_problem(), got, strict=True):
        want = _reference(
            prob,
            cfg["lr"],
            cfg["lr2"],
            b1,
            b2,
            b3,
            cfg["alpha"],
            cfg["eps"],
            cfg["weight_decay"],
            cfg["amsgrad"],
            **extra,
        )
        np.testing.assert_allclose(theta, want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_reference(name: str, foreach: bool) -> None:
    cfg = _config(name)
    _check_reference(cfg, _run_torch(lambda ps: EVE(ps, **cfg, foreach=foreach)))


@pytest.mark.parametrize("foreach", [False, True])
def test_lr2_follows_scheduled_lr(foreach: bool) -> None:
    cfg = _config("amsgrad+weight_decay+eps")

    def scale(epoch: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * epoch / STEPS))

    got = _run_torch(lambda ps: EVE(ps, **cfg, foreach=foreach), lr_lambda=scale)
    _check_reference(cfg, got, scale=scale)


def test_lr2_reference_lr_is_per_group() -> None:
    a, b = torch.zeros(2), torch.zeros(2)
    opt = EVE([{"params": [a]}, {"params": [b], "lr": 1e-2, "lr2": 1e-3}], lr=1e-3)
    assert [g["lr_ref"] for g in opt.param_groups] == [1e-3, 1e-2]
    zero = EVE([torch.zeros(2)], lr=0.0, lr2=1e-3)  # lr2 stays fixed: nothing to follow
    zero.param_groups[0]["lr"] = 1e-2
    p = zero.param_groups[0]["params"][0]
    p.grad = torch.ones(2)
    zero.step()
    assert torch.isfinite(p).all() and (p != 0).all()


def test_update_is_not_odd_in_the_gradient() -> None:
    deltas = []
    for sign in (1.0, -1.0):
        p = torch.zeros(5, dtype=torch.float64)
        opt = EVE([p], lr=1e-2)
        p.grad = sign * torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
        opt.step()
        deltas.append(p.clone())
    assert not torch.allclose(deltas[0], -deltas[1], rtol=1e-3)
    assert (deltas[0] < 0).all() and (deltas[1] > 0).all()  # still a descent direction


# -- foreach == for-loop, with tensors at different step counts --------------------------
def _run_pair(cfg: dict[str, Any], foreach: bool) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [*SHAPES, (5,)]]
    opt = EVE(params, **cfg, foreach=foreach)
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


# -- construction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1e-3}, "Invalid learning rate"),
        ({"lr2": -1e-3}, "Invalid lr2 value"),
        ({"lr2": math.nan}, "Invalid lr2 value"),
        ({"betas": (1.0, 0.99, 0.5)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, 1.0, 0.5)}, "Invalid beta parameter at index 1"),
        ({"betas": (0.9, 0.99, 1.5)}, "Invalid beta parameter at index 2"),
        ({"betas": (0.9, 0.99)}, "Invalid betas"),
        ({"alpha": 1.0}, "Invalid alpha value"),
        ({"eps": -1e-7}, "Invalid epsilon value"),
        ({"weight_decay": -0.1}, "Invalid weight_decay value"),
        ({"amsgrad": "yes"}, "Invalid amsgrad value"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EVE([torch.zeros(2, requires_grad=True)], **kwargs)


def test_beta3_may_be_one() -> None:
    EVE([torch.zeros(2, requires_grad=True)], betas=(0.9, 0.99, 1.0))


# -- state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_round_trip_continues_bit_identically(foreach: bool) -> None:
    cfg = {**_config("amsgrad+weight_decay+eps"), "foreach": foreach}
    gen = torch.Generator().manual_seed(2)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    opt = EVE(params, **cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    grads = [
        [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES] for _ in range(60)
    ]

    def run(opt: torch.optim.Optimizer, ps: list[torch.Tensor], steps: range) -> None:
        for t in steps:
            for p, g in zip(ps, grads[t], strict=True):
                p.grad = g.clone()
            opt.step()

    run(opt, params, range(25))
    sched.step()  # lr now differs from lr_ref, so the saved lr_ref matters
    sched.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    clones = [p.detach().clone() for p in params]
    reloaded = EVE(clones, **{**cfg, "lr": 0.5, "lr2": 0.1})  # overwritten by the load
    buffer.seek(0)
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert reloaded.param_groups[0]["lr_ref"] == cfg["lr"]
    run(opt, params, range(25, 60))
    run(reloaded, clones, range(25, 60))
    for a, b in zip(params, clones, strict=True):
        assert torch.equal(a, b)


def test_bf16_parameters() -> None:
    p = torch.randn(8, 4, dtype=torch.bfloat16, requires_grad=True)
    q = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    for foreach in (False, True):
        opt = EVE([p, q], lr=1e-2, amsgrad=True, foreach=foreach)
        for _ in range(10):
            p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
            opt.step()
        assert torch.isfinite(p).all() and torch.isfinite(q).all()
        assert all(v.dtype == torch.bfloat16 for k, v in opt.state[p].items() if k != "step")


def test_closure_is_evaluated_with_grad() -> None:
    p = torch.ones(3, requires_grad=True)
    opt = EVE([p], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 3.0
    assert (p < 1).all()
