"""SWATS against a literal NumPy transcription of Algorithm 1 of arXiv 1712.07628."""

from __future__ import annotations

import inspect
import io
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from optimizers import SWATS, _native, build, get_spec

STEPS = 200
SHAPES = [(4, 3), (5,), (2, 2, 3)]


# -- the problem: a diagonal quadratic plus a quartic, full-batch gradients ---------------
def _problem(seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = [{"theta": rng.standard_normal(shape)} for shape in SHAPES]
    for prob, shape in zip(out, SHAPES, strict=True):
        prob["h"] = rng.uniform(0.5, 2.0, shape)
    for prob, shape in zip(out, SHAPES, strict=True):
        prob["target"] = rng.standard_normal(shape)
    return out


def _grad(prob: dict[str, Any], theta: np.ndarray) -> np.ndarray:
    return prob["h"] * (theta - prob["target"]) + 0.1 * theta**3


# -- Algorithm 1, one line per equation, over a list of tensors that share one gamma -------
def _algorithm1(probs, lr, b1, b2, eps, wd, switch_eps, relative):
    """Returns the final thetas, the switch step k (or None) and Lambda."""
    x = [p["theta"].copy() for p in probs]
    m = [np.zeros_like(xi) for xi in x]
    a = [np.zeros_like(xi) for xi in x]
    v = [np.zeros_like(xi) for xi in x]
    lam, phase, big_lambda, switch = 0.0, "adam", None, None
    for k in range(1, STEPS + 1):
        g = [_grad(p, xi) + wd * xi for p, xi in zip(probs, x, strict=True)]
        if phase == "sgd":
            v = [b1 * vi + gi for vi, gi in zip(v, g, strict=True)]
            x = [xi - (1 - b1) * big_lambda * vi for xi, vi in zip(x, v, strict=True)]
            continue
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        a = [b2 * ai + (1 - b2) * gi**2 for ai, gi in zip(a, g, strict=True)]
        p = [
            -lr * np.sqrt(1 - b2**k) / (1 - b1**k) * mi / (np.sqrt(ai) + eps)
            for mi, ai in zip(m, a, strict=True)
        ]
        x = [xi + pi for xi, pi in zip(x, p, strict=True)]
        ptg = sum(np.vdot(pi, gi) for pi, gi in zip(p, g, strict=True))
        if ptg != 0:
            gamma = sum(np.vdot(pi, pi) for pi in p) / -ptg
            lam = b2 * lam + (1 - b2) * gamma
            tolerance = switch_eps * abs(gamma) if relative else switch_eps
            if k > 1 and abs(lam / (1 - b2**k) - gamma) < tolerance:
                phase, switch = "sgd", k
                v = [np.zeros_like(xi) for xi in x]
                big_lambda = lam / (1 - b2**k)
    return x, switch, big_lambda


CONFIGS = {
    "absolute": {"lr": 1e-2, "betas": (0.9, 0.999), "switch_eps": 1e-5},
    "relative": {"lr": 1e-2, "betas": (0.9, 0.999), "switch_eps": 1e-3, "switch_test": "relative"},
    "absolute+wd": {"lr": 1e-2, "betas": (0.9, 0.99), "switch_eps": 1e-5, "weight_decay": 0.05},
}
GLOBAL_CONFIGS = {
    "absolute": {"lr": 1e-2, "betas": (0.9, 0.999), "switch_eps": 1e-5},
    "relative": {"lr": 3e-2, "betas": (0.9, 0.999), "switch_eps": 3e-3, "switch_test": "relative"},
}


def _run_torch(
    problem: list[dict[str, Any]], kwargs: dict[str, Any], steps: int = STEPS
) -> tuple[list[torch.Tensor], SWATS]:
    params = [torch.tensor(p["theta"]) for p in problem]
    opt = SWATS(params, **kwargs)
    for _ in range(steps):
        for p, prob in zip(params, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.numpy()))
        opt.step()
    return params, opt


def _expected(config: dict[str, Any], probs: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
    b1, b2 = config["betas"]
    return _algorithm1(
        probs,
        config["lr"],
        b1,
        b2,
        config.get("eps", 1e-8),
        config.get("weight_decay", 0.0),
        config["switch_eps"],
        config.get("switch_test") == "relative",
    )


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_layer_scope_matches_numpy_transcription(config: dict[str, Any]) -> None:
    problem = _problem()
    params, opt = _run_torch(problem, config)
    switches = []
    for p, prob in zip(params, problem, strict=True):
        (expected,), switch, big_lambda = _expected(config, [prob])
        state = opt.state[p]
        assert switch is not None and 2 < switch < STEPS  # the run crosses the switch
        assert state["switch_step"] == switch
        assert state["sgd_lr"] == pytest.approx((1 - config["betas"][0]) * big_lambda, rel=1e-9)
        assert "exp_avg" not in state and "momentum_buffer" in state
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-6, atol=1e-9)
        switches.append(switch)
    assert len(set(switches)) == len(switches)  # the tensors switch independently


@pytest.mark.parametrize("config", GLOBAL_CONFIGS.values(), ids=GLOBAL_CONFIGS.keys())
def test_global_scope_matches_numpy_transcription(config: dict[str, Any]) -> None:
    problem = _problem()
    params, opt = _run_torch(problem, {**config, "gamma_scope": "global"})
    expected, switch, big_lambda = _expected(config, problem)
    assert switch is not None and 2 < switch < STEPS
    for p, theta in zip(params, expected, strict=True):
        state = opt.state[p]
        assert state["switch_step"] == switch
        assert state["group_step"] == switch
        assert state["sgd_lr"] == pytest.approx((1 - config["betas"][0]) * big_lambda, rel=1e-9)
        np.testing.assert_allclose(p.numpy(), theta, rtol=1e-6, atol=1e-9)


def test_no_switch_with_the_paper_tolerance() -> None:
    """With switch_eps = 1e-9 this problem stays in the Adam phase: Adam, step for step."""
    problem = _problem()
    params, opt = _run_torch(problem, {"lr": 1e-2})
    adam = [torch.tensor(p["theta"]) for p in problem]
    torch_adam = torch.optim.Adam(adam, lr=1e-2, eps=1e-8, foreach=False)
    for _ in range(STEPS):
        for p, prob in zip(adam, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.numpy()))
        torch_adam.step()
    for p, q in zip(params, adam, strict=True):
        assert opt.state[p]["switch_step"] is None
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)


def test_sgd_phase_follows_the_group_learning_rate() -> None:
    """After the switch a schedule still scales the step: halving lr halves it."""
    problem = _problem()
    steps = {}
    for scale in (1.0, 0.5):
        params, opt = _run_torch(problem, CONFIGS["absolute"], steps=100)
        assert all(opt.state[p]["switch_step"] is not None for p in params)
        before = [p.clone() for p in params]
        opt.param_groups[0]["lr"] *= scale
        for p, prob in zip(params, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.numpy()))
        opt.step()
        steps[scale] = [p - b for p, b in zip(params, before, strict=True)]
    for full, half in zip(steps[1.0], steps[0.5], strict=True):
        torch.testing.assert_close(half, 0.5 * full, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_state_dict_round_trip_is_bit_identical(scope: str) -> None:
    """Saved at step 30, when (layer scope) some tensors have switched and some not."""
    problem = _problem()
    config = {**CONFIGS["absolute"], "gamma_scope": scope}
    params, opt = _run_torch(problem, config, steps=30)
    switched = [opt.state[p]["switch_step"] is not None for p in params]
    assert any(switched) and (scope == "global" or not all(switched))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed_params = [p.clone() for p in params]
    resumed = SWATS(resumed_params, gamma_scope=scope)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(STEPS - 30):
        for ps, o in ((params, opt), (resumed_params, resumed)):
            for p, prob in zip(ps, problem, strict=True):
                p.grad = torch.from_numpy(_grad(prob, p.numpy()))
            o.step()
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)
        assert opt.state[a]["switch_step"] == resumed.state[b]["switch_step"]


def test_bf16_parameters() -> None:
    problem = _problem()
    params = [torch.tensor(p["theta"], dtype=torch.bfloat16) for p in problem]
    opt = SWATS(params, lr=1e-2, switch_eps=1e-3, switch_test="relative")
    for _ in range(STEPS):
        for p, prob in zip(params, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.double().numpy())).bfloat16()
        opt.step()
    ref, _ = _run_torch(problem, CONFIGS["relative"])
    for p, q in zip(params, ref, strict=True):
        assert p.dtype == torch.bfloat16
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.double(), q, rtol=0.1, atol=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, -0.5)}, "Invalid beta parameter at index 1: -0.5"),
        ({"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ({"weight_decay": float("nan")}, "Invalid weight_decay value: nan"),
        ({"switch_eps": 0.0}, "Invalid switch_eps value: 0.0"),
        ({"switch_test": "fuzzy"}, "Invalid switch_test value: 'fuzzy'"),
        ({"gamma_scope": "model"}, "Invalid gamma_scope value: 'model'"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SWATS([torch.zeros(2, requires_grad=True)], **kwargs)


def test_registry_defaults_match_the_class() -> None:
    signature = inspect.signature(SWATS)
    for name, value in get_spec("swats").resolve({}).items():
        assert signature.parameters[name].default == value, name
    opt = build("swats", [torch.zeros(3, requires_grad=True)], gamma_scope="global")
    assert isinstance(opt, SWATS)
    assert opt.param_groups[0]["gamma_scope"] == "global"


# -- the fast paths against the reference, across the switch --------------------------------
# (130, 130) and (20_000,) are above optimizers._fused's CPU eager threshold, so the
# compiled kernels run on them; the small tensors take the eager branch.
FAST_SHAPES = [(130, 130), (20_000,), (5,), (2, 2, 3)]
FAST_STEPS = 60
# Switch steps on the reference, and the least distance of |L_hat - gamma| / tolerance
# from 1 over the run (a path's rounding moves it by ~1e-12): layer [13, never, never,
# 42], 45%; global 13, 16%; L2 with eps = 0 (layer) [13, 14, never, 4], 1.8%.
FAST_CONFIGS = {
    "layer": {"lr": 1e-2, "switch_eps": 3e-4, "switch_test": "relative"},
    "global": {"lr": 1e-2, "switch_eps": 5e-4, "switch_test": "relative", "gamma_scope": "global"},
    "l2-eps0": {
        "lr": 1e-2,
        "switch_eps": 5e-4,
        "switch_test": "relative",
        "weight_decay": 0.05,
        "eps": 0.0,
    },
}
FAST_PATHS = [
    pytest.param({"foreach": True}, id="foreach"),
    # On the CPU: the native kernels, then the compiled ones (what CUDA runs).
    pytest.param({"fused": True}, id="fused", marks=pytest.mark.slow),
    pytest.param({"fused": True, "native": False}, id="fused-compiled", marks=pytest.mark.slow),
]


def _run_fast_problem(
    config: dict[str, Any], impl: dict[str, bool]
) -> tuple[list[torch.Tensor], SWATS]:
    impl = dict(impl)
    if not impl.pop("native", True):
        with _native.disabled():
            return _run_fast_problem(config, impl)
    rng = np.random.default_rng(1)
    problem = [
        {
            "theta": rng.standard_normal(s),
            "h": rng.uniform(0.5, 2.0, s),
            "target": rng.standard_normal(s),
        }
        for s in FAST_SHAPES
    ]
    params = [torch.tensor(p["theta"]) for p in problem]
    opt = SWATS(params, **config, **impl)
    for _ in range(FAST_STEPS):
        for p, prob in zip(params, problem, strict=True):
            p.grad = torch.from_numpy(_grad(prob, p.numpy()))
        opt.step()
    return params, opt


@pytest.mark.parametrize("impl", FAST_PATHS)
@pytest.mark.parametrize("config", FAST_CONFIGS.values(), ids=FAST_CONFIGS.keys())
def test_fast_path_matches_reference_across_the_switch(
    config: dict[str, Any], impl: dict[str, bool]
) -> None:
    """Same switch step, same Lambda, same parameters and buffers (float64, 1e-10)."""
    ref_params, ref_opt = _run_fast_problem(config, {"foreach": False})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile failure would fall back
        params, opt = _run_fast_problem(config, impl)
    switches = [ref_opt.state[p]["switch_step"] for p in ref_params]
    assert any(s is not None and 2 < s < FAST_STEPS // 2 for s in switches)  # both phases run
    for p, q in zip(params, ref_params, strict=True):
        state, ref_state = opt.state[p], ref_opt.state[q]
        assert set(state) == set(ref_state)
        for key, value in ref_state.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(state[key], value, rtol=1e-10, atol=1e-12, msg=key)
            elif isinstance(value, float):
                assert state[key] == pytest.approx(value, rel=1e-10, abs=1e-300), key
            else:
                assert state[key] == value, key  # switch_step, group_step
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
