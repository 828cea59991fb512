"""The ``fused`` constructor argument of AdEMAMix, RAdam, EVE, SET-Adam and LAMB.

``test_conformance.py`` checks each fused path against its reference with default
hyperparameters; the cases here cover the structural variants it does not reach
(optional buffers, warm-up schedules, the rectification switch with ``eps = 0``,
``eps_mode``, ``tau = 1`` zero denominators, ``exclude_1d``).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
from torch.optim import Optimizer

from optimizers import EVE, LAMB, AdEMAMix, RAdam, SETAdam

CLASSES = [AdEMAMix, RAdam, EVE, SETAdam, LAMB]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fused_and_foreach_are_exclusive(cls: type[Optimizer]) -> None:
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="fused"):
        cls([p], foreach=True, fused=True)
    cls([p], foreach=False, fused=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_setstate_defaults_fused(cls: type[Optimizer]) -> None:
    """A pickled optimizer from before ``fused`` existed loads with ``fused=None``."""
    opt = cls([torch.zeros(3, requires_grad=True)])
    state = copy.copy(opt.__dict__)
    state["param_groups"] = [{k: v for k, v in g.items() if k != "fused"} for g in opt.param_groups]
    opt.__setstate__(state)
    assert all(g["fused"] is None for g in opt.param_groups)


CASES: list[tuple[type[Optimizer], dict[str, Any]]] = [
    (AdEMAMix, {"betas": (0.0, 0.999, 0.9999), "alpha_warmup": 20, "beta3_warmup": 20}),
    (AdEMAMix, {"alpha_warmup": 20, "beta3_warmup": 20, "weight_decay": 0.1}),
    (RAdam, {"eps": 0.0, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (RAdam, {"weight_decay": 0.1}),  # L2
    (EVE, {"amsgrad": True, "weight_decay": 0.1}),
    (
        SETAdam,
        {
            "tau": 1.0,
            "eps_mode": "accumulate",
            "decoupled_weight_decay": False,
            "weight_decay": 0.1,
        },
    ),
    (LAMB, {"exclude_1d": True, "max_weight_norm": 2.0}),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "kwargs"), CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)]
)
def test_fused_matches_reference_variants(
    cls: type[Optimizer], kwargs: dict[str, Any], fused_device: torch.device
) -> None:
    """float64, compiled (130 x 130 and 20_000) and eager (small) tensors, 40 steps;
    the fused path on ``fused_device``, the reference on the CPU."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(130, 130), (20_000,), (7,), (1,)]
    ref = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    fused = [t.to(fused_device, copy=True) for t in ref]
    opt_ref = cls(ref, lr=1e-2, foreach=False, **kwargs)
    opt_fused = cls(fused, lr=1e-2, fused=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile failure would fall back
        for t in range(40):
            for a, b in zip(ref, fused, strict=True):
                g = torch.randn(a.shape, generator=gen, dtype=torch.float64) * (t % 3)
                a.grad, b.grad = g + a, g.to(fused_device) + b
            opt_ref.step()
            opt_fused.step()
    for a, b in zip(ref, fused, strict=True):
        assert b.device.type == fused_device.type
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-12)
