"""The fused fast path: each optimizer's per-tensor update compiled into one pass.

A step of Adam-like optimizers is memory-bound: per element it reads the parameter,
the gradient and each state buffer, and writes the parameter and the state back.
The ``torch._foreach_*`` path runs one kernel per *operation*, so every buffer
crosses the memory bus once per operation that touches it: on a 2-core CPU a
``_foreach_`` Adam takes 5-6x its memory-traffic floor and AdEMAMix 7-8x, while
``torch.optim.AdamW(fused=True)`` (a hand-written single-pass kernel) takes ~1.2x.
Compiling the per-tensor update with ``torch.compile`` gives the same single pass
for every optimizer without a hand-written kernel per optimizer (measured on the
bench's demonstrator Adam: see ``bench/optimizer_step.py``). On CUDA this is every
fused path; on the CPU, our optimizers run float32/float64 tensors through a native
kernel instead (:mod:`optimizers._native` says why) and come here for the rest.

An optimizer provides one *kernel*: ``fn(param, grad, *state, **scalars)``, the
element-wise update of one tensor, which its reference path also calls eagerly.
The choices below, and why:

* **One graph for every shape.** Tensors are flattened to 1-D views and compiled
  with ``dynamic=True``, so one graph serves biases, matrices and convolutions
  alike (without flattening each rank would be its own graph). Dynamo specialises
  sizes 0 and 1, so tensors with fewer than two elements, and non-contiguous
  tensors (which cannot be viewed flat), run the same function eagerly instead of
  each costing a compile.
* **Several tensors per call.** A call into a compiled function costs ~35 us on
  CPU (guards, wrappers), as much as the kernel itself for a tensor of ~10^5
  elements. The compiled function therefore updates ``ROWS_PER_CALL`` (8) tensors,
  each with its own symbolic size; the last call of a step is padded with
  2-element dummy tensors. On the demonstrator Adam this cut the cost per tensor
  from ~68 us to ~19 us. The warm-up gives every row a different size, so that
  dynamo does not assume (and guard) that the rows' sizes are equal.
* **Small CPU tensors take a serial graph.** Every compiled call on CPU opens an
  OpenMP parallel region, which for a tensor of a few thousand elements costs more
  than it saves (and waits for a second thread that another process may have
  descheduled, milliseconds on a busy machine). Below 16,384 elements rows go to a
  second compiled variant whose loops are serial (see the warm-up below). Running
  them eagerly instead costs one kernel launch per operation: ~5 us each, ~100 us
  per tensor for LAMB's or SET-Adam's two passes, 1.5-2 ms of a step with the
  bench's 16 bias-sized tensors. Tensors of 0 or 1 element, and non-contiguous
  ones, run eagerly. On GPUs every size >= 2 takes the one (parallel) graph.
* **Scalars as 0-d tensors.** Every ``int``/``float`` keyword (learning rate from
  a schedule, bias corrections, the step) is passed as a 0-d tensor on the
  parameter's device: a changed value is new *data*, not a failed guard, so a
  schedule never recompiles. Python floats would be burnt into the graph as
  constants (or, when dynamo makes them symbolic, guarded on relations such as
  ``step < warmup`` that flip mid-run). The tensors are made with ``torch.full``,
  which on CUDA is a kernel launch rather than a blocking host-to-device copy,
  and once per bucket of tensors (same device, dtype and step), not per tensor.
  Scalars are float64 for float64 parameters (so the fused path matches the
  float64 reference to rounding) and float32 otherwise; a 0-d tensor never
  promotes the dimensioned ones, so bf16 parameters stay bf16 (the compiled
  kernel computes in float32 registers and rounds once on store).
  ``bool``, ``None`` and ``str`` keywords are structural and stay Python values:
  changing one is a different graph.
* **Scalar math outside the kernel.** A kernel should take ready-made
  coefficients (``step_size``, ``1 - beta1``...), computed by the optimizer in
  Python per bucket. Scalar math written inside the kernel (``1 - beta2 ** step``)
  is inlined by Inductor into the element loop, where the C++ compiler cannot
  hoist it (the scalar inputs may alias the outputs): on the demonstrator Adam
  that made the kernel 3-4x slower than the same kernel fed coefficients.
* **Compiled once per (function, dtypes, device, variant), on a warm-up call.** The
  first call for a new key compiles on zero-filled dummy tensors. Inductor's CPU
  code generator decides whether to emit an OpenMP-parallel loop from the size it
  sees at compile time, so the parallel variant warms up on ~65,536 elements (a
  parallel loop for up to 128 threads) and the serial one on ~256; compiling on
  whatever tensor comes first would pick by chance. A compile failure (no C++
  compiler, an untraceable function) therefore happens before any real tensor is
  touched: it is reported once with a ``RuntimeWarning`` and that key runs eagerly
  from then on, with the same results.
* **A private code object per key.** Dynamo caches compiled graphs on a code
  object and gives up (runs eagerly) after ``torch._dynamo.config.recompile_limit``
  (8) variants. Every kernel's multi-tensor wrapper shares one code object, and a
  service process runs float32, float64 and bf16 trials; a copy of the code object
  per key keeps each cache to a single entry.
* **Small per-layer tensors ride along whole.** A kernel may end its row with
  ``per_row`` small tensors of a fixed shape (a layer's reductions written by one
  pass and read by the next, an accumulator): they are neither flattened nor
  size-checked, their shape is part of the graph, and the padding rows get their
  own. Each row needs its own such tensors (distinct allocations: views of one
  buffer would alias, which fails the guards), with at least one dimension
  (torch 2.13 silently drops compiled writes into 0-d float64 inputs).
* **Per-layer results are finished in the pass that reduces.** A coefficient that
  the next pass needs (LAMB's ``lr * ratio``, SET-Adam's scale and shift) is
  computed once, at the end of the reducing pass, and stored in the per-row
  tensor: math on the reductions left to the next pass would be inlined into its
  element loop, like any scalar math (see above).
* **Reductions over stored values share the store's loop** (:data:`REDUCE_AS_STORED`).
  By default Inductor recomputes a value such as the new ``v`` inside the
  reduction's loop and writes it back in a second loop over the tensor (two
  reads of the inputs instead of one); with ``realize_acc_reads_threshold=1`` the
  stores and the reductions share one loop (SET-Adam's moments pass on 10M
  elements: 6.1 -> 3.8 ms, LAMB's: 9.5 -> 4.9 ms). It is an option per kernel, not
  a default: on SWATS's Adam kernel, whose reductions read a value it never stores
  (the step ``p``), it makes ``p`` a temporary buffer and the step 2.5x slower.
* ``fullgraph=True``: a graph break would split the update into several passes and
  silently lose the point of fusing; an error instead triggers the eager fallback.

Kernels must be *tensor-polymorphic*: correct when their scalar keywords are Python
floats (the reference path) and when they are 0-d tensors (this path). In practice:
arithmetic operators, ``mul_``, ``add_(tensor)``, ``lerp_``, ``torch.where`` and
``torch.maximum`` (plain multiply-adds compile to fewer instructions than ``lerp_``,
which matters on a small CPU); no ``alpha=``/``value=`` keywords, no ``math.*``, no Python
``if`` on a scalar keyword (``if exp_avg is None`` on an optional buffer is fine:
``None`` is structural). Calls run under ``torch.no_grad()``.

Usage, in an optimizer module (the reference path calls the same kernel)::

    def _adam_scalars(step, *, lr, beta1, beta2, eps, weight_decay) -> dict[str, float]:
        return {"decay": 1 - lr * weight_decay, "step_size": lr / (1 - beta1**step), ...}

    def _adam_kernel(param, grad, exp_avg, exp_avg_sq, *, decay, step_size, ...) -> None:
        param.mul_(decay)
        ...

    def _fused_adam(params, grads, exp_avgs, exp_avg_sqs, steps, **hp) -> None:
        apply_fused(_adam_kernel, [params, grads, exp_avgs, exp_avg_sqs], steps,
                    lambda step: _adam_scalars(step, **hp))
"""

from __future__ import annotations

import threading
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias, TypeGuard

import torch
from torch import Tensor

from optimizers._common import _buckets

__all__ = [
    "REDUCE_AS_STORED",
    "ROWS_PER_CALL",
    "BoundKernel",
    "FusedKernel",
    "apply_fused",
    "fused_kernel",
    "per_layer_values",
    "scalar_dtype",
]

UpdateFn: TypeAlias = Callable[..., None]
Row: TypeAlias = Sequence[Tensor | None]
_Key: TypeAlias = tuple[object, ...]

# Tensors updated by one call of a compiled function (see the module docstring).
ROWS_PER_CALL = 8
# Compile-time size hints: Inductor's CPU code generator emits an OpenMP-parallel loop
# when the size it sees gives each thread at least 512 elements. The parallel variant
# is compiled on 65,536 (parallel for up to 128 threads), the serial one on 256.
_PARALLEL_WARMUP_NUMEL = 65_536
_SERIAL_WARMUP_NUMEL = 256
# Inductor options for every kernel: dynamo's guards already check the inputs' sizes
# and strides, the generated code's asserts would repeat it (~15 us per call).
_BASE_OPTIONS: Mapping[str, Any] = MappingProxyType({"size_asserts": False})
# Inductor options for a kernel whose reductions read values it also stores (see
# the module docstring).
REDUCE_AS_STORED: Mapping[str, Any] = MappingProxyType({"realize_acc_reads_threshold": 1})
# Sizes 0 and 1 are specialised by dynamo; smaller tensors run eagerly.
_MIN_COMPILED_NUMEL = 2
# On CPU, tensors below this size take the serial variant (see the module docstring).
_CPU_SERIAL_NUMEL = 16_384


def scalar_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the 0-d scalar tensors passed with tensors of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_layer_values(param: Tensor, count: int) -> Tensor:
    """Room for ``count`` values of ``param``'s layer that one pass writes and the next
    reads (a row's per-row tail), in the dtype of the scalars passed with ``param``."""
    return torch.empty(count, dtype=scalar_dtype(param.dtype), device=param.device)


@dataclass(frozen=True)
class _Compiled:
    """A key's compiled multi-row function (``None`` after a failed compile)."""

    fn: UpdateFn | None
    padding: tuple[tuple[Tensor | None, ...], ...] = ()


@dataclass(frozen=True)
class BoundKernel:
    """A kernel with its scalars prepared for one bucket of tensors.

    A *row* is the tensors of one update: parameter, gradient, state... (``None``
    for an absent optional buffer). ``variant(serial)`` gives the compiled function
    for large (``False``) or small CPU (``True``) rows, compiling on first use.
    """

    eager: UpdateFn
    kwargs: Mapping[str, Any]
    variant: Callable[[bool], _Compiled]
    per_row: int = 0

    def __call__(self, *row: Tensor | None) -> None:
        """Update one row (prefer :meth:`run` for many: it batches the calls)."""
        self.run([row])

    def run(self, rows: Sequence[Row]) -> None:
        """Update every row: eagerly where it must, compiled ``ROWS_PER_CALL`` at a time."""
        if torch.is_grad_enabled():
            # Updates are in place on leaves; the graphs were compiled without grad.
            with torch.no_grad():
                self.run(rows)
            return
        # Index 0: the parallel variant, 1: the serial one (small CPU tensors).
        batches: tuple[list[Tensor | None], list[Tensor | None]] = ([], [])
        variants: list[_Compiled | None] = [None, None]
        for row in rows:
            param = row[0]
            assert param is not None
            numel = param.numel()
            flat = None
            if numel >= _MIN_COMPILED_NUMEL:
                index = int(param.is_cpu and numel < _CPU_SERIAL_NUMEL)
                compiled = variants[index] or self.variant(bool(index))
                variants[index] = compiled
                flat = _flat_views(row, self.per_row) if compiled.fn else None
            if flat is None:
                self.eager(*row, **self.kwargs)
                continue
            batch = batches[index]
            batch.extend(flat)
            if len(batch) == ROWS_PER_CALL * len(row):
                self._call(compiled, batch)
                batch.clear()
        for batch, last in zip(batches, variants, strict=True):
            if batch and last is not None:
                missing = ROWS_PER_CALL - len(batch) // len(rows[0])
                self._call(last, batch + [t for pad in last.padding[:missing] for t in pad])

    def _call(self, compiled: _Compiled, batch: list[Tensor | None]) -> None:
        assert compiled.fn is not None
        compiled.fn(*batch, **self.kwargs)


class FusedKernel:
    """A per-tensor update function, compiled lazily once per (dtypes, device, variant).

    Use :func:`fused_kernel` to get the process-wide instance for a function.
    """

    def __init__(
        self, fn: UpdateFn, per_row: int = 0, options: Mapping[str, Any] | None = None
    ) -> None:
        self.fn = fn
        self.per_row = per_row
        self.options = dict(options or {})
        self._compiled: dict[_Key, _Compiled] = {}
        self._lock = threading.Lock()
        self._warned = False

    @property
    def compiled_keys(self) -> list[_Key]:
        """Keys compiled so far (eager fallbacks included): what a test can count."""
        return list(self._compiled)

    def bind(self, example: Row, **scalars: object) -> BoundKernel:
        """Prepare ``scalars`` for rows like ``example``; compile on a new key.

        Numbers become 0-d tensors on ``example[0]``'s device; other values are
        structural and pass through unchanged.
        """
        param = example[0]
        if param is None:
            raise ValueError("the first tensor (the parameter) cannot be None")
        if any(t is not None and t.dim() == 0 for t in example[len(example) - self.per_row :]):
            # torch 2.13 drops compiled writes into 0-d float64 inputs, silently.
            raise ValueError("per-row tensors need at least one dimension")
        dtype = scalar_dtype(param.dtype)
        kwargs = {
            name: _as_scalar(value, dtype, param.device) if _is_number(value) else value
            for name, value in scalars.items()
        }
        if torch.compiler.is_compiling():
            # Inside an outer torch.compile: let it trace the plain function.
            return BoundKernel(self.fn, kwargs, lambda serial: _Compiled(None))
        key = _key(example, kwargs)

        def variant(serial: bool) -> _Compiled:
            compiled = self._compiled.get((*key, serial))
            if compiled is None:
                compiled = self._compile((*key, serial), example, kwargs, serial)
            return compiled

        return BoundKernel(self.fn, kwargs, variant, self.per_row)

    def __call__(self, *row: Tensor | None, **scalars: object) -> None:
        """Bind and run on one row (convenient, but binds on every call)."""
        self.bind(row, **scalars)(*row)

    def _compile(
        self, key: _Key, example: Row, kwargs: Mapping[str, Any], serial: bool
    ) -> _Compiled:
        with self._lock:
            if key in self._compiled:
                return self._compiled[key]
            rows_fn = _clone_function(_rows_function(self.fn, len(example)))
            try:
                compiled: UpdateFn = torch.compile(
                    rows_fn,
                    fullgraph=True,
                    dynamic=True,
                    options={**_BASE_OPTIONS, **self.options},
                )
                with torch.no_grad():
                    compiled(
                        *_dummy_rows(example, _warmup_numel(serial), ROWS_PER_CALL, self.per_row),
                        **kwargs,
                    )
                entry = _Compiled(compiled, _padding(example, self.per_row))
            except Exception as exc:  # any compile failure: fall back, never fail a step
                self._warn(exc)
                entry = _Compiled(None)
            self._compiled[key] = entry
            return entry

    def _warn(self, exc: BaseException) -> None:
        if self._warned:
            return
        self._warned = True
        text = str(exc).strip()
        summary = text.splitlines()[0] if text else ""
        warnings.warn(
            f"torch.compile of {self.fn.__qualname__} failed ({type(exc).__name__}: "
            f"{summary}); its fused path runs eagerly",
            RuntimeWarning,
            stacklevel=4,
        )


_KERNELS: dict[tuple[object, ...], FusedKernel] = {}
_KERNELS_LOCK = threading.Lock()


def fused_kernel(
    fn: UpdateFn, per_row: int = 0, options: Mapping[str, Any] | None = None
) -> FusedKernel:
    """The process-wide :class:`FusedKernel` of ``fn`` (created on first use).

    ``per_row``: how many tensors at the end of each row are small per-layer tensors
    of a fixed shape; ``options``: Inductor options for its compile, such as
    :data:`REDUCE_AS_STORED` (see the module docstring).
    """
    key = (fn, per_row, tuple(sorted((options or {}).items())))
    kernel = _KERNELS.get(key)
    if kernel is None:
        with _KERNELS_LOCK:
            kernel = _KERNELS.setdefault(key, FusedKernel(fn, per_row, options))
    return kernel


def apply_fused(
    fn: UpdateFn,
    tensor_lists: Sequence[Sequence[Tensor]],
    steps: Sequence[int],
    scalars: Callable[[int], Mapping[str, object]],
    per_row: int = 0,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Run ``fn`` compiled on every tensor: the body of an optimizer's fused path.

    Args:
        fn: the tensor-polymorphic per-tensor update, called as
            ``fn(param, grad, *state, **scalars(step))``.
        tensor_lists: parallel lists, parameters first; an empty list stands for an
            optional buffer that is absent for every tensor (passed as ``None``).
        steps: each parameter's step count (after incrementing).
        scalars: the keyword arguments for a given step, Python values; evaluated
            once per bucket of tensors sharing device, dtype and step.
        per_row: the last ``per_row`` lists hold small per-layer tensors of a fixed
            shape, one per parameter (see the module docstring).
        options: Inductor options for the compile (see :func:`fused_kernel`).
    """
    kernel = fused_kernel(fn, per_row, options)
    with torch.no_grad():
        for (_, _, step), idx in _buckets(tensor_lists[0], steps).items():
            rows = [tuple(lst[i] if lst else None for lst in tensor_lists) for i in idx]
            kernel.bind(rows[0], **scalars(step)).run(rows)


# Helpers.
def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    # torch.full launches a fill kernel: no blocking host-to-device copy on CUDA.
    return torch.full((), float(value), dtype=dtype, device=device)


def _key(example: Row, kwargs: Mapping[str, Any]) -> _Key:
    """What a compiled graph is specialised on: dtypes, device and structural values."""
    dtypes = tuple(None if t is None else t.dtype for t in example)
    device = next(t.device for t in example if t is not None)
    structure = tuple(
        (name, "tensor" if isinstance(value, Tensor) else value)
        for name, value in sorted(kwargs.items())
    )
    return (dtypes, device, structure)


def _warmup_numel(serial: bool) -> int:
    return _SERIAL_WARMUP_NUMEL if serial else _PARALLEL_WARMUP_NUMEL


def _flat_views(row: Row, per_row: int = 0) -> list[Tensor | None] | None:
    """1-D views of ``row`` (its per-layer tail whole), or ``None`` to run it eagerly.

    The tensors of a row other than the per-layer tail have the parameter's shape.
    """
    out = list(row)
    for i in range(len(row) - per_row):
        t = row[i]
        if t is None:
            continue
        if not t.is_contiguous():
            return None
        # A view of a leaf that requires grad would fail the guards of the warm-up's
        # plain tensors (a recompile); detach only where needed, it costs ~1 us.
        out[i] = t.detach().view(-1) if t.requires_grad else t.view(-1)
    return out


def _zeros_like_row(example: Row, numel: int, per_row: int) -> tuple[Tensor | None, ...]:
    """Zeros like ``example``: ``numel`` elements, the per-layer tail in its own shape."""
    return tuple(
        None
        if t is None
        else torch.zeros_like(t)
        if i >= len(example) - per_row
        else torch.zeros(numel, dtype=t.dtype, device=t.device)
        for i, t in enumerate(example)
    )


def _dummy_rows(example: Row, numel: int, rows: int, per_row: int) -> list[Tensor | None]:
    """``rows`` rows of zeros like ``example``, each of a different size."""
    return [t for i in range(rows) for t in _zeros_like_row(example, numel + i, per_row)]


def _padding(example: Row, per_row: int) -> tuple[tuple[Tensor | None, ...], ...]:
    """Rows of 2-element zeros to fill a short last call; distinct tensors, because
    inputs that alias each other would fail the compiled function's guards."""
    return tuple(
        _zeros_like_row(example, _MIN_COMPILED_NUMEL, per_row) for _ in range(ROWS_PER_CALL - 1)
    )


def _rows_function(fn: UpdateFn, width: int) -> UpdateFn:
    """``fn`` applied to ``ROWS_PER_CALL`` consecutive rows of ``width`` tensors."""

    def update_rows(*tensors: Tensor | None, **scalars: Any) -> None:
        for i in range(ROWS_PER_CALL):
            fn(*tensors[i * width : (i + 1) * width], **scalars)

    update_rows.__qualname__ = f"{getattr(fn, '__qualname__', 'kernel')}[x{ROWS_PER_CALL}]"
    return update_rows


def _clone_function(fn: UpdateFn) -> UpdateFn:
    """``fn`` with a private code object, hence a private dynamo cache."""
    if not isinstance(fn, types.FunctionType):
        return fn
    clone = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    clone.__kwdefaults__ = fn.__kwdefaults__
    clone.__qualname__ = fn.__qualname__
    return clone
