"""The registry of optimizer and schedule specs: one literal entry per optimizer.

Torch-free on purpose: ``api_schemas`` and ``GET /v1/optimizers`` are generated from
these entries, and the API process must stay light. ``build()`` enforces every domain;
our own classes enforce the same domains in their ``__init__`` (the conformance suite
checks it), while torch's built-ins accept a few values the spec refuses (SGD with
momentum 1.0, RMSprop with alpha 1.0), so build them through ``build()``. Cross-field
rules that a scalar domain cannot say (SGD's ``nesterov`` needs momentum > 0 and no
dampening) are left to the class, whose error then names the rule.

Adding an optimizer is one new module with the class and one entry in ``_OPTIMIZERS``.
Wrappers compose by name: ``"lookahead+radam"`` is Lookahead over RAdam, with the
wrapper's hyperparameters prefixed ``lookahead_``.
"""

from __future__ import annotations

from types import MappingProxyType

from optimizers._spec import (
    CategoricalSpace,
    Domain,
    FloatSpace,
    HParam,
    IntSpace,
    OptimizerSpec,
    ScheduleSpec,
)

WRAPPER_SEPARATOR = "+"


# -- shared hyperparameter shapes -----------------------------------------------------
def _lr(default: float, low: float = 1e-5, high: float = 1e-1) -> HParam:
    return HParam(default, Domain.nonnegative(), FloatSpace(low, high, log=True), "learning rate")


def _beta(default: float, low: float | None = None, high: float | None = None) -> HParam:
    """An EMA coefficient in [0, 1); its prior, when given, is log-uniform on 1 - beta."""
    search = (
        None if low is None or high is None else FloatSpace(low, high, log=True, one_minus=True)
    )
    return HParam(default, Domain.unit(), search, "EMA coefficient")


def _eps(default: float) -> HParam:
    # >= 0 as in torch; eps = 0 with a zero gradient gives 0/0, a diverged (pruned) trial
    return HParam(default, Domain.nonnegative(), None, "term added for numerical stability")


def _wd(default: float, search: bool = False) -> HParam:
    space = FloatSpace(1e-6, 1e-1, log=True) if search else None
    return HParam(default, Domain.nonnegative(), space, "weight decay coefficient")


def _flag(default: bool, doc: str) -> HParam:
    return HParam(default, Domain.boolean(), None, doc)


_BETAS2 = MappingProxyType({"betas": ("beta1", "beta2")})
_BETAS3 = MappingProxyType({"betas": ("beta1", "beta2", "beta3")})


# -- torch built-ins ------------------------------------------------------------------
_SGD = OptimizerSpec(
    name="sgd",
    cls_path="torch.optim:SGD",
    hparams={
        "lr": _lr(1e-3, 1e-4, 1.0),
        "momentum": HParam(0.0, Domain.unit(), FloatSpace(0.0, 0.99), "heavy-ball momentum"),
        "dampening": HParam(0.0, Domain.unit(high_open=False), None, "momentum dampening"),
        "weight_decay": _wd(0.0),
        "nesterov": _flag(False, "Nesterov momentum (needs momentum > 0, dampening = 0)"),
    },
    fast_path=True,
    description="Stochastic gradient descent with momentum (torch.optim.SGD).",
    reference="https://www.cs.toronto.edu/~hinton/absps/momentum.pdf",
)

_ADAM_HPARAMS = {
    "lr": _lr(1e-3),
    "beta1": _beta(0.9),
    "beta2": _beta(0.999),
    "eps": _eps(1e-8),
    "weight_decay": _wd(0.0),
    "amsgrad": _flag(False, "use the maximum of past second moments"),
}

_ADAM = OptimizerSpec(
    name="adam",
    cls_path="torch.optim:Adam",
    hparams=_ADAM_HPARAMS,
    packs=_BETAS2,
    fast_path=True,
    description="Adam with L2 weight decay (torch.optim.Adam).",
    reference="https://arxiv.org/abs/1412.6980",
)

_ADAMW = OptimizerSpec(
    name="adamw",
    cls_path="torch.optim:AdamW",
    hparams={**_ADAM_HPARAMS, "weight_decay": _wd(1e-2, search=True)},
    packs=_BETAS2,
    fast_path=True,
    description="Adam with decoupled weight decay (torch.optim.AdamW).",
    reference="https://arxiv.org/abs/1711.05101",
)

_NADAM = OptimizerSpec(
    name="nadam",
    cls_path="torch.optim:NAdam",
    hparams={
        "lr": _lr(2e-3),
        "beta1": _beta(0.9),
        "beta2": _beta(0.999),
        "eps": _eps(1e-8),
        "weight_decay": _wd(0.0),
        "momentum_decay": HParam(4e-3, Domain.nonnegative(), None, "momentum schedule decay"),
        "decoupled_weight_decay": _flag(False, "AdamW-style decay"),
    },
    packs=_BETAS2,
    fast_path=True,
    description="Adam with Nesterov momentum (torch.optim.NAdam).",
    reference="https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ",
)

_RMSPROP = OptimizerSpec(
    name="rmsprop",
    cls_path="torch.optim:RMSprop",
    hparams={
        "lr": _lr(1e-2, 1e-5, 1e-1),
        "alpha": HParam(0.99, Domain.unit(), None, "smoothing constant"),
        "eps": _eps(1e-8),
        "weight_decay": _wd(0.0),
        "momentum": HParam(0.0, Domain.unit(), None, "momentum factor"),
        "centered": _flag(False, "normalise by the estimated variance"),
    },
    fast_path=True,
    description="RMSprop (torch.optim.RMSprop).",
    reference="https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf",
)

_ADAGRAD = OptimizerSpec(
    name="adagrad",
    cls_path="torch.optim:Adagrad",
    hparams={
        "lr": _lr(1e-2, 1e-4, 1.0),
        "lr_decay": HParam(0.0, Domain.nonnegative(), None, "learning-rate decay"),
        "weight_decay": _wd(0.0),
        "initial_accumulator_value": HParam(0.0, Domain.nonnegative(), None, "start of G"),
        "eps": _eps(1e-10),
    },
    fast_path=True,
    description="Adagrad (torch.optim.Adagrad).",
    reference="https://jmlr.org/papers/v12/duchi11a.html",
)

# -- ours -----------------------------------------------------------------------------
_RADAM = OptimizerSpec(
    name="radam",
    cls_path="optimizers.radam:RAdam",
    hparams={
        "lr": _lr(1e-3),
        "beta1": _beta(0.9),
        # below 2/3, rho_inf < 5 and the rectification never switches on
        "beta2": HParam(0.999, Domain.unit(), FloatSpace(0.9, 0.9999, log=True, one_minus=True)),
        "eps": _eps(1e-8),
        "weight_decay": _wd(0.0),
        "decoupled_weight_decay": _flag(False, "AdamW-style decay"),
    },
    packs=_BETAS2,
    fast_path=True,
    description="Rectified Adam: variance rectification of the adaptive LR.",
    reference="https://arxiv.org/abs/1908.03265",
)

_ADEMAMIX = OptimizerSpec(
    name="ademamix",
    cls_path="optimizers.ademamix:AdEMAMix",
    hparams={
        "lr": _lr(1e-3),
        "beta1": _beta(0.9),
        "beta2": _beta(0.999),
        "beta3": _beta(0.9999, 0.999, 0.99999),
        "alpha": HParam(5.0, Domain.nonnegative(), FloatSpace(1.0, 10.0), "slow-EMA weight"),
        "alpha_warmup": HParam(
            None, Domain.integer(1, nullable=True), None, "steps of alpha warm-up"
        ),
        "beta3_warmup": HParam(
            None, Domain.integer(1, nullable=True), None, "steps of beta3 warm-up"
        ),
        "eps": _eps(1e-8),
        "weight_decay": _wd(0.0),
    },
    packs=_BETAS3,
    total_steps_hparams=("alpha_warmup", "beta3_warmup"),
    fast_path=True,
    description="Adam with a mixture of a fast and a slow gradient EMA.",
    reference="https://arxiv.org/abs/2409.03137",
)

_SET_ADAM = OptimizerSpec(
    name="set_adam",
    cls_path="optimizers.set_adam:SETAdam",
    hparams={
        "lr": _lr(1e-3),
        "beta1": _beta(0.9),
        "beta2": _beta(0.999),
        # inside the square root: sqrt(1e-16) = 1e-8, Adam's usual eps outside it
        "eps": _eps(1e-16),
        "tau": HParam(0.5, Domain.unit(high_open=False), None, "down-translation factor"),
        "weight_decay": _wd(0.0),
        "eps_mode": HParam("root", Domain.one_of("root", "accumulate"), None, "where eps enters"),
        "decoupled_weight_decay": _flag(True, "AdamW-style decay (False: L2)"),
    },
    packs=_BETAS2,
    fast_path=True,
    description="Adam with scaling, embedding and translation of the second moment.",
    reference="https://arxiv.org/abs/2302.01029",
)

_EVE = OptimizerSpec(
    name="eve",
    cls_path="optimizers.eve:EVE",
    hparams={
        "lr": _lr(1e-3),
        "lr2": HParam(4e-4, Domain.nonnegative(), None, "second learning rate (scales with lr)"),
        "beta1": _beta(0.9),
        "beta2": _beta(0.99),
        "beta3": HParam(0.5, Domain.unit(high_open=False), None, "mixing of short and long m"),
        "alpha": _beta(0.999),
        "eps": _eps(1e-7),
        "weight_decay": _wd(0.0),
        "amsgrad": _flag(False, "AMSGrad on the short second moment"),
    },
    packs=_BETAS3,
    fast_path=True,
    description="EVE: short- and long-term moments with two learning rates.",
    reference="https://arxiv.org/abs/2308.10740",
)

_LAMB = OptimizerSpec(
    name="lamb",
    cls_path="optimizers.lamb:LAMB",
    hparams={
        "lr": _lr(1e-3, 1e-4, 1e-1),
        "beta1": _beta(0.9),
        "beta2": _beta(0.999),
        "eps": _eps(1e-6),
        "weight_decay": _wd(1e-2, search=True),
        "max_weight_norm": HParam(
            None, Domain.positive().or_none(), None, "clamp of the weight norm"
        ),
        "exclude_1d": _flag(False, "no decay nor trust ratio on 1-D tensors (biases, norms)"),
    },
    packs=_BETAS2,
    fast_path=True,
    description="Layer-wise adaptive moments with a trust ratio.",
    reference="https://arxiv.org/abs/1904.00962",
)

_SWATS = OptimizerSpec(
    name="swats",
    cls_path="optimizers.swats:SWATS",
    hparams={
        "lr": _lr(1e-3),
        "beta1": _beta(0.9),
        "beta2": _beta(0.999),
        "eps": _eps(1e-8),
        "weight_decay": _wd(0.0),
        "switch_eps": HParam(1e-9, Domain.positive(), None, "tolerance of the switch test"),
        "switch_test": HParam(
            "absolute", Domain.one_of("absolute", "relative"), None, "|L - g| < eps, or relative"
        ),
        "gamma_scope": HParam(
            "layer", Domain.one_of("layer", "global"), None, "projection per tensor or global"
        ),
    },
    packs=_BETAS2,
    fast_path=True,
    description="Adam that switches to SGD with momentum once its LR estimate settles.",
    reference="https://arxiv.org/abs/1712.07628",
)

_LOOKAHEAD = OptimizerSpec(
    name="lookahead",
    cls_path="optimizers.lookahead:Lookahead",
    hparams={
        "k": HParam(5, Domain.integer(1), IntSpace(3, 10), "inner steps per sync"),
        "alpha": HParam(0.5, Domain.unit(low_open=True, high_open=False), FloatSpace(0.3, 0.9)),
    },
    kind="wrapper",
    description="Lookahead: slow weights pulled towards the inner optimizer every k steps.",
    reference="https://arxiv.org/abs/1907.08610",
)

_OPTIMIZERS: tuple[OptimizerSpec, ...] = (
    _SGD,
    _ADAM,
    _ADAMW,
    _NADAM,
    _RMSPROP,
    _ADAGRAD,
    _RADAM,
    _ADEMAMIX,
    _SET_ADAM,
    _EVE,
    _LAMB,
    _SWATS,
    _LOOKAHEAD,
)

OPTIMIZERS: MappingProxyType[str, OptimizerSpec] = MappingProxyType(
    {s.name: s for s in _OPTIMIZERS}
)


def compose(wrapper: OptimizerSpec, base: OptimizerSpec) -> OptimizerSpec:
    """The spec of ``wrapper`` over ``base``: base hyperparameters plus prefixed wrapper ones."""
    prefix = f"{wrapper.name}_"
    hparams = {**base.hparams, **{prefix + n: hp for n, hp in wrapper.hparams.items()}}
    return OptimizerSpec(
        name=f"{wrapper.name}{WRAPPER_SEPARATOR}{base.name}",
        cls_path=wrapper.cls_path,
        hparams=hparams,
        packs=base.packs,
        kind="wrapper",
        total_steps_hparams=base.total_steps_hparams,
        fast_path=base.fast_path,
        bf16=base.bf16,
        description=f"{wrapper.description} Inner: {base.description}",
        reference=base.reference,
    )


def get_spec(name: str) -> OptimizerSpec:
    """The spec for a registry key, including composed names such as ``lookahead+radam``."""
    if WRAPPER_SEPARATOR in name:
        wrapper_name, _, base_name = name.partition(WRAPPER_SEPARATOR)
        wrapper, base = _lookup(wrapper_name), _lookup(base_name)
        if wrapper.kind != "wrapper":
            raise KeyError(f"{wrapper_name!r} is not a wrapper optimizer")
        if base.kind == "wrapper" or WRAPPER_SEPARATOR in base_name:
            raise KeyError(f"{base_name!r} cannot be wrapped: wrappers take a base optimizer")
        return compose(wrapper, base)
    return _lookup(name)


def _lookup(name: str) -> OptimizerSpec:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise KeyError(
            f"Unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}"
            f" or a wrapper such as 'lookahead+adamw'"
        ) from None


def list_specs(*, include_wrappers: bool = True) -> list[OptimizerSpec]:
    return [s for s in _OPTIMIZERS if include_wrappers or s.kind == "base"]


def split_wrapper_kwargs(
    spec: OptimizerSpec, kwargs: dict[str, object]
) -> tuple[dict[str, object], dict[str, object]]:
    """Separate a composed spec's resolved kwargs into (wrapper kwargs, base kwargs)."""
    wrapper_name = spec.name.partition(WRAPPER_SEPARATOR)[0]
    prefix = f"{wrapper_name}_"
    outer = {k[len(prefix) :]: v for k, v in kwargs.items() if k.startswith(prefix)}
    inner = {k: v for k, v in kwargs.items() if not k.startswith(prefix)}
    return outer, inner


# -- schedules ------------------------------------------------------------------------
def _frac(default: float, low: float | None = None, high: float | None = None) -> HParam:
    search = None if low is None or high is None else FloatSpace(low, high)
    return HParam(default, Domain.unit(high_open=False), search, "fraction of the run")


_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        name="constant",
        fn_path="optimizers.schedules:constant",
        hparams={"warmup_frac": _frac(0.0)},
        description="Constant learning rate, with an optional linear warm-up.",
    ),
    ScheduleSpec(
        name="cosine",
        fn_path="optimizers.schedules:warmup_cosine",
        hparams={"warmup_frac": _frac(0.05, 0.0, 0.2), "final_frac": _frac(0.0)},
        description="Linear warm-up then cosine decay to final_frac of the peak LR.",
        reference="https://arxiv.org/abs/1608.03983",
    ),
    ScheduleSpec(
        name="wsd",
        fn_path="optimizers.schedules:warmup_stable_decay",
        hparams={
            "warmup_frac": _frac(0.05, 0.0, 0.2),
            "decay_frac": _frac(0.2, 0.1, 0.5),
            "final_frac": _frac(0.0),
            "decay_shape": HParam("linear", Domain.one_of("linear", "1-sqrt"), None),
        },
        description="Warmup-stable-decay (trapezoidal): warm-up, plateau, cool-down.",
        reference="https://arxiv.org/abs/2405.18392",
    ),
    ScheduleSpec(
        name="onecycle",
        fn_path="optimizers.schedules:one_cycle",
        hparams={
            "warmup_frac": _frac(0.3, 0.1, 0.5),
            "div_factor": HParam(25.0, Domain.interval(1.0, None), None, "peak / initial LR"),
            "final_div_factor": HParam(1e4, Domain.interval(1.0, None), None, "initial / final"),
        },
        description="One-cycle: cosine rise to the peak LR, then cosine annealing far below.",
        reference="https://arxiv.org/abs/1708.07120",
    ),
)

SCHEDULES: MappingProxyType[str, ScheduleSpec] = MappingProxyType({s.name: s for s in _SCHEDULES})


def get_schedule_spec(name: str) -> ScheduleSpec:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise KeyError(f"Unknown schedule {name!r}; expected one of {sorted(SCHEDULES)}") from None


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "WRAPPER_SEPARATOR",
    "CategoricalSpace",
    "compose",
    "get_schedule_spec",
    "get_spec",
    "list_specs",
    "split_wrapper_kwargs",
]
