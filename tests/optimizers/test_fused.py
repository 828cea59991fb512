"""``optimizers._fused``: one compile per (function, dtype, device), and an eager fallback.

The compile tests are ``slow`` (Inductor builds C++ for each kernel, seconds on a
small CPU); CI runs them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor
from torch._dynamo.utils import counters

from optimizers import _fused
from optimizers._fused import FusedKernel, apply_fused, fused_kernel

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")

# At least 16,384 elements: on CPU they take the parallel graph.
SHAPES = [(20_000,), (130, 130), (32, 64, 3, 3)]
STEPS = 50
CPU = torch.device("cpu")


def ema_kernel(
    param: Tensor, grad: Tensor, buf: Tensor, *, one_minus_beta: Any, step_size: Any
) -> None:
    """Momentum SGD with a bias-corrected EMA: tensor-polymorphic, as the contract asks."""
    buf.lerp_(grad, one_minus_beta)
    param.sub_(buf * step_size)


def ema_scalars(step: int, *, lr: float, beta: float = 0.9) -> dict[str, float]:
    return {"one_minus_beta": 1.0 - beta, "step_size": lr / (1.0 - beta**step)}


def schedule(step: int) -> float:
    """A cosine learning rate: a new value at every step."""
    return 1e-2 * (0.5 + 0.5 * math.cos(math.pi * step / STEPS))


@pytest.fixture(autouse=True)
def fresh_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test compiles from scratch, so counts do not depend on test order."""
    monkeypatch.setattr(_fused, "_KERNELS", {})
    counters.clear()
    yield


def _tensors(dtype: torch.dtype, device: torch.device = CPU) -> list[list[Tensor]]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).to(device, dtype) for s in SHAPES]
    return [params, [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]]


def _run(lists: list[list[Tensor]], *, fused: bool, start: int = 1, steps: int = STEPS) -> None:
    """``steps`` steps with a scheduled lr, fused or with the kernel run eagerly."""
    gen = torch.Generator().manual_seed(start)
    params, grads, _ = lists
    for step in range(start, start + steps):
        for p, g in zip(params, grads, strict=True):
            g.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
        hp = ema_scalars(step, lr=schedule(step))
        if fused:
            apply_fused(ema_kernel, lists, [step] * len(params), lambda s, hp=hp: hp)
        else:
            for row in zip(*lists, strict=True):
                ema_kernel(*row, **hp)


@contextlib.contextmanager
def no_recompile() -> Iterator[None]:
    """Any recompilation raises (also when it would have fallen back to eager)."""
    with torch.compiler.set_stance("fail_on_recompile"), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_one_compile_serves_every_shape_step_and_lr(device: torch.device) -> None:
    fused, eager = _tensors(torch.float32, device), _tensors(torch.float32, device)
    _run(fused, fused=True, steps=1)
    assert _graphs() == 1
    with no_recompile():
        _run(fused, fused=True, start=2, steps=STEPS - 1)
    assert _graphs() == 1
    [(_, key_device, *_)] = fused_kernel(ema_kernel).compiled_keys
    assert key_device.type == device.type
    _run(eager, fused=False, steps=1)
    _run(eager, fused=False, start=2, steps=STEPS - 1)
    for p, q in zip(fused[0], eager[0], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiles_once_per_dtype(device: torch.device) -> None:
    """float64 matches the eager kernel to rounding; bf16 stays bf16."""
    dtypes = (torch.float32, torch.float64, torch.bfloat16)
    lists = {dtype: _tensors(dtype, device) for dtype in dtypes}
    for tensors in lists.values():
        _run(tensors, fused=True, steps=1)
    assert _graphs() == 3
    with no_recompile():
        for tensors in lists.values():
            _run(tensors, fused=True, start=2, steps=10)
    assert len(fused_kernel(ema_kernel).compiled_keys) == 3
    reference = _tensors(torch.float64, device)
    _run(reference, fused=False, steps=1)
    _run(reference, fused=False, start=2, steps=10)
    for p, q in zip(lists[torch.float64][0], reference[0], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert all(p.dtype == torch.bfloat16 for p in lists[torch.bfloat16][0])


@pytest.mark.slow
def test_small_cpu_tensors_take_one_serial_graph_odd_ones_run_eagerly() -> None:
    """Below 16,384 elements a second graph, compiled serial, serves every size; tensors
    of 0 or 1 element and non-contiguous ones run the kernel eagerly, compiling nothing."""
    lists = _tensors(torch.float32)
    _run(lists, fused=True, steps=1)
    assert _graphs() == 1
    odd = [torch.ones(1), torch.ones(6, 4).t(), torch.ones(0)]
    small = [torch.ones(100), torch.ones(16_383), torch.ones(3, 5)]
    tensors = odd + small
    grads = [torch.full_like(t, 0.5) for t in tensors]
    rows = [(t, g, torch.zeros_like(t)) for t, g in zip(tensors, grads, strict=True)]
    fused_kernel(ema_kernel).bind(rows[0], **ema_scalars(1, lr=1.0)).run(rows)
    for t in tensors:
        # buf = 0.1 * 0.5, step_size = 1.0 / (1 - 0.9): 1 - 0.05 * 10
        torch.testing.assert_close(t, torch.full_like(t, 0.5))
    assert _graphs() == 2
    assert sorted(key[-1] for key in fused_kernel(ema_kernel).compiled_keys) == [False, True]
    with no_recompile():
        fused_kernel(ema_kernel).bind(rows[0], **ema_scalars(2, lr=1.0)).run(rows)
    assert _graphs() == 2


def test_zero_dim_per_row_tensors_are_refused() -> None:
    """Compiled writes into 0-d float64 inputs are lost (torch 2.13): refuse them."""
    row = (torch.ones(4), torch.ones(4), torch.zeros((), dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one dimension"):
        fused_kernel(layer_stats_kernel, per_row=1).bind(row, lr=0.1)


def ema_kernel_plain(param: Tensor, grad: Tensor, *, lr: Any) -> None:
    param.sub_(grad * lr)


def graph_breaking_kernel(param: Tensor, grad: Tensor, *, lr: Any) -> None:
    """Data-dependent Python control flow: cannot be captured as one graph."""
    if float(grad.sum()) > 0:
        param.sub_(grad * lr)


def _fallback_warnings(kernel: FusedKernel, tensors: list[Tensor], calls: int) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(calls):
            kernel(*tensors, lr=0.5)
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_untraceable_kernel_warns_once_and_runs_eagerly() -> None:
    param, grad = torch.ones(8), torch.ones(8)
    messages = _fallback_warnings(FusedKernel(graph_breaking_kernel), [param, grad], calls=3)
    assert len(messages) == 1
    assert "graph_breaking_kernel" in messages[0]
    assert "runs eagerly" in messages[0]
    torch.testing.assert_close(param, torch.full((8,), -0.5))


def test_compile_failure_warns_once_and_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """No working compiler (simulated): the same results, eagerly, after one warning."""

    def no_compiler(*args: object, **kwargs: object) -> object:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    param, grad = torch.ones(8), torch.ones(8)
    messages = _fallback_warnings(FusedKernel(ema_kernel_plain), [param, grad], calls=2)
    assert len(messages) == 1 and "InvalidCxxCompiler" in messages[0]
    torch.testing.assert_close(param, torch.zeros(8))


def test_fused_kernel_is_cached_per_function() -> None:
    assert fused_kernel(ema_kernel) is fused_kernel(ema_kernel)
    assert fused_kernel(ema_kernel) is not fused_kernel(ema_kernel_plain)


def layer_stats_kernel(param: Tensor, grad: Tensor, stats: Tensor, *, lr: Any) -> None:
    """A step, then the layer's (sum, min) into a per-row tensor: what SET-Adam needs."""
    param.sub_(grad * lr)
    stats.copy_(torch.stack([param.sum(dtype=torch.float64), param.min().to(torch.float64)]))


@pytest.mark.slow
def test_per_row_tensors_ride_whole_and_each_row_gets_its_own() -> None:
    """11 rows of different sizes (a full call and a padded one): every row's stats are
    its own layer's, equal to the eager kernel's; one graph, no recompile next step."""
    sizes = [16_384 + 97 * i for i in range(11)]
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(n, generator=gen, dtype=torch.float64) for n in sizes]
    grads = [torch.randn(n, generator=gen, dtype=torch.float64) for n in sizes]
    expected = [p.clone() for p in params]
    for step in (1, 2):
        stats = [torch.full((2,), math.nan, dtype=torch.float64) for _ in sizes]
        if step == 2:
            with no_recompile():
                apply_fused(layer_stats_kernel, [params, grads, stats], [step] * 11, _lr, per_row=1)
        else:
            apply_fused(layer_stats_kernel, [params, grads, stats], [step] * 11, _lr, per_row=1)
        eager_stats = [torch.empty(2, dtype=torch.float64) for _ in sizes]
        for p, g, s in zip(expected, grads, eager_stats, strict=True):
            layer_stats_kernel(p, g, s, lr=0.1)
        for got, want in zip(stats + params, eager_stats + expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert len(fused_kernel(layer_stats_kernel, per_row=1).compiled_keys) == 1


def _lr(step: int) -> dict[str, float]:
    return {"lr": 0.1}
