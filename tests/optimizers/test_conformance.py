"""The optimizer contract (RELIABILITY.md O1-O8), checked for every registry entry.

Parametrised over ``list_specs()`` (the base optimizers) plus Lookahead composed over
a few of them, in the manner of torch's ``OptimizerInfo`` database: adding an
optimizer to the registry enrols it in every check below. The toy problems are
small and seeded, so the whole file runs in well under a minute apart from the
``slow`` fused-parity tests, which compile.

Learning rates are each spec's default, times one factor per *problem* that is the
same for every optimizer (Rosenbrock is stiff near its valley), never tuned per
optimizer.
"""

from __future__ import annotations

import copy
import inspect
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.optim import Optimizer

from optimizers import build, get_spec, list_specs
from optimizers._build import import_path
from optimizers._spec import CategoricalSpace, FloatSpace, IntSpace, OptimizerSpec, Space
from optimizers.registry import WRAPPER_SEPARATOR, split_wrapper_kwargs

WRAPPED_BASES = ("adamw", "sgd", "radam")
BASE_NAMES = [s.name for s in list_specs() if s.kind == "base"]
NAMES = BASE_NAMES + [f"lookahead{WRAPPER_SEPARATOR}{b}" for b in WRAPPED_BASES]
LAYOUTS = ("single", "two_lr", "no_decay_bias")
N_SEARCH_POINTS = 20
PARITY_STEPS = 200
# "The loss decreases" means by at least 1%: an optimizer that barely moves fails.
MIN_DECREASE = 0.99
CPU = torch.device("cpu")


# construction
def _classes(name: str) -> tuple[type[Optimizer] | None, type[Optimizer]]:
    """(wrapper class or None, base class) of a registry name."""
    spec = get_spec(name)
    if WRAPPER_SEPARATOR not in name:
        return None, import_path(spec.cls_path)
    base = get_spec(name.partition(WRAPPER_SEPARATOR)[2])
    return import_path(spec.cls_path), import_path(base.cls_path)


def _impl_kwargs(name: str) -> set[str]:
    """Which of ``foreach`` / ``fused`` the (base) class's constructor accepts."""
    return {"foreach", "fused"} & set(inspect.signature(_classes(name)[1]).parameters)


def _construct(name: str, params: Any, impl: Mapping[str, bool], **kwargs: Any) -> Optimizer:
    """Call the classes directly with constructor kwargs (no spec check) plus ``impl``."""
    wrapper_cls, base_cls = _classes(name)
    if wrapper_cls is None:
        return base_cls(params, **kwargs, **impl)
    outer, inner = split_wrapper_kwargs(get_spec(name), kwargs)
    return wrapper_cls(base_cls(params, **inner, **impl), **outer)


def _make(
    name: str,
    params: Any,
    impl: Mapping[str, bool],
    *,
    total_steps: int | None = None,
    **hp: Any,
) -> Optimizer:
    """``build`` with an implementation choice: the spec's defaults and checks, then ``impl``."""
    kwargs = get_spec(name).resolve(hp, total_steps=total_steps)
    return _construct(name, params, impl, **kwargs)


def _default_lr(spec: OptimizerSpec) -> float:
    default = spec.hparams["lr"].default
    assert isinstance(default, float)
    return default


# sampling the default search space
def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _sample(space: Space, rng: random.Random) -> object:
    """One point of ``space``, drawn as the tuner would (see ``FloatSpace.one_minus``)."""
    if isinstance(space, CategoricalSpace):
        return rng.choice(space.choices)
    if isinstance(space, IntSpace):
        if space.log:
            return min(space.high, max(space.low, round(_log_uniform(rng, space.low, space.high))))
        return rng.randrange(space.low, space.high + 1, space.step)
    assert isinstance(space, FloatSpace)
    if space.one_minus:
        return 1.0 - _log_uniform(rng, 1.0 - space.high, 1.0 - space.low)
    if space.log:
        return _log_uniform(rng, space.low, space.high)
    if space.step is not None:
        return space.low + space.step * rng.randrange(
            int((space.high - space.low) / space.step) + 1
        )
    return rng.uniform(space.low, space.high)


def _search_points(spec: OptimizerSpec, seed: int) -> Iterator[dict[str, object]]:
    space = spec.search_space()
    rng = random.Random(seed)
    for _ in range(N_SEARCH_POINTS):
        yield {name: _sample(s, rng) for name, s in space.items()}


# problems
@dataclass
class Problem:
    """Parameters split into weights and biases (for the group layouts) and a loss."""

    weights: list[Tensor]
    biases: list[Tensor]
    loss: Callable[[], Tensor]
    steps: int
    lr_scale: float = 1.0

    @property
    def params(self) -> list[Tensor]:
        return self.weights + self.biases


def _leaf(t: Tensor) -> Tensor:
    return t.detach().clone().requires_grad_()


def quadratic(dtype: torch.dtype = torch.float32, init_scale: float = 1.0) -> Problem:
    """Least squares ``mean((X W + b - Y)^2)``: a convex quadratic in (W, b)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=gen)
    y = x @ torch.randn(4, 3, generator=gen) + torch.randn(3, generator=gen)
    w = _leaf((init_scale * torch.randn(4, 3, generator=gen)).to(dtype))
    b = _leaf(torch.zeros(3, dtype=dtype))
    return Problem([w], [b], lambda: ((x @ w.float() + b.float() - y) ** 2).mean(), steps=200)


def rosenbrock(dtype: torch.dtype = torch.float32) -> Problem:
    """2-D Rosenbrock from the classic start (-1.2, 1); ``y`` plays the bias."""
    x = _leaf(torch.tensor([-1.2], dtype=dtype))
    y = _leaf(torch.tensor([1.0], dtype=dtype))
    loss = lambda: ((1 - x) ** 2 + 100 * (y - x**2) ** 2).sum()  # noqa: E731
    return Problem([x], [y], loss, steps=200, lr_scale=0.5)


def mlp(dtype: torch.dtype = torch.float32) -> Problem:
    """A 4-16-1 tanh network regressing a smooth target on 64 fixed points."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(64, 4, generator=gen)
    y = torch.sin(x @ torch.randn(4, 1, generator=gen))
    w1 = _leaf((torch.randn(16, 4, generator=gen) * 0.5).to(dtype))
    w2 = _leaf((torch.randn(1, 16, generator=gen) * 0.25).to(dtype))
    b1, b2 = _leaf(torch.zeros(16, dtype=dtype)), _leaf(torch.zeros(1, dtype=dtype))

    def loss() -> Tensor:
        hidden = torch.tanh(x @ w1.float().T + b1.float())
        return ((hidden @ w2.float().T + b2.float() - y) ** 2).mean()

    return Problem([w1, w2], [b1, b2], loss, steps=100)


PROBLEMS = {"quadratic": quadratic, "rosenbrock": rosenbrock, "mlp": mlp}


def _layout(
    layout: str, problem: Problem, lr: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Param groups for a layout, and the hyperparameters to build with."""
    if layout == "single":
        return [{"params": problem.params}], {"lr": lr}
    if layout == "two_lr":
        return [{"params": problem.weights}, {"params": problem.biases, "lr": lr / 2}], {"lr": lr}
    groups = [{"params": problem.weights}, {"params": problem.biases, "weight_decay": 0.0}]
    return groups, {"lr": lr, "weight_decay": 1e-3}


def _train(opt: Optimizer, problem: Problem, steps: int) -> float:
    for _ in range(steps):
        opt.zero_grad()
        problem.loss().backward()
        opt.step()
    with torch.no_grad():
        return float(problem.loss())


def _floating_state(opt: Optimizer) -> Iterator[Tensor]:
    for p_state in opt.state_dict()["state"].values():
        for value in p_state.values():
            if isinstance(value, Tensor) and value.is_floating_point():
                yield value


def _assert_same(a: object, b: object, where: str = "state_dict") -> None:
    """Recursive bitwise equality of two state dicts."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: keys differ"
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# O1: class and construction
@pytest.mark.parametrize("name", NAMES)
def test_is_optimizer_with_repr_and_builds_with_defaults(name: str) -> None:
    opt = build(name, [torch.zeros(3, requires_grad=True)])
    assert isinstance(opt, Optimizer)
    assert type(opt).__name__ in repr(opt)


@pytest.mark.parametrize("name", BASE_NAMES)
def test_spec_flags_match_the_class(name: str) -> None:
    """``fast_path`` is true exactly when the constructor offers foreach or fused."""
    spec = get_spec(name)
    assert issubclass(_classes(name)[1], Optimizer)
    assert spec.fast_path == bool(_impl_kwargs(name)), _impl_kwargs(name)


@pytest.mark.parametrize("base", BASE_NAMES)
def test_lookahead_wraps_every_base(base: str) -> None:
    """O7: Lookahead over any base shares its param_groups and round-trips its state."""
    params = [torch.ones(3, requires_grad=True)]
    opt = build(f"lookahead{WRAPPER_SEPARATOR}{base}", params)
    assert opt.param_groups is opt.optimizer.param_groups  # type: ignore[attr-defined]
    params[0].grad = torch.full((3,), 0.5)
    opt.step()
    twin = build(f"lookahead{WRAPPER_SEPARATOR}{base}", [_leaf(params[0])])
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    _assert_same(twin.state_dict()["state"], opt.state_dict()["state"])


# O3: the default search space lies inside the domain
@pytest.mark.parametrize("name", NAMES)
def test_search_space_points_build_and_step(name: str) -> None:
    spec = get_spec(name)
    for point in _search_points(spec, seed=NAMES.index(name)):
        for hp, value in point.items():
            assert spec.hparams[hp].domain.contains(value), f"{hp}={value!r} outside its domain"
        param = torch.ones(4, requires_grad=True)
        opt = build(name, [param], total_steps=10, **point)
        param.grad = torch.linspace(-1.0, 1.0, 4)
        opt.step()
        assert torch.isfinite(param).all(), point


# O4: values outside the domain are refused, naming the hyperparameter
def _invalid_cases() -> Iterator[tuple[str, str, object]]:
    for name in NAMES:
        for hp, spec_hp in get_spec(name).hparams.items():
            for value in spec_hp.domain.invalid_examples():
                yield name, hp, value


@pytest.mark.parametrize("name", NAMES)
def test_build_fused_asks_for_the_fused_path_where_there_is_one(name: str) -> None:
    """``fused=True`` picks the path, never an error: classes without one ignore it."""
    p = _leaf(torch.zeros(4, 3))
    opt = build(name, [p], total_steps=10, fused=True)
    groups = getattr(opt, "optimizer", opt).param_groups
    assert groups[0].get("fused") is ("fused" in _impl_kwargs(name) or None)
    p.grad = torch.ones(4, 3)
    opt.step()
    assert torch.isfinite(p).all()


@pytest.mark.parametrize(("name", "hp", "value"), list(_invalid_cases()))
def test_build_rejects_invalid_value_naming_it(name: str, hp: str, value: object) -> None:
    with pytest.raises(ValueError, match=hp):
        build(name, [torch.zeros(2, requires_grad=True)], **{hp: value})


@pytest.mark.parametrize("name", NAMES)
def test_class_rejects_negative_lr(name: str) -> None:
    with pytest.raises(ValueError):
        _construct(name, [torch.zeros(2, requires_grad=True)], {}, **_resolved(name, lr=-1e-3))


def _resolved(name: str, **overrides: Any) -> dict[str, Any]:
    """Constructor kwargs at the defaults, with ``overrides`` placed unchecked."""
    spec = get_spec(name)
    kwargs = spec.resolve({})
    for hp, value in overrides.items():
        pack = next((k for k, names in spec.packs.items() if hp in names), None)
        if pack is None:
            kwargs[hp] = value
        else:
            packed = list(kwargs[pack])
            packed[spec.packs[pack].index(hp)] = value
            kwargs[pack] = tuple(packed)
    return kwargs


def _enforced_by_class(name: str, hp: str) -> bool:
    """Our classes promise the spec's domains; torch's built-ins check less."""
    if WRAPPER_SEPARATOR in name:
        return hp.startswith("lookahead_")  # the base's checks are covered under its name
    return get_spec(name).cls_path.startswith("optimizers.")


OUR_NAMES = [n for n in BASE_NAMES if get_spec(n).cls_path.startswith("optimizers.")]


@pytest.mark.parametrize("name", OUR_NAMES)
def test_spec_defaults_are_the_constructor_defaults(name: str) -> None:
    """A class used directly (``AdEMAMix(params)``) behaves as ``build(name, params)``."""
    signature = inspect.signature(_classes(name)[1])
    for key, value in get_spec(name).resolve({}).items():
        assert signature.parameters[key].default == value, key


@pytest.mark.parametrize("name", OUR_NAMES)
def test_sparse_gradient_is_refused(name: str) -> None:
    """Our update rules are dense; a sparse gradient is an error, not a silent misstep."""
    p = torch.zeros(4, requires_grad=True)
    opt = build(name, [p])
    p.grad = torch.sparse_coo_tensor([[1]], [1.0], (4,), check_invariants=True)
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize(
    ("name", "hp", "value"), [c for c in _invalid_cases() if _enforced_by_class(c[0], c[1])]
)
def test_class_enforces_the_domain(name: str, hp: str, value: object) -> None:
    """The registry says our classes enforce the same domains: they must not disagree."""
    with pytest.raises(ValueError):
        _construct(name, [torch.zeros(2, requires_grad=True)], {}, **_resolved(name, **{hp: value}))


# O2: loss decreases on toy problems under three group layouts
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("problem_name", list(PROBLEMS))
@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases(name: str, problem_name: str, layout: str) -> None:
    problem = PROBLEMS[problem_name]()
    spec = get_spec(name)
    groups, hp = _layout(layout, problem, _default_lr(spec) * problem.lr_scale)
    if "weight_decay" not in spec.hparams:
        hp.pop("weight_decay", None)
    opt = build(name, groups, total_steps=problem.steps, **hp)
    with torch.no_grad():
        initial = float(problem.loss())
    final = _train(opt, problem, problem.steps)
    assert math.isfinite(final)
    assert final < MIN_DECREASE * initial, f"{initial=} {final=}"


# O5: state_dict round trip mid-run
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_bit_identically(name: str) -> None:
    problem = mlp()
    opt = build(name, problem.params, total_steps=20)
    _train(opt, problem, 7)
    saved = copy.deepcopy(opt.state_dict())
    snapshot = [p.detach().clone() for p in problem.params]
    _train(opt, problem, 6)

    twin = mlp()
    with torch.no_grad():
        for p, s in zip(twin.params, snapshot, strict=True):
            p.copy_(s)
    twin_opt = build(name, twin.params, total_steps=20)
    twin_opt.load_state_dict(copy.deepcopy(saved))
    _assert_same(twin_opt.state_dict(), saved, "state_dict after load")
    _train(twin_opt, twin, 6)
    for p, q in zip(problem.params, twin.params, strict=True):
        assert torch.equal(p, q)
    _assert_same(twin_opt.state_dict(), opt.state_dict(), "state_dict after continuing")


# O6: the fast paths compute the reference's numbers
PARITY_SHAPES = [(5, 3), (3,), (2, 3, 2), (1,)]
# Above optimizers._fused's CPU eager threshold, so that the compiled kernel runs.
FUSED_PARITY_SHAPES = [*PARITY_SHAPES, (130, 130)]


def _run_synthetic(
    name: str,
    impl: Mapping[str, bool],
    shapes: list[tuple[int, ...]],
    device: torch.device = CPU,
) -> tuple[Optimizer, list[Tensor]]:
    """Float64 steps on seeded gradients (noise plus a pull to zero), in 2 groups.

    The numbers are drawn on the CPU and moved to ``device``, so every device gets
    the same problem.
    """
    steps = PARITY_STEPS
    gen = torch.Generator().manual_seed(3)
    params = [_leaf(torch.randn(s, generator=gen, dtype=torch.float64).to(device)) for s in shapes]
    lr = _default_lr(get_spec(name)) * 10
    groups = [{"params": params[:3]}, {"params": params[3:], "lr": lr / 3}]
    opt = _make(name, groups, impl, lr=lr, total_steps=steps // 2)
    for _ in range(steps):
        for p in params:
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device)
            p.grad = noise + 0.1 * p.detach()
        opt.step()
    return opt, params


def _assert_parity(
    name: str, impl: Mapping[str, bool], shapes: list[tuple[int, ...]], device: torch.device
) -> None:
    """``impl`` on ``device`` against the reference loop on the CPU: parameters and
    every state buffer. A fused kernel that fails to compile warns and runs eagerly
    (same numbers), and so does a native kernel that fails to build: those warnings
    fail the test, so parity means the compiled (or native) code."""
    reference = {"foreach": False} if "foreach" in _impl_kwargs(name) else {}
    ref_opt, ref_params = _run_synthetic(name, reference, shapes)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "torch.compile of", RuntimeWarning)
        warnings.filterwarnings("error", "the native CPU kernel", RuntimeWarning)
        opt, params = _run_synthetic(name, impl, shapes, device)
    assert all(p.device.type == device.type for p in params)
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p.cpu(), q, rtol=1e-10, atol=1e-12)
    for s, t in zip(_floating_state(opt), _floating_state(ref_opt), strict=True):
        assert s.device.type == device.type or s.dim() == 0, "state left on another device"
        torch.testing.assert_close(s.cpu(), t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if "foreach" in _impl_kwargs(n)])
def test_foreach_matches_reference(name: str, device: torch.device) -> None:
    _assert_parity(name, {"foreach": True}, PARITY_SHAPES, device)


def _fused_params() -> Iterator[Any]:
    for name in NAMES:
        if "fused" not in _impl_kwargs(name):
            continue
        # Ours compile through optimizers._fused (seconds per kernel); torch's do not.
        compiles = _classes(name)[1].__module__.startswith("optimizers.")
        yield pytest.param(name, marks=[pytest.mark.slow] if compiles else [])


@pytest.mark.parametrize("name", list(_fused_params()))
def test_fused_matches_reference(name: str, fused_device: torch.device) -> None:
    _assert_parity(name, {"fused": True}, FUSED_PARITY_SHAPES, fused_device)


# O8: dtypes and numerical robustness
@pytest.mark.parametrize("name", [n for n in NAMES if get_spec(n).bf16])
def test_bf16_params_stay_bf16_with_finite_state(name: str) -> None:
    problem = quadratic(torch.bfloat16, init_scale=0.1)
    opt = build(name, problem.params, total_steps=problem.steps)
    with torch.no_grad():
        initial = float(problem.loss())
    final = _train(opt, problem, problem.steps)
    assert all(p.dtype == torch.bfloat16 for p in problem.params)
    assert all(torch.isfinite(s).all() for s in _floating_state(opt))
    assert final < MIN_DECREASE * initial, f"{initial=} {final=}"


def _hard_gradient(step: int, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Finite but awkward: zeros, tiny, huge and mixed-scale gradients in turn."""
    kind = step % 5
    if kind == 0:
        return torch.zeros(shape)
    scale = (1e-30, 1e-3, 1.0, 1e3)[kind - 1]
    return torch.randn(shape, generator=gen) * scale


@pytest.mark.parametrize("name", NAMES)
def test_no_nan_from_finite_gradients_over_1000_steps(name: str) -> None:
    gen = torch.Generator().manual_seed(4)
    params = [_leaf(torch.randn(s, generator=gen)) for s in [(4, 3), (3,), (1,)]]
    opt = build(name, params, total_steps=1000)
    for step in range(1000):
        for p in params:
            p.grad = _hard_gradient(step, tuple(p.shape), gen)
        opt.step()
    assert all(torch.isfinite(p).all() for p in params)
    assert all(torch.isfinite(s).all() for s in _floating_state(opt))
