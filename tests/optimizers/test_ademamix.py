"""AdEMAMix against a literal NumPy transcription of Algorithm 1 of arXiv 2409.03137."""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from optimizers import AdEMAMix

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


# -- Algorithm 1, one line per equation ---------------------------------------------------
def _reference(prob, lr, b1, b2, b3, alpha, t_alpha, t_beta3, eps, wd):
    theta = prob["theta"].copy()
    m1, m2, nu = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, STEPS + 1):
        g = _grad(prob, theta, t)
        alpha_t = min(t * alpha / t_alpha, alpha) if t_alpha else alpha
        if not t_beta3:
            b3_t = b3
        elif b1 == 0.0:  # limit of the formula below as ln(b1) -> -inf
            b3_t = min(b3 ** (t_beta3 / t), b3)
        else:
            s, ln_b1, ln_b3 = t / t_beta3, math.log(b1), math.log(b3)
            b3_t = min(math.exp(ln_b1 * ln_b3 / ((1 - s) * ln_b3 + s * ln_b1)), b3)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b3_t * m2 + (1 - b3_t) * g
        nu = b2 * nu + (1 - b2) * g**2
        m1_hat = m1 / (1 - b1**t)
        nu_hat = nu / (1 - b2**t)
        theta = theta - lr * ((m1_hat + alpha_t * m2) / (np.sqrt(nu_hat) + eps) + wd * theta)
    return theta


CONFIGS = {
    "plain": {"betas": (0.9, 0.999, 0.9999), "alpha": 5.0},
    "warmups+wd": {
        "betas": (0.9, 0.999, 0.999),
        "alpha": 8.0,
        "alpha_warmup": 100,
        "beta3_warmup": 150,
        "weight_decay": 0.1,
    },
    "beta1=0": {"betas": (0.0, 0.999, 0.999), "alpha": 2.0, "alpha_warmup": 100},
    "beta1=0+beta3_warmup": {"betas": (0.0, 0.99, 0.999), "alpha": 2.0, "beta3_warmup": 150},
    "large-eps": {"betas": (0.8, 0.99, 0.995), "alpha": 3.0, "eps": 1e-2},
}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_reference(name: str, foreach: bool) -> None:
    cfg = {"lr": 1e-2, "eps": 1e-8, "weight_decay": 0.0, **CONFIGS[name]}
    got = _run_torch(lambda ps: AdEMAMix(ps, **cfg, foreach=foreach))
    b1, b2, b3 = cfg["betas"]
    for prob, theta in zip(_problem(), got, strict=True):
        want = _reference(
            prob,
            cfg["lr"],
            b1,
            b2,
            b3,
            cfg["alpha"],
            cfg.get("alpha_warmup"),
            cfg.get("beta3_warmup"),
            cfg["eps"],
            cfg["weight_decay"],
        )
        np.testing.assert_allclose(theta, want, rtol=1e-6, atol=1e-12)


def test_beta1_zero_keeps_no_fast_buffer() -> None:
    p = torch.zeros(3, requires_grad=True)
    opt = AdEMAMix([p], betas=(0.0, 0.999, 0.9999))
    p.grad = torch.ones(3)
    opt.step()
    assert "exp_avg" not in opt.state[p]
    assert set(opt.state[p]) == {"step", "exp_avg_slow", "exp_avg_sq"}


# -- foreach == for-loop, with tensors at different step counts --------------------------
def _run_pair(cfg: dict[str, Any], foreach: bool) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [*SHAPES, (5,)]]
    opt = AdEMAMix(params, **cfg, foreach=foreach)
    for t in range(1, STEPS + 1):
        for i, p in enumerate(params):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            # the last tensor only gets a gradient every other step: its own step count
            p.grad = None if i == len(params) - 1 and t % 2 else 0.5 * p + noise
        opt.step()
    return params


@pytest.mark.parametrize("name", list(CONFIGS))
def test_foreach_matches_forloop(name: str) -> None:
    cfg = {"lr": 1e-2, **CONFIGS[name]}
    for a, b in zip(_run_pair(cfg, False), _run_pair(cfg, True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)


# -- construction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1e-3}, "Invalid learning rate"),
        ({"lr": math.nan}, "Invalid learning rate"),
        ({"betas": (1.0, 0.999, 0.9999)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, -0.1, 0.9999)}, "Invalid beta parameter at index 1"),
        ({"betas": (0.9, 0.999, 1.0)}, "Invalid beta parameter at index 2"),
        ({"betas": (0.9, 0.999)}, "Invalid betas"),
        ({"alpha": -1.0}, "Invalid alpha value"),
        ({"alpha_warmup": 0}, "Invalid alpha_warmup value"),
        ({"alpha_warmup": 10.0}, "Invalid alpha_warmup value"),
        ({"beta3_warmup": True}, "Invalid beta3_warmup value"),
        ({"eps": -1e-8}, "Invalid epsilon value"),
        ({"weight_decay": -0.1}, "Invalid weight_decay value"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdEMAMix([torch.zeros(2, requires_grad=True)], **kwargs)


# -- state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_round_trip_continues_bit_identically(foreach: bool) -> None:
    cfg = {"lr": 1e-2, "foreach": foreach, **CONFIGS["warmups+wd"]}
    gen = torch.Generator().manual_seed(2)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    opt = AdEMAMix(params, **cfg)
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
    reloaded = AdEMAMix(clones, **{**cfg, "lr": 0.5, "alpha": 1.0})  # overwritten by the load
    buffer.seek(0)
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    before = copy.deepcopy(reloaded.state_dict())
    assert before["param_groups"][0]["lr"] == cfg["lr"]
    run(opt, params, range(30, 60))
    run(reloaded, clones, range(30, 60))
    for a, b in zip(params, clones, strict=True):
        assert torch.equal(a, b)
    assert reloaded.state[clones[0]]["step"].item() == 60


def test_bf16_parameters() -> None:
    p = torch.randn(8, 4, dtype=torch.bfloat16, requires_grad=True)
    q = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    for foreach in (False, True):
        opt = AdEMAMix([p, q], lr=1e-2, alpha_warmup=5, beta3_warmup=5, foreach=foreach)
        for _ in range(10):
            p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
            opt.step()
        assert torch.isfinite(p).all() and torch.isfinite(q).all()
        assert all(v.dtype == torch.bfloat16 for k, v in opt.state[p].items() if k != "step")


def test_closure_is_evaluated_with_grad() -> None:
    p = torch.ones(3, requires_grad=True)
    opt = AdEMAMix([p], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 3.0
    assert (p < 1).all()
