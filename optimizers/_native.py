"""Native CPU kernels: an optimizer's whole step as one C++ loop nest.

Why, measured on the bench's 2-core machine (10M float32 parameters in 50 tensors,
``bench/optimizer_step.py``, ``fused`` against ``compiled`` rows of one run):
Inductor's CPU code opens an OpenMP region and splits the work anew for every tensor
and every pass, which costs 20-40% over the memory-traffic floor on one-pass
optimizers (RAdam compiled 1.48x its floor, native 1.19x; EVE 1.46x, 1.14x) and
doubles two-pass ones: LAMB and SET-Adam need a whole pass over a tensor before any
element can move (a trust ratio, a cosine and a minimum over the updated moments), so
compiled they read every tensor from memory twice (LAMB 2.93x, SET-Adam 2.69x). The
kernels in ``csrc/`` run every tensor of a step in one parallel region, each thread on
the same slice of a tensor in both passes, so the second pass reads what the first
left in that core's cache (LAMB 1.45x, SET-Adam 1.22x).

The choices:

* **Plain C entry points, loaded with ctypes.** A kernel takes the tensors' data
  pointers, sizes and coefficients; no torch headers, so a kernel compiles in well
  under a second with the C++ compiler that ``torch.compile`` needs on a CPU anyway.
* **Built once per machine, cached on disk.** The library is compiled with
  ``-march=native`` (the vector width of this CPU) into ``OPTSERVE_KERNEL_CACHE``
  (default ``~/.cache/optserve/kernels``), named by a hash of the sources, the
  compiler's version, the flags and the CPU's features: a shared cache never hands a
  library to a CPU it was not built for. Written to a temporary name and renamed, so
  worker processes building at once never load a half-written file.
* **Exact to the reference.** Each line is the reference kernel's, in its order of
  operations, with ``-ffp-contract=off`` (no fused multiply-adds the reference does
  not do) and no fast-math: float64 results agree with the reference to rounding
  (the conformance suite checks 1e-10 over 200 steps).
* **Where it applies.** The fused path of AdEMAMix, EVE, LAMB, RAdam, SET-Adam and
  both SWATS phases, on float32 and float64 tensors on the CPU, contiguous; anything
  else (CUDA, bf16, a non-contiguous tensor) takes the compiled path (checked against
  the reference, as the native kernels are). A missing compiler or a failed build
  warns once and the compiled path runs, with the same results.
  ``OPTSERVE_NATIVE_KERNELS=0`` turns the native kernels off.
* **Threads:** ``torch.get_num_threads()``, as torch's own CPU kernels use (the
  worker sets it from its concurrency).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from optimizers._common import _buckets

__all__ = ["NativeKernel", "disabled", "kernel_names", "native_kernel"]

Row = Sequence[Tensor | None]

_SOURCES = Path(__file__).with_name("csrc")
_FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",
    "-ffp-contract=off",
    "-std=c++17",
    "-shared",
    "-fPIC",
)
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
_SIGNATURE = (
    ctypes.c_int64,
    ctypes.POINTER(ctypes.c_int64),
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_int64,
)
# Set by disabled() and by OPTSERVE_NATIVE_KERNELS=0.
_state = {"enabled": os.environ.get("OPTSERVE_NATIVE_KERNELS", "1") != "0"}


@contextmanager
def disabled() -> Iterator[None]:
    """Run the compiled path instead of the native kernels (tests, comparisons)."""
    previous = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = previous


class NativeKernel:
    """One kernel of ``csrc/<source>.cpp`` (``source`` defaults to ``name``): built on
    first use, then called per bucket.

    A row is ``width`` tensors: the parameter, its gradient (read only), then what
    the kernel updates, all like the parameter, and last ``len(per_row)`` small
    float64 tensors of ``per_row`` elements (a layer's accumulators). ``scalars``
    names the coefficients in the order the C++ reads them.
    """

    def __init__(
        self,
        name: str,
        width: int,
        scalars: Sequence[str],
        source: str | None = None,
        per_row: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.source = source or name
        self.width = width
        self.scalars = tuple(scalars)
        self.per_row = tuple(per_row)
        self._functions: dict[torch.dtype, Callable[..., None]] | None = None
        self._failed = False
        self._lock = threading.Lock()

    def run_buckets(
        self,
        tensor_lists: Sequence[Sequence[Tensor]],
        steps: Sequence[int],
        scalars: Callable[[int], Mapping[str, object]],
    ) -> tuple[list[list[Tensor]], list[int]]:
        """Run every bucket (same device, dtype and step) this kernel applies to.

        ``tensor_lists`` are parallel lists, parameters first (an empty list for an
        absent optional buffer), ``scalars`` the coefficients at a step count.
        Returns the rest, for the compiled path: the same lists (empty ones stay
        empty) and steps, restricted to the tensors that did not run here.
        """
        left: list[int] = []
        for (_, _, step), idx in _buckets(tensor_lists[0], steps).items():
            rows = [tuple(lst[i] if lst else None for lst in tensor_lists) for i in idx]
            if self.applies(rows):
                self.run(rows, scalars(step))
            else:
                left.extend(idx)
        left.sort()
        rest = [[lst[i] for i in left] if lst else [] for lst in tensor_lists]
        return rest, [steps[i] for i in left]

    def applies(self, rows: Sequence[Row]) -> bool:
        """Whether every row can run here: CPU, float32/float64, contiguous, and the
        sizes and dtypes the C++ assumes (it cannot check them: a mismatch, say from
        a hand-edited state, takes the compiled path and its errors)."""
        if not _state["enabled"] or self._failed:
            return False
        return all(self._fits(row) for row in rows) and self._load()

    def _fits(self, row: Row) -> bool:
        param = row[0]
        if len(row) != self.width or param is None or param.dtype not in _DTYPES:
            return False
        body = len(row) - len(self.per_row)
        like_param = all(
            t is None
            or (
                t.is_cpu and t.dtype == param.dtype and t.shape == param.shape and t.is_contiguous()
            )
            for t in row[:body]
        )
        accumulators = all(
            t is not None
            and t.is_cpu
            and t.dtype == torch.float64
            and t.numel() == numel
            and t.is_contiguous()
            for t, numel in zip(row[body:], self.per_row, strict=True)
        )
        return like_param and accumulators

    def run(self, rows: Sequence[Row], scalars: Mapping[str, object]) -> None:
        """Update ``rows``, tensors of one dtype (call :meth:`applies` first)."""
        params = [row[0] for row in rows]
        assert self._functions is not None
        pointers = (ctypes.c_void_p * (len(rows) * self.width))(
            *(None if t is None else t.data_ptr() for row in rows for t in row)
        )
        numels = (ctypes.c_int64 * len(rows))(*(p.numel() for p in params if p is not None))
        values = (ctypes.c_double * len(self.scalars))(
            *(_as_double(scalars[name]) for name in self.scalars)
        )
        function = self._functions[_dtype(params)]
        function(len(rows), numels, pointers, values, torch.get_num_threads())
        # Writes through data pointers are invisible to autograd: bump the version of
        # every tensor but the (read-only) gradient, as an ATen in-place op would, so
        # that a graph which saved a parameter still refuses to backward through it.
        torch.autograd.graph.increment_version(
            [t for row in rows for i, t in enumerate(row) if t is not None and i != 1]
        )

    def _load(self) -> bool:
        if self._functions is not None:
            return True
        with self._lock:
            if self._functions is None and not self._failed:
                try:
                    library = ctypes.CDLL(str(_build(self.source)))
                    functions = {}
                    for dtype, suffix in _DTYPES.items():
                        fn = getattr(library, f"{self.name}_{suffix}")
                        fn.argtypes = _SIGNATURE
                        fn.restype = None
                        functions[dtype] = fn
                    self._functions = functions
                except (OSError, AttributeError, subprocess.SubprocessError) as exc:
                    self._failed = True
                    _warn(self.name, exc)
        return self._functions is not None


_KERNELS: dict[str, NativeKernel] = {}


def native_kernel(
    name: str,
    width: int,
    scalars: Sequence[str],
    source: str | None = None,
    per_row: Sequence[int] = (),
) -> NativeKernel:
    """The process-wide kernel ``name`` of ``csrc/<source>.cpp`` (``source`` defaults
    to ``name``); see :class:`NativeKernel` for the rest. An optimizer's (first) kernel
    is named as in the registry: the bench finds its ``compiled`` rows by it."""
    return _KERNELS.setdefault(name, NativeKernel(name, width, scalars, source, per_row))


def kernel_names() -> list[str]:
    """The native kernels of the optimizer modules imported so far."""
    return sorted(_KERNELS)


def _as_double(value: object) -> float:
    """A coefficient as the C++ reads it: ``None`` is NaN, booleans are 0 or 1."""
    if value is None:
        return float("nan")
    if isinstance(value, bool | int | float):
        return float(value)
    raise TypeError(f"a native kernel takes numbers, booleans and None, not {value!r}")


def _dtype(params: Sequence[Tensor | None]) -> torch.dtype:
    """The one dtype of ``params`` (a bucket's parameters)."""
    dtypes = {p.dtype for p in params if p is not None}
    if len(dtypes) != 1 or len(params) != sum(p is not None for p in params):
        raise ValueError(f"a native kernel runs rows of one dtype with a parameter each: {dtypes}")
    return dtypes.pop()


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise OSError("no C++ compiler found (set CXX)")
    return compiler


@functools.cache
def _version(compiler: str) -> str:
    """What ``compiler --version`` prints (once per process and compiler)."""
    return subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _cpu_features() -> str:
    """What ``-march=native`` depends on: the CPU's flags where Linux lists them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    configured = os.environ.get("OPTSERVE_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optserve" / "kernels"


def _build(name: str) -> Path:
    """The path of ``csrc/<name>.cpp``'s library, compiled if not cached yet."""
    compiler = _compiler()
    digest = hashlib.sha256()
    for part in (_version(compiler), " ".join(_FLAGS), platform.machine(), _cpu_features()):
        digest.update(part.encode())
    for source in sorted(_SOURCES.iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    cache = _cache_dir()
    target = cache / f"{name}-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=cache, prefix=f".{name}-", suffix=".so")
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *_FLAGS, str(_SOURCES / f"{name}.cpp"), "-o", partial],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip()[-500:]}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _warn(name: str, exc: BaseException) -> None:
    text = str(exc).strip()
    summary = text.splitlines()[0] if text else ""
    warnings.warn(
        f"the native CPU kernel {name} is unavailable ({type(exc).__name__}: {summary}); "
        "its optimizer's fused path runs compiled instead",
        RuntimeWarning,
        stacklevel=4,
    )
