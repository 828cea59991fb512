"""Optimizer step time against the memory-traffic floor, for every registry optimizer.

An optimizer step is memory-bound: per element it reads the parameter, the gradient
and each state buffer, and writes the parameter and the state back. Its floor on a
machine is those bytes divided by the memory bandwidth. This script measures, in
one run:

1. the bandwidth, with an in-place triad ``a += s * b`` over buffers far larger than
   the last-level cache. Its access pattern is the optimizer's (every written buffer
   was just read, so no write-allocate traffic); a plain copy is also shown, counted
   as 2 streams, for reference;
2. the step time of each registry optimizer on each path its constructor offers:
   ``reference`` (``foreach=False``), ``foreach`` (``foreach=True``) and ``fused``
   (``fused=True``; on the CPU this runs an optimizer's native kernel where it has
   one, see ``optimizers._native``, and ``compiled`` is then the same path with the
   native kernels off, the code CUDA runs), plus ``torch.optim.AdamW(fused=True)`` /
   ``(foreach=True)`` as anchors, and ``demo_adam``: AdamW's update written as one
   per-tensor function and run eagerly (``reference``) or compiled through
   ``optimizers._fused`` (``fused``), the demonstrator of that module;
3. each floor, from the state the optimizer actually keeps after one step:
   ``(2 x param + grad + 2 x each state buffer) bytes / bandwidth``. Lookahead's
   slow weights are touched once every ``k`` steps and are counted as such.

The table has one row per (optimizer, path): ms/step (median of ``--repeat`` steps
after ``--warmup`` steps; the first step, which compiles a fused path, is timed
separately), floor ms, and the ratio of step time to floor, each step being timed
right after a triad pass so that a machine shared with other work is compared with
the bandwidth it had at that moment: ``ratio`` is the median of those per-step
ratios and ``best`` the least disturbed one. Linux's CPU pressure (PSI) is printed
at the start and the end as a noise indicator. Optimizers whose module does not
import, or that fail on a path, are skipped with a note. Exits 0.

Usage: python bench/optimizer_step.py [--params 10_000_000 --tensors 50 --repeat 20
--only adamw,demo_adam]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizers import _native
from optimizers._build import import_path
from optimizers._fused import apply_fused
from optimizers.registry import WRAPPER_SEPARATOR, get_spec, list_specs

# Wrappers are benchmarked over this base.
_WRAPPED_BASE = "adamw"
# State buffers touched once every ``k`` steps (attribute of the optimizer).
_AMORTISED = {"lookahead_slow": "k"}


# the demonstrator: AdamW as one per-tensor function, fused by optimizers._fused
def adam_coefficients(
    step: int, *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float
) -> dict[str, float]:
    """Every step-dependent scalar of AdamW, computed once per bucket in Python."""
    return {
        "decay": 1.0 - lr * weight_decay,
        "beta1": beta1,
        "one_minus_beta1": 1.0 - beta1,
        "beta2": beta2,
        "one_minus_beta2": 1.0 - beta2,
        "step_size": lr / (1.0 - beta1**step),
        "inv_sqrt_bc2": 1.0 / math.sqrt(1.0 - beta2**step),
        "eps": eps,
    }


def adam_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    decay: Any,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    step_size: Any,
    inv_sqrt_bc2: Any,
    eps: Any,
) -> None:
    """AdamW's element-wise update; scalars are floats (eager) or 0-d tensors (fused).

    Plain multiply-adds rather than ``lerp_``, whose two-branch formula costs extra
    instructions in a kernel that is close to compute-bound on a 2-core CPU.
    """
    exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    denom = exp_avg_sq.sqrt() * inv_sqrt_bc2 + eps
    param.mul_(decay).sub_(exp_avg * step_size / denom)


class DemoAdamW(Optimizer):
    """AdamW through ``adam_kernel``: per tensor eagerly, or fused (compiled)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        fused: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.fused = fused

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lists, steps = self._gather(group)
            beta1, beta2 = group["betas"]
            hp = {"lr": group["lr"], "beta1": beta1, "beta2": beta2, "eps": group["eps"]}
            hp["weight_decay"] = group["weight_decay"]
            if self.fused:
                apply_fused(adam_kernel, lists, steps, lambda s, hp=hp: adam_coefficients(s, **hp))
                continue
            for row, s in zip(zip(*lists, strict=True), steps, strict=True):
                adam_kernel(*row, **adam_coefficients(s, **hp))

    def _gather(self, group: dict[str, Any]) -> tuple[list[list[Tensor]], list[int]]:
        """[params, grads, exp_avgs, exp_avg_sqs] and the advanced step counts."""
        lists: list[list[Tensor]] = [[], [], [], []]
        steps: list[int] = []
        for p in group["params"]:
            state = self.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            row = (p, p.grad, state["exp_avg"], state["exp_avg_sq"])
            for lst, t in zip(lists, row, strict=True):
                lst.append(t)
            steps.append(state["step"])
        return lists, steps


# workload
def make_shapes(total: int, count: int, seed: int = 0) -> list[tuple[int, ...]]:
    """``count`` shapes of a small network (1/3 biases, matrices, 3x3 convs), ~``total``."""
    rng = random.Random(seed)
    n_small = count // 3
    small = [(rng.choice([64, 128, 256, 512, 768, 1024, 2048]),) for _ in range(n_small)]
    budget = max(total - sum(s[0] for s in small), count)
    weights = [rng.uniform(0.2, 1.0) for _ in range(count - n_small)]
    shapes: list[tuple[int, ...]] = []
    for i, w in enumerate(weights):
        n = max(1, round(budget * w / sum(weights)))
        if i % 4 == 3:
            cin = rng.choice([32, 64, 128, 256])
            shapes.append((max(1, n // (cin * 9)), cin, 3, 3))
        else:
            cols = rng.choice([256, 512, 768, 1024])
            shapes.append((max(1, n // cols), cols))
    mixed = small + shapes
    rng.shuffle(mixed)
    return mixed


def make_params(shapes: list[tuple[int, ...]], device: torch.device) -> list[Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=gen).to(device).requires_grad_()
        p.grad = torch.randn(shape, generator=gen).to(device) * 1e-2
        params.append(p)
    return params


# timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class Bandwidth:
    """In-place triad ``a += s * b`` (3 streams) and copy (2 streams) over two buffers.

    The machine may be shared: each optimizer step is timed next to a triad pass, so
    its floor comes from the bandwidth available at that moment.
    """

    def __init__(self, numel: int, device: torch.device) -> None:
        self.device = device
        self.a = torch.randn(numel, device=device)
        self.b = torch.randn(numel, device=device)
        self.nbytes = self.a.element_size() * numel
        self.triad()  # touch every page before timing

    def triad(self) -> float:
        seconds = time_call(lambda: self.a.add_(self.b, alpha=1e-9), self.device, 1)[0]
        return 3 * self.nbytes / seconds

    def copy(self) -> float:
        seconds = time_call(lambda: self.a.copy_(self.b), self.device, 1)[0]
        return 2 * self.nbytes / seconds


# what to run
@dataclass(frozen=True)
class Case:
    name: str
    path: str
    make: Callable[[list[Tensor]], Optimizer]
    native: bool = True  # False: the native CPU kernels off (the "compiled" path)


def _registry_factory(name: str) -> tuple[Callable[..., Optimizer], set[str]]:
    """A constructor ``(params, **impl_kwargs)`` for a registry name, and its impl kwargs."""
    spec = get_spec(name)
    kwargs = spec.resolve({})
    if WRAPPER_SEPARATOR not in name:
        cls = import_path(spec.cls_path)
        return (lambda params, **impl: cls(params, **kwargs, **impl)), _impl_kwargs(cls)
    wrapper_cls = import_path(spec.cls_path)
    base_name = name.partition(WRAPPER_SEPARATOR)[2]
    base_cls = import_path(get_spec(base_name).cls_path)
    prefix = f"{name.partition(WRAPPER_SEPARATOR)[0]}_"
    outer = {k[len(prefix) :]: v for k, v in kwargs.items() if k.startswith(prefix)}
    inner = {k: v for k, v in kwargs.items() if not k.startswith(prefix)}

    def make(params: list[Tensor], **impl: Any) -> Optimizer:
        return wrapper_cls(base_cls(params, **inner, **impl), **outer)  # type: ignore[no-any-return]

    return make, _impl_kwargs(base_cls)


def _impl_kwargs(cls: type) -> set[str]:
    return {"foreach", "fused"} & set(inspect.signature(cls).parameters)


_PATHS = {"reference": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def _paths(supported: set[str]) -> Iterator[tuple[str, dict[str, bool]]]:
    if "foreach" in supported:
        yield "reference", _PATHS["reference"]
        yield "foreach", _PATHS["foreach"]
    else:
        yield "reference", {}
    if "fused" in supported:
        yield "fused", _PATHS["fused"]


def cases(only: set[str] | None) -> Iterator[Case]:
    """Anchors, the demonstrator, then every registry entry (wrappers over adamw)."""
    adamw = torch.optim.AdamW
    anchors = [
        Case("torch.adamw", "fused", lambda ps: adamw(ps, fused=True)),
        Case("torch.adamw", "foreach", lambda ps: adamw(ps, foreach=True)),
        Case("demo_adam", "reference", lambda ps: DemoAdamW(ps)),
        Case("demo_adam", "fused", lambda ps: DemoAdamW(ps, fused=True)),
    ]
    yield from (c for c in anchors if only is None or c.name in only)
    for spec in list_specs():
        name = spec.name if spec.kind == "base" else f"{spec.name}+{_WRAPPED_BASE}"
        if only is not None and name not in only:
            continue
        try:
            make, supported = _registry_factory(name)
        except Exception as exc:  # a colleague's module may not import yet
            print(f"note: skipping {name}: {type(exc).__name__}: {exc}")
            continue
        for path, impl in _paths(supported):
            yield Case(name, path, lambda ps, make=make, impl=impl: make(ps, **impl))
        if name in _native.kernel_names():
            yield Case(name, "compiled", lambda ps, make=make: make(ps, fused=True), native=False)


# floor
def traffic_bytes(optimizer: Optimizer, params: list[Tensor]) -> float:
    """Bytes one step must move: params (r+w), grads (r), state buffers (r+w)."""
    state = optimizer.state_dict()["state"]
    total = 0.0
    for index, p in enumerate(params):
        total += 3 * p.numel() * p.element_size()
        for key, value in state.get(index, {}).items():
            if isinstance(value, Tensor) and value.numel() == p.numel():
                every = getattr(optimizer, _AMORTISED[key]) if key in _AMORTISED else 1
                total += 2 * value.numel() * value.element_size() / every
    return total


# main
@dataclass
class Row:
    name: str
    path: str
    ms: float
    floor_ms: float
    ratio: float
    best_ratio: float
    first_s: float

    def line(self) -> str:
        return (
            f"{self.name:<22} {self.path:<10} {self.ms:>9.2f} {self.floor_ms:>9.2f}"
            f" {self.ratio:>7.2f}x {self.best_ratio:>7.2f}x {self.first_s:>8.2f}"
        )


HEADER = (
    f"{'optimizer':<22} {'path':<10} {'ms/step':>9} {'floor ms':>9} {'ratio':>8} {'best':>8}"
    f" {'first s':>8}"
)


def run_case(case: Case, params: list[Tensor], args: argparse.Namespace, bw: Bandwidth) -> Row:
    """Median step time and floor, median and best of the per-repeat ratios.

    On a shared machine the best ratio is the least disturbed repeat's.
    """
    with contextlib.nullcontext() if case.native else _native.disabled():
        return _run_case(case, params, args, bw)


def _run_case(case: Case, params: list[Tensor], args: argparse.Namespace, bw: Bandwidth) -> Row:
    optimizer = case.make(params)
    first = time_call(optimizer.step, bw.device, 1)[0]
    time_call(optimizer.step, bw.device, args.warmup)
    traffic = traffic_bytes(optimizer, params)
    times, floors = [], []
    for _ in range(args.repeat):
        floors.append(traffic / bw.triad())
        times.append(time_call(optimizer.step, bw.device, 1)[0])
    ratios = [t / f for t, f in zip(times, floors, strict=True)]
    ms, floor_ms = statistics.median(times) * 1e3, statistics.median(floors) * 1e3
    return Row(case.name, case.path, ms, floor_ms, statistics.median(ratios), min(ratios), first)


def check_demo(device: torch.device) -> float:
    """Largest relative difference between demo_adam (fused) and torch AdamW: a sanity check.

    On CPU the three small tensors take the fused path's eager branch, (130, 130) the
    compiled kernel.
    """
    a = make_params([(37, 5), (129,), (3, 4, 3, 3), (130, 130)], device)
    b = [p.detach().clone().requires_grad_() for p in a]
    for p, q in zip(a, b, strict=True):
        q.grad = p.grad.clone()
    demo, ref = DemoAdamW(a, lr=1e-2, fused=True), torch.optim.AdamW(b, lr=1e-2, foreach=False)
    for _ in range(5):
        demo.step()
        ref.step()
    return max(((p - q).abs().max() / q.abs().max()).item() for p, q in zip(a, b, strict=True))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--tensors", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    params = make_params(make_shapes(args.params, args.tensors), device)
    numel = sum(p.numel() for p in params)
    bw = Bandwidth(max(2 * numel, 16 * 2**20), device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"{numel:,} parameters in {len(params)} tensors")
    _print_bandwidth(bw, "start")
    print(HEADER)
    for case in cases(args.only):
        try:
            print(run_case(case, params, args, bw).line(), flush=True)
        except Exception as exc:
            print(f"note: {case.name} [{case.path}] failed: {type(exc).__name__}: {exc}")
        gc.collect()
    _print_bandwidth(bw, "end")
    print(f"demo_adam (fused) vs torch AdamW, 5 steps: max rel diff {check_demo(device):.1e}")
    return 0


def _print_bandwidth(bw: Bandwidth, when: str) -> None:
    triad = statistics.median(bw.triad() for _ in range(5)) / 1e9
    copy = statistics.median(bw.copy() for _ in range(5)) / 1e9
    print(
        f"bandwidth at the {when}: in-place triad {triad:.1f} GB/s, copy {copy:.1f} GB/s;"
        f" {_cpu_pressure()}"
    )


def _cpu_pressure() -> str:
    """Linux PSI: the share of time runnable tasks waited for a CPU (other load)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "cpu pressure unknown"
    fields = dict(item.split("=") for item in line.split()[1:])
    return f"cpu pressure avg10 {fields.get('avg10', '?')}%"


if __name__ == "__main__":
    raise SystemExit(main())
