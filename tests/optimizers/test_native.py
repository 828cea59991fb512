"""The native CPU kernels (``optimizers._native``, ``optimizers/csrc``).

Their numbers are checked against the reference paths by the conformance suite and
``test_fused_paths.py`` (``fused_device`` = ``cpu``); here: what they run on, the
build cache, the fallback when they cannot be built, and that a step does not depend
on thread timing or on the thread count beyond rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.optim import Optimizer

from optimizers import (
    EVE,
    LAMB,
    SWATS,
    AdEMAMix,
    RAdam,
    SETAdam,
    _native,
    ademamix,
    eve,
    lamb,
    radam,
    set_adam,
    swats,
)

# Each optimizer with a native kernel: its class, and the kernel.
KERNELS = {
    "ademamix": (AdEMAMix, ademamix._NATIVE),
    "eve": (EVE, eve._NATIVE),
    "lamb": (LAMB, lamb._NATIVE),
    "radam": (RAdam, radam._NATIVE),
    "set_adam": (SETAdam, set_adam._NATIVE),
    "swats": (SWATS, swats._NATIVE_ADAM),
    "swats_sgd": (SWATS, swats._NATIVE_SGD),  # checked across the switch in test_swats.py
}
# Sizes around the per-thread slices (16 elements) and smaller than the thread count.
SHAPES = [(1,), (2,), (15,), (16,), (17,), (33,), (40, 25), (3, 4, 5)]


def _run(
    make: Callable[[list[torch.Tensor]], Optimizer], dtype: torch.dtype = torch.float64
) -> list[torch.Tensor]:
    """20 steps from a fixed start with fixed gradients; the final parameters."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in SHAPES]
    opt = make(params)
    for _ in range(20):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype) + 0.1 * p.detach()
        opt.step()
    return [p.detach() for p in params]


def test_every_kernel_is_listed() -> None:
    assert _native.kernel_names() == sorted(KERNELS)


def _rows(kernel: _native.NativeKernel, t: torch.Tensor) -> list[list[torch.Tensor]]:
    """One row like ``t`` (clones, so none aliases), with the kernel's accumulators."""
    body = [t if i == 0 else t.clone() for i in range(kernel.width - len(kernel.per_row))]
    return [body + [torch.zeros(n, dtype=torch.float64) for n in kernel.per_row]]


@pytest.mark.parametrize("name", KERNELS)
def test_runs_float32_and_float64_contiguous_cpu_tensors_only(name: str) -> None:
    kernel = KERNELS[name][1]
    for dtype in (torch.float32, torch.float64):
        assert kernel.applies(_rows(kernel, torch.zeros(4, 5, dtype=dtype)))
    assert not kernel.applies(_rows(kernel, torch.zeros(4, 5, dtype=torch.bfloat16)))
    assert not kernel.applies(_rows(kernel, torch.zeros(5, 4).t()))
    with _native.disabled():
        assert not kernel.applies(_rows(kernel, torch.zeros(3)))


@pytest.mark.parametrize("name", KERNELS)
def test_rows_unlike_their_parameter_never_reach_the_cpp(name: str) -> None:
    """The C++ trusts sizes and dtypes: a state buffer of another size (say, from a
    hand-edited state dict) or dtype, or a wrong accumulator, is refused here."""
    kernel = KERNELS[name][1]
    for index, bad in [(2, torch.zeros(21)), (2, torch.zeros(4, 5, dtype=torch.float64))]:
        row = _rows(kernel, torch.zeros(4, 5))[0]
        row[index] = bad
        assert not kernel.applies([row])
    if kernel.per_row:
        row = _rows(kernel, torch.zeros(4, 5))[0]
        row[-1] = torch.zeros(3, dtype=torch.float64)
        assert not kernel.applies([row])
    assert not kernel.applies([_rows(kernel, torch.zeros(4, 5))[0][:-1]])


@pytest.mark.parametrize("name", KERNELS)
def test_tensors_it_cannot_run_take_the_compiled_path_with_the_same_numbers(name: str) -> None:
    """A non-contiguous parameter and a bf16 one beside float32 ones: every bucket
    gets the reference's numbers, whichever path it took."""
    cls = KERNELS[name][0]
    gen = torch.Generator().manual_seed(1)

    def params() -> list[torch.Tensor]:
        gen.manual_seed(1)
        return [
            torch.randn(30, 20, generator=gen).requires_grad_(),
            torch.randn(20, 30, generator=gen).t().requires_grad_(),  # a strided leaf
            torch.randn(64, generator=gen).to(torch.bfloat16).requires_grad_(),
        ]

    ref, fused = params(), params()
    opt_ref, opt_fused = cls(ref, foreach=False), cls(fused, fused=True)
    assert not fused[1].is_contiguous()
    for _ in range(5):
        for a, b in zip(ref, fused, strict=True):
            g = torch.randn(a.shape, generator=gen).to(a.dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt_ref.step()
        opt_fused.step()
    for a, b in zip(ref, fused, strict=True):
        tol = 1e-2 if a.dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", KERNELS)
def test_a_step_repeats_bit_for_bit_and_the_thread_count_changes_only_rounding(
    name: str,
) -> None:
    cls = KERNELS[name][0]
    threads = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "the native CPU kernel", RuntimeWarning)
        try:
            torch.set_num_threads(3)  # more threads than cores: uneven arrival order
            first = _run(lambda ps: cls(ps, fused=True))
            again = _run(lambda ps: cls(ps, fused=True))
            torch.set_num_threads(1)
            serial = _run(lambda ps: cls(ps, fused=True))
        finally:
            torch.set_num_threads(threads)
    reference = _run(lambda ps: cls(ps, foreach=False))
    for a, b, c, r in zip(first, again, serial, reference, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", KERNELS)
def test_autograd_sees_the_writes(name: str) -> None:
    """As after an ATen in-place op: a graph that saved the parameter refuses to
    backward once the step has moved it (no silently wrong gradients)."""
    param = torch.randn(40, requires_grad=True)
    opt = KERNELS[name][0]([param], fused=True)
    loss = (param * param).sum()  # saves param
    param.grad = torch.ones(40)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_library_is_built_once_and_found_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTSERVE_KERNEL_CACHE", str(tmp_path))
    built = _native._build("lamb")
    stat = built.stat()
    assert built.parent == tmp_path and built.name.startswith("lamb-")
    again = _native._build("lamb")
    assert again == built
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no temporary left


def test_the_cache_name_depends_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-march=native`` code must never be loaded on a CPU it was not built for."""
    monkeypatch.setenv("OPTSERVE_KERNEL_CACHE", str(tmp_path))
    here = _native._build("set_adam")
    monkeypatch.setattr(_native, "_cpu_features", lambda: "flags : sse2")
    assert _native._build("set_adam") != here


@pytest.mark.parametrize("compiler", ["/nonexistent/c++", "false"])
def test_without_a_working_compiler_it_warns_and_the_compiled_path_runs(
    compiler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTSERVE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", compiler)
    fresh = _native.NativeKernel("lamb", lamb._NATIVE.width, lamb._NATIVE.scalars)
    monkeypatch.setattr(lamb, "_NATIVE", fresh)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = _run(lambda ps: LAMB(ps, fused=True))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages  # once, not per step
    assert "native CPU kernel lamb is unavailable" in messages[0]
    assert list(tmp_path.iterdir()) == []
    reference = _run(lambda ps: LAMB(ps, foreach=False))
    for a, r in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_coefficients_must_be_numbers_booleans_or_none() -> None:
    assert _native._as_double(None) != _native._as_double(None)  # NaN
    assert (_native._as_double(True), _native._as_double(2)) == (1.0, 2.0)
    with pytest.raises(TypeError, match="root"):
        _native._as_double("root")
