"""Lookahead against a literal NumPy transcription of Algorithm 1 of arXiv 1907.08610."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from optimizers import LAMB, Lookahead, RAdam, build

STEPS = 200
SHAPES = [(7,), (3, 4), (2, 3, 2)]


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
    return prob["h"] * (theta - prob["target"]) + 0.1 * theta**3 + prob["noise"][t - 1]


def _set_grads(params: list[torch.Tensor], problem: list[dict[str, Any]], t: int) -> None:
    for p, prob in zip(params, problem, strict=True):
        p.grad = torch.from_numpy(_grad(prob, p.detach().double().numpy(), t)).to(p.dtype)


# -- the inner optimizers and Algorithm 1, one line per equation --------------------------
def _sgd(lr, momentum, wd):
    def init(theta):
        return {"buf": np.zeros_like(theta)}

    def step(theta, g, s, t):
        g = g + wd * theta
        s["buf"] = g if t == 1 else momentum * s["buf"] + g
        return theta - lr * s["buf"]

    return init, step


def _adam(lr, b1, b2, eps):
    def init(theta):
        return {"m": np.zeros_like(theta), "v": np.zeros_like(theta)}

    def step(theta, g, s, t):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g**2
        m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)

    return init, step


def _reference(prob, inner, k, alpha):
    init, inner_step = inner
    theta = prob["theta"].copy()
    phi = theta.copy()
    s = init(theta)
    for t in range(1, STEPS + 1):
        theta = inner_step(theta, _grad(prob, theta, t), s, t)
        if t % k == 0:
            phi = phi + alpha * (theta - phi)
            theta = phi.copy()
    return theta


CASES: dict[str, tuple[Callable[[list[torch.Tensor]], torch.optim.Optimizer], Any]] = {
    "sgd": (
        lambda ps: torch.optim.SGD(ps, lr=2e-2, momentum=0.9, weight_decay=0.01),
        _sgd(2e-2, 0.9, 0.01),
    ),
    "adam": (
        lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.9, 0.99), eps=1e-8),
        _adam(1e-2, 0.9, 0.99, 1e-8),
    ),
}


@pytest.mark.parametrize(("k", "alpha"), [(5, 0.5), (3, 0.8)])
@pytest.mark.parametrize("case", CASES.keys())
def test_matches_numpy_transcription(case: str, k: int, alpha: float) -> None:
    make, inner = CASES[case]
    problem = _problem()
    params = [torch.tensor(p["theta"]) for p in problem]
    opt = Lookahead(make(params), k=k, alpha=alpha)
    for t in range(1, STEPS + 1):
        _set_grads(params, problem, t)
        opt.step()
    for p, prob in zip(params, problem, strict=True):
        expected = _reference(prob, inner, k, alpha)
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_alpha_one_is_the_inner_optimizer() -> None:
    problem = _problem()
    wrapped = [torch.tensor(p["theta"]) for p in problem]
    plain = [p.clone() for p in wrapped]
    la = Lookahead(torch.optim.SGD(wrapped, lr=1e-2, momentum=0.9), k=4, alpha=1.0)
    sgd = torch.optim.SGD(plain, lr=1e-2, momentum=0.9)
    for t in range(1, 21):
        _set_grads(wrapped, problem, t)
        la.step()
        _set_grads(plain, problem, t)
        sgd.step()
    for a, b in zip(wrapped, plain, strict=True):
        assert torch.equal(a, b)


def test_slow_weights_start_at_the_first_step() -> None:
    """Parameters edited after construction (a checkpoint loaded late) seed the slow weights."""
    p = torch.zeros(3)
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=2, alpha=0.5)
    p.fill_(1.0)
    for _ in range(2):
        p.grad = torch.ones(3)
        opt.step()
    # fast: 1 -> 0.9 -> 0.8; slow: 1 + 0.5 * (0.8 - 1)
    torch.testing.assert_close(p, torch.full((3,), 0.9))


# -- state dict -----------------------------------------------------------------------------
INNERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "radam": lambda ps: RAdam(ps, lr=1e-2, weight_decay=0.1),
    "lamb": lambda ps: LAMB(ps, lr=1e-2),
}


def _save(opt: torch.optim.Optimizer) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("inner", INNERS.keys())
def test_state_dict_resumes_bit_identical(inner: str) -> None:
    """Save mid-cycle, load into a fresh Lookahead over a fresh inner, continue."""
    problem = _problem(seed=1)
    make = INNERS[inner]
    params = [torch.tensor(p["theta"]) for p in problem]
    opt = Lookahead(make(params), k=5, alpha=0.5)
    for t in range(1, 13):  # 12 = two syncs and two steps into the third cycle
        _set_grads(params, problem, t)
        opt.step()
    saved = _save(opt)
    # The slow weights are not the parameters mid-cycle: losing them would show.
    assert not torch.equal(opt.state[params[0]]["lookahead_slow"], params[0])

    resumed_params = [p.clone() for p in params]
    resumed = Lookahead(make(resumed_params), k=3, alpha=0.9)
    resumed.load_state_dict(saved)
    assert (resumed.k, resumed.alpha, resumed.lookahead_step) == (5, 0.5, 12)
    for t in range(13, 41):
        _set_grads(params, problem, t)
        opt.step()
        _set_grads(resumed_params, problem, t)
        resumed.step()
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)


def test_state_dict_holds_slow_weights_and_inner_state() -> None:
    problem = _problem()
    params = [torch.tensor(p["theta"]) for p in problem]
    opt = Lookahead(torch.optim.Adam(params, lr=1e-2), k=5)
    for t in range(1, 4):
        _set_grads(params, problem, t)
        opt.step()
    state_dict = opt.state_dict()
    assert state_dict["lookahead"] == {"step": 3, "k": 5, "alpha": 0.5}
    assert set(state_dict["state"]) == {0, 1, 2}
    for i, p in enumerate(params):
        entry = state_dict["state"][i]
        assert {"step", "exp_avg", "exp_avg_sq", "lookahead_slow"} <= set(entry)
        torch.testing.assert_close(entry["lookahead_slow"], torch.tensor(problem[i]["theta"]))
        assert not torch.equal(entry["lookahead_slow"], p)
    assert state_dict["param_groups"][0]["lr"] == 1e-2
    # The inner optimizer's own state dict stays free of the wrapper's keys.
    assert "lookahead_slow" not in opt.optimizer.state_dict()["state"][0]


def test_bf16_keeps_float32_slow_weights() -> None:
    problem = _problem()
    params = [torch.tensor(p["theta"], dtype=torch.bfloat16) for p in problem]
    opt = Lookahead(torch.optim.SGD(params, lr=1e-2), k=2)
    for t in range(1, 6):
        _set_grads(params, problem, t)
        opt.step()
    assert all(p.dtype == torch.bfloat16 for p in params)
    assert all(s["lookahead_slow"].dtype == torch.float32 for s in opt.state.values())
    resumed_params = [p.clone() for p in params]
    resumed = Lookahead(torch.optim.SGD(resumed_params, lr=1e-2), k=2)
    resumed.load_state_dict(_save(opt))
    assert all(s["lookahead_slow"].dtype == torch.float32 for s in resumed.state.values())


# -- torch.optim.Optimizer contract -----------------------------------------------------------
def test_is_an_optimizer_sharing_param_groups() -> None:
    p = torch.zeros(3, requires_grad=True)
    inner = torch.optim.Adam([p], lr=1e-2)
    opt = Lookahead(inner, k=6, alpha=0.4)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups
    assert opt.defaults["lookahead_k"] == 6
    assert opt.defaults["lookahead_alpha"] == 0.4
    assert opt.defaults["lr"] == 1e-2
    text = repr(opt)
    assert text.startswith("Lookahead (k=6, alpha=0.4,")
    assert "Adam (" in text
    p.grad = torch.ones(3)
    opt.zero_grad()
    assert p.grad is None
    q = torch.zeros(2, requires_grad=True)
    opt.add_param_group({"params": [q], "lr": 0.5})
    assert inner.param_groups[1]["params"] == [q]
    assert inner.param_groups[1]["betas"] == (0.9, 0.999)


def test_lr_scheduler_on_the_wrapper_drives_the_inner_optimizer() -> None:
    p = torch.zeros(3, requires_grad=True)
    inner = torch.optim.SGD([p], lr=1.0)
    opt = Lookahead(inner, k=2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    for _ in range(3):
        p.grad = torch.ones(3)
        opt.step()
        scheduler.step()
    assert inner.param_groups[0]["lr"] == 0.125
    # still shared after a load (the inner load_state_dict rebinds its list)
    opt.load_state_dict(opt.state_dict())
    assert opt.param_groups is inner.param_groups
    scheduler.step()
    assert inner.param_groups[0]["lr"] == 0.0625


def test_closure_is_passed_to_the_inner_optimizer() -> None:
    p = torch.tensor([2.0], requires_grad=True)
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=1, alpha=0.5)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 4.0
    # fast 2 - 0.1 * 4 = 1.6; slow 2 + 0.5 * (1.6 - 2) = 1.8
    torch.testing.assert_close(p.detach(), torch.tensor([1.8]))


def test_build_composes_lookahead_over_radam() -> None:
    p = torch.zeros(3, requires_grad=True)
    opt = build("lookahead+radam", [p], lookahead_k=6, lr=3e-3)
    assert isinstance(opt, Lookahead)
    assert isinstance(opt.optimizer, RAdam)
    assert (opt.k, opt.alpha) == (6, 0.5)
    assert opt.param_groups[0]["lr"] == 3e-3
    p.grad = torch.ones(3)
    opt.step()


def test_build_passes_fused_to_the_wrapped_base() -> None:
    p = torch.zeros(3, requires_grad=True)
    opt = build("lookahead+radam", [p], fused=True)
    assert isinstance(opt, Lookahead)
    assert opt.optimizer.param_groups[0]["fused"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "Invalid k value: 0"),
        ({"k": 2.5}, "Invalid k value: 2.5"),
        ({"k": True}, "Invalid k value: True"),
        ({"alpha": 0.0}, "Invalid alpha value: 0.0"),
        ({"alpha": 1.5}, "Invalid alpha value: 1.5"),
        ({"alpha": float("nan")}, "Invalid alpha value: nan"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], message: str) -> None:
    inner = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match=message):
        Lookahead(inner, **kwargs)


def test_rejects_a_non_optimizer() -> None:
    with pytest.raises(TypeError):
        Lookahead([torch.zeros(2)])  # type: ignore[arg-type]


def test_deepcopy_keeps_the_sharing_and_the_slow_weights() -> None:
    p = torch.ones(3)
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=2)
    p.grad = torch.ones(3)
    opt.step()
    clone = copy.deepcopy(opt)
    assert clone.param_groups is clone.optimizer.param_groups
    assert clone.lookahead_step == 1
    (q,) = clone.param_groups[0]["params"]
    assert torch.equal(clone.state[q]["lookahead_slow"], torch.ones(3))
