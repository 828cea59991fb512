"""LAMB against a literal NumPy transcription of Algorithm 2 of arXiv 1904.00962."""

from __future__ import annotations

import inspect
import io
from typing import Any

import numpy as np
import pytest
import torch

from optimizers import LAMB, build, get_spec

STEPS = 200
# The zero-initialised matrix starts with ||theta|| = 0 (trust ratio 1 at first).
SHAPES = [(7,), (3, 4), (2, 3, 2), (5, 2)]


# -- the problem: a diagonal quadratic plus a quartic and fixed noise --------------------
def _problem(seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i, shape in enumerate(SHAPES):
        theta = np.zeros(shape) if i == len(SHAPES) - 1 else rng.standard_normal(shape)
        out.append(
            {
                "theta": theta,
                "h": rng.uniform(0.5, 2.0, shape),
                "target": rng.standard_normal(shape),
                "noise": 0.3 * rng.standard_normal((STEPS, *shape)),
            }
        )
    return out


def _grad(prob: dict[str, Any], theta: np.ndarray, t: int) -> np.ndarray:
    return prob["h"] * (theta - prob["target"]) + 0.1 * theta**3 + prob["noise"][t - 1]


def _run_torch(
    problem: list[dict[str, Any]], opt_kwargs: dict[str, Any], dtype: torch.dtype = torch.float64
) -> tuple[list[torch.Tensor], LAMB]:
    params = [torch.tensor(p["theta"], dtype=dtype) for p in problem]
    opt = LAMB(params, **opt_kwargs)
    for t in range(1, STEPS + 1):
        for p, prob in zip(params, problem, strict=True):
            g = _grad(prob, p.detach().double().numpy(), t)
            p.grad = torch.from_numpy(g).to(dtype)
        opt.step()
    return params, opt


# -- Algorithm 2, one line per equation ---------------------------------------------------
def _reference(prob, lr, b1, b2, eps, wd, max_norm, exclude):
    theta = prob["theta"].copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    skip = exclude and theta.ndim <= 1
    for t in range(1, STEPS + 1):
        g = _grad(prob, theta, t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        r = m_hat / (np.sqrt(v_hat) + eps) + (0.0 if skip else wd) * theta
        w_norm = np.linalg.norm(theta) if max_norm is None else min(np.linalg.norm(theta), max_norm)
        r_norm = np.linalg.norm(r)
        ratio = 1.0 if skip or w_norm == 0 or r_norm == 0 else w_norm / r_norm
        theta = theta - lr * ratio * r
    return theta


CONFIGS = {
    "defaults": {},
    "wd+clamp": {
        "lr": 2e-2,
        "betas": (0.8, 0.99),
        "eps": 1e-3,
        "weight_decay": 0.1,
        "max_weight_norm": 1.5,
    },
    "exclude_1d": {"lr": 5e-3, "weight_decay": 0.05, "exclude_1d": True, "eps": 1e-8},
}


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_numpy_transcription(config: dict[str, Any], foreach: bool) -> None:
    problem = _problem()
    params, _ = _run_torch(problem, {**config, "foreach": foreach})
    kw = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-6,
        "weight_decay": 0.01,
        "max_weight_norm": None,
        "exclude_1d": False,
        **config,
    }
    for p, prob in zip(params, problem, strict=True):
        expected = _reference(
            prob,
            kw["lr"],
            *kw["betas"],
            kw["eps"],
            kw["weight_decay"],
            kw["max_weight_norm"],
            kw["exclude_1d"],
        )
        assert not np.allclose(expected, prob["theta"])  # the run moved
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_clamp_and_trust_ratio_are_active() -> None:
    """The configurations above exercise what they claim to: clamping changes the run."""
    problem = _problem()
    clamped, _ = _run_torch(problem, CONFIGS["wd+clamp"])
    free, _ = _run_torch(problem, {**CONFIGS["wd+clamp"], "max_weight_norm": None})
    assert any(not torch.allclose(a, b) for a, b in zip(clamped, free, strict=True))


def test_foreach_matches_single_tensor() -> None:
    """Two groups and a lagging tensor (several step buckets), float64, 200 steps."""
    problem = _problem(seed=1)
    runs = []
    for foreach in (False, True):
        params = [torch.tensor(p["theta"]) for p in problem]
        opt = LAMB(
            [
                {"params": params[:2], "exclude_1d": True},
                {"params": params[2:], "max_weight_norm": 2.0, "lr": 5e-3},
            ],
            lr=1e-2,
            weight_decay=0.05,
            foreach=foreach,
        )
        for t in range(1, STEPS + 1):
            for i, (p, prob) in enumerate(zip(params, problem, strict=True)):
                lag = i == 2 and t % 4 == 0
                p.grad = None if lag else torch.from_numpy(_grad(prob, p.numpy(), t))
            opt.step()
        runs.append(params)
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_bf16_parameters(foreach: bool) -> None:
    problem = _problem()
    ref, _ = _run_torch(problem, {"lr": 1e-2, "foreach": foreach})
    out, opt = _run_torch(problem, {"lr": 1e-2, "foreach": foreach}, dtype=torch.bfloat16)
    assert all(s["exp_avg"].dtype == torch.bfloat16 for s in opt.state.values())
    for a, b in zip(out, ref, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.double(), b, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, 1.5)}, "Invalid beta parameter at index 1: 1.5"),
        ({"eps": float("nan")}, "Invalid epsilon value: nan"),
        ({"weight_decay": -0.01}, "Invalid weight_decay value: -0.01"),
        ({"max_weight_norm": 0.0}, "Invalid max_weight_norm value: 0.0"),
        ({"max_weight_norm": -2.0}, "Invalid max_weight_norm value: -2.0"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LAMB([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_state_dict_round_trip_is_bit_identical(foreach: bool) -> None:
    problem = _problem(seed=2)
    kwargs: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.1, "exclude_1d": True}
    params = [torch.tensor(p["theta"]) for p in problem]
    opt = LAMB(params, foreach=foreach, **kwargs)

    def step(o: LAMB, ps: list[torch.Tensor], t: int) -> None:
        for p, prob in zip(ps, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.numpy(), t))
        o.step()

    for t in range(1, 11):
        step(opt, params, t)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed_params = [p.clone() for p in params]
    resumed = LAMB(resumed_params, foreach=foreach)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for t in range(11, 31):
        step(opt, params, t)
        step(resumed, resumed_params, t)
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)


def test_registry_defaults_match_the_class() -> None:
    signature = inspect.signature(LAMB)
    for name, value in get_spec("lamb").resolve({}).items():
        assert signature.parameters[name].default == value, name
    opt = build("lamb", [torch.zeros(3, requires_grad=True)], beta1=0.8, max_weight_norm=10.0)
    assert isinstance(opt, LAMB)
    assert opt.param_groups[0]["betas"] == (0.8, 0.999)
    assert opt.param_groups[0]["max_weight_norm"] == 10.0
