"""The search-space language: per-hyperparameter spaces, checked against the registry.

A job names optimizers (and, optionally, LR schedules) and, for each, a space per
hyperparameter::

    {"optimizers": {"sgd": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": true},
                            "nesterov": true},
                    "adamw": {}}}

* ``{"type": "float", "low", "high", "log": false, "step": null, "one_minus": false}``
* ``{"type": "int", "low", "high", "log": false, "step": 1}``
* ``{"type": "categorical", "choices": [...]}`` (non-empty, unique scalars)
* ``{"type": "fixed", "value": ...}``, or the bare JSON scalar (``"nesterov": true``).

The range rules are Optuna's (``optuna/distributions.py``), so the tuner never refuses a
space the API accepted: ``low <= high``; ``log`` needs ``low > 0`` (float) or
``low >= 1`` (int); ``step`` cannot be combined with ``log``; ``step > 0``.
``one_minus`` puts the prior on ``1 - x`` (EMA coefficients: 0.99 vs 0.999 matters as
much as 0.9 vs 0.99) and needs ``high < 1``.

Against the registry (``optimizers.registry``): the optimizer must exist (a wrapper
only composed, ``"lookahead+adamw"``), each hyperparameter must be in its spec, the kind
of space must suit the hyperparameter (int hyperparameters take int spaces, booleans and
choices only categorical or fixed ones), and every bound, choice and fixed value must
lie in the hyperparameter's ``Domain``, the same set the optimizer's ``__init__``
accepts.

Optuna parameter names (see ``distribution_name``): the optimizer is the categorical
``"optimizer"``; each hyperparameter is ``"<optimizer>.<hyperparameter>"``
(``"adamw.lr"``, ``"lookahead+adamw.lookahead_k"``), except that a ``one_minus`` space is
sampled as ``1 - x`` under ``"<optimizer>.one_minus_<hyperparameter>"``
(``"adamw.one_minus_beta2"``) so that a stored trial parameter is never mislabelled.
Schedules likewise: the categorical ``"schedule"`` and ``"<schedule>.<hp>"``
(``"cosine.warmup_frac"``); schedule and optimizer names never overlap.
Fixed values are not sampled and never appear among Optuna's parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    BeforeValidator,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from api_schemas.common import (
    FiniteFloat,
    NullableScalarValue,
    Schema,
    field_error,
    is_stored,
    raise_errors,
)
from api_schemas.limits import MAX_BATCH_SIZE, MAX_CHOICES
from api_schemas.warm_start import ResolvedWarmStart
from optimizers._spec import (
    CategoricalSpace,
    Domain,
    FloatSpace,
    HParam,
    IntSpace,
    OptimizerSpec,
    Space,
)
from optimizers.registry import OPTIMIZERS, SCHEDULES, WRAPPER_SEPARATOR, get_spec

OPTIMIZER_PARAM = "optimizer"
"""Optuna name of the categorical choice among the job's optimizers."""
SCHEDULE_PARAM = "schedule"
"""Optuna name of the categorical choice among the job's schedules."""
WEIGHT_DECAY = "weight_decay"

SHARED_KNOBS: Mapping[str, HParam] = {
    "batch_size": HParam(64, Domain.integer(1, MAX_BATCH_SIZE), None, "examples per step"),
    WEIGHT_DECAY: HParam(
        0.0, Domain.nonnegative(), None, "one weight decay for every optimizer that has one"
    ),
    "grad_clip": HParam(
        None, Domain.interval(0.0, None, low_open=True), None, "global gradient-norm clip"
    ),
}
"""Knobs sampled once per trial, whatever its optimizer (``"shared"`` in a job).

``batch_size`` and ``grad_clip`` override the task's value. ``weight_decay`` replaces
the per-optimizer ``weight_decay`` spaces with one dimension, so that a comparison does
not hand one optimizer a decay the others never get. Their Optuna names are the bare
knob names (``"batch_size"``); an optimizer's or a schedule's parameters always carry
their ``"<owner>."`` prefix, so the two never collide.
"""


# -- one hyperparameter's space ------------------------------------------------------------
def _check_order(high: Any, info: ValidationInfo) -> Any:
    low = info.data.get("low")  # absent when ``low`` itself failed
    if low is not None and high < low:
        raise PydanticCustomError(
            "range_order",
            "high ({high}) must be greater than or equal to low ({low})",
            {"high": high, "low": low},
        )
    return high


class FloatParam(Schema):
    """Uniform (``log``: log-uniform) over ``[low, high]``, optionally on a ``step`` grid."""

    type: Literal["float"] = "float"
    low: FiniteFloat
    high: FiniteFloat
    log: StrictBool = False
    step: Annotated[FiniteFloat, Field(gt=0)] | None = None
    one_minus: StrictBool = False

    _high_after_low = field_validator("high")(_check_order)

    @field_validator("step")
    @classmethod
    def _step_without_log(cls, step: float | None, info: ValidationInfo) -> float | None:
        if step is not None and info.data.get("log"):
            raise PydanticCustomError("step_with_log", "step cannot be combined with log=true")
        return step

    @model_validator(mode="after")
    def _prior_rules(self) -> Self:
        # After validation, as these rules read flags declared after the field they name.
        errors = []
        if self.one_minus and self.high >= 1:
            msg = f"high must be < 1 with one_minus=true (the tuner samples 1 - x), got {self.high}"
            errors.append(field_error(("high",), "one_minus_range", msg, self.high))
        if self.one_minus and self.step is not None:
            msg = "step cannot be combined with one_minus=true (the tuner samples 1 - x)"
            errors.append(field_error(("step",), "step_with_one_minus", msg, self.step))
        if self.log and not self.one_minus and self.low <= 0:
            msg = f"low must be > 0 for log=true, got {self.low}"
            errors.append(field_error(("low",), "log_low", msg, self.low))
        raise_errors("FloatParam", errors)
        return self


class IntParam(Schema):
    """Uniform (``log``: log-uniform) integers in ``[low, high]`` on a ``step`` grid."""

    type: Literal["int"] = "int"
    low: StrictInt
    high: StrictInt
    log: StrictBool = False
    step: Annotated[StrictInt, Field(ge=1)] = 1

    _high_after_low = field_validator("high")(_check_order)

    @field_validator("step")
    @classmethod
    def _step_without_log(cls, step: int, info: ValidationInfo) -> int:
        if step != 1 and info.data.get("log"):
            raise PydanticCustomError("step_with_log", "step cannot be combined with log=true")
        return step

    @model_validator(mode="after")
    def _log_low(self) -> Self:
        if self.log and self.low < 1:
            msg = f"low must be >= 1 for an int space with log=true, got {self.low}"
            raise_errors("IntParam", [field_error(("low",), "log_low", msg, self.low)])
        return self


class CategoricalParam(Schema):
    """One of ``choices`` (unique: Optuna finds a choice by ``==``, so 1, 1.0 and true clash)."""

    type: Literal["categorical"] = "categorical"
    choices: Annotated[list[NullableScalarValue], Field(min_length=1, max_length=MAX_CHOICES)]

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Any]) -> list[Any]:
        errors = [
            field_error((i,), "duplicate_choice", f"duplicate choice {c!r}", c)
            for i, c in enumerate(choices)
            if any(c == earlier for earlier in choices[:i])
        ]
        raise_errors("CategoricalParam", errors)
        return choices


class FixedParam(Schema):
    """Not tuned: every trial uses ``value``."""

    type: Literal["fixed"] = "fixed"
    value: NullableScalarValue


def _bare_scalar_is_fixed(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return {"type": "fixed", "value": value}
    return value


ParamSpace: TypeAlias = Annotated[
    Annotated[
        FloatParam | IntParam | CategoricalParam | FixedParam,
        Field(discriminator="type"),
    ],
    BeforeValidator(
        _bare_scalar_is_fixed,
        json_schema_input_type=FloatParam
        | IntParam
        | CategoricalParam
        | FixedParam
        | bool
        | int
        | float
        | str
        | None,
    ),
]
"""One hyperparameter's space; a bare JSON scalar is read as ``{"type": "fixed", ...}``.

Errors carry the tag in ``loc``, as pydantic reports a discriminated union:
``("search_space", "optimizers", "sgd", "lr", "float", "high")``.
"""

Spaces: TypeAlias = Annotated[dict[str, ParamSpace], Field(max_length=64)]


def param_from_space(space: Space) -> FloatParam | IntParam | CategoricalParam:
    """A registry prior (``FloatSpace`` ...) as the API's model of the same space."""
    if isinstance(space, FloatSpace):
        return FloatParam(
            low=space.low,
            high=space.high,
            log=space.log,
            step=space.step,
            one_minus=space.one_minus,
        )
    if isinstance(space, IntSpace):
        return IntParam(low=space.low, high=space.high, log=space.log, step=space.step)
    if isinstance(space, CategoricalSpace):
        return CategoricalParam(choices=list(space.choices))
    raise TypeError(f"unknown space {space!r}")


def distribution_name(optimizer: str, hp: str, space: object | None = None) -> str:
    """Optuna's name for ``hp`` of ``optimizer``: ``"adamw.lr"``, ``"adamw.one_minus_beta2"``.

    ``space`` is a param model or its JSON form (a stored ``ResolvedSpace``); only a float
    space with ``one_minus`` changes the name.
    """
    if isinstance(space, FloatParam):
        one_minus = space.one_minus
    elif isinstance(space, Mapping):
        one_minus = space.get("type", "float") == "float" and bool(space.get("one_minus"))
    else:
        one_minus = False
    return f"{optimizer}.one_minus_{hp}" if one_minus else f"{optimizer}.{hp}"


def schedule_distribution_name(schedule: str, hp: str, space: object | None = None) -> str:
    """Optuna's name for ``hp`` of a schedule: ``"cosine.warmup_frac"``.

    The same form as an optimizer's: the registries keep schedule and optimizer names
    disjoint (a test checks it), so the two never collide.
    """
    return distribution_name(schedule, hp, space)


def shared_distribution_name(knob: str, space: object | None = None) -> str:
    """Optuna's name for a shared knob: the knob itself (``"weight_decay"``), or
    ``"one_minus_<knob>"`` for a ``one_minus`` prior, as for an optimizer's."""
    return distribution_name("", knob, space)[1:]


def sampled_bounds(space: FloatParam | IntParam) -> tuple[float, float]:
    """The range Optuna samples: ``[1 - high, 1 - low]`` for a ``one_minus`` space.

    Written as ``workers.objective.suggest_value`` computes it, so the bounds agree to
    the last bit.
    """
    if isinstance(space, FloatParam) and space.one_minus:
        return 1.0 - space.high, 1.0 - space.low
    return float(space.low), float(space.high)


# -- the registry ---------------------------------------------------------------------------
def _shown(name: str) -> str:
    """A user-given name for a message, cut short: keys are not length-checked."""
    return repr(name if len(name) <= 64 else name[:61] + "...")


def _wrappers() -> list[str]:
    return sorted(n for n, s in OPTIMIZERS.items() if s.kind == "wrapper")


def valid_optimizer_names() -> str:
    bases = ", ".join(sorted(n for n, s in OPTIMIZERS.items() if s.kind == "base"))
    wrappers = " or ".join(f"'{w}{WRAPPER_SEPARATOR}<optimizer>'" for w in _wrappers())
    return f"{bases}; or a wrapper over one of them: {wrappers}"


def lookup_optimizer(name: str) -> OptimizerSpec:
    """The spec of an optimizer a job may name; ``KeyError`` with the valid names otherwise."""
    if OPTIMIZERS.get(name) is not None and OPTIMIZERS[name].kind == "wrapper":
        raise KeyError(
            f"{_shown(name)} wraps another optimizer: name it as '{name}{WRAPPER_SEPARATOR}adamw' "
            f"(any of {valid_optimizer_names()})"
        )
    try:
        return get_spec(name)
    except KeyError:
        raise KeyError(
            f"Unknown optimizer {_shown(name)}; expected one of {valid_optimizer_names()}"
        ) from None


def _lookup_schedule(name: str) -> Mapping[str, HParam]:
    if name not in SCHEDULES:
        raise KeyError(f"Unknown schedule {_shown(name)}; expected one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name].hparams


_ACCEPTS: dict[str, tuple[str, ...]] = {
    "float": ("float", "categorical", "fixed"),
    "int": ("int", "categorical", "fixed"),
    "bool": ("categorical", "fixed"),
    "choice": ("categorical", "fixed"),
}


def _domain_errors(
    hp: str, domain: Domain, space: Any, loc: tuple[str, ...]
) -> list[InitErrorDetails]:
    """Errors of one space against its hyperparameter's domain, each at its own field."""
    tag = space.type
    here = (*loc, hp, tag)
    if tag not in _ACCEPTS[domain.kind]:
        allowed = ", ".join(_ACCEPTS[domain.kind])
        msg = f"{hp!r} is {domain.describe()}: its space must be one of {allowed}, not {tag}"
        return [field_error((*here, "type"), "space_type", msg, tag)]
    if isinstance(space, FixedParam):
        values: list[tuple[tuple[str | int, ...], Any]] = [(("value",), space.value)]
    elif isinstance(space, CategoricalParam):
        values = [(("choices", i), c) for i, c in enumerate(space.choices)]
    else:
        values = [(("low",), space.low), (("high",), space.high)]
    errors = []
    for sub, value in values:
        if not domain.contains(value):
            msg = f"Invalid {hp} value: {value!r} (must be {domain.describe()})"
            if len(sub) == 1 and sub[0] in ("low", "high"):
                msg += f"; the range's {sub[0]} must lie inside the domain"
            errors.append(field_error((*here, *sub), "outside_domain", msg, value))
    return errors


def _hparam_errors(
    owner: str,
    kind: str,
    hparams: Mapping[str, HParam],
    packs: Mapping[str, tuple[str, ...]],
    spaces: Mapping[str, Any],
    loc: tuple[str, ...],
) -> list[InitErrorDetails]:
    errors: list[InitErrorDetails] = []
    for hp, space in spaces.items():
        if hp in hparams:
            errors += _domain_errors(hp, hparams[hp].domain, space, loc)
            continue
        hint = f" ({hp!r} is given as {', '.join(packs[hp])})" if hp in packs else ""
        msg = (
            f"Unknown hyperparameter {_shown(hp)} for {kind} {owner!r}{hint}; "
            f"expected one of {', '.join(hparams)}"
        )
        errors.append(field_error((*loc, hp), "unknown_hyperparameter", msg, hp))
    return errors


def _resolve(
    hparams: Mapping[str, HParam], given: Mapping[str, ParamSpace], priors: bool = True
) -> dict[str, Any]:
    """The given spaces, the rest at the spec's prior (``priors``) or fixed at its default.

    ``priors=False`` is the grid sampler's reading: only what the user listed is varied.
    """
    out: dict[str, Any] = {}
    for hp, spec in hparams.items():
        if hp in given:
            out[hp] = given[hp]
        elif priors and spec.search is not None:
            out[hp] = param_from_space(spec.search)
        else:
            out[hp] = FixedParam(value=spec.default)
    return out


def _names_to_spaces(value: Any, what: str) -> Any:
    """The list form ``["adamw", "sgd"]`` as ``{"adamw": {}, "sgd": {}}``."""
    if not isinstance(value, list):
        return value
    errors = []
    for i, name in enumerate(value):
        if not isinstance(name, str):
            errors.append(field_error((i,), "string_type", f"{what} names are strings", name))
        elif name in value[:i]:
            errors.append(field_error((i,), "duplicate_name", f"{what} {name!r} repeated", name))
    raise_errors(what, errors)
    return {name: {} for name in value}


# -- the job's spaces -----------------------------------------------------------------------
NamedSpaces: TypeAlias = Annotated[dict[str, Spaces], Field(min_length=1, max_length=32)]


class ResolvedSpace(Schema):
    """Every hyperparameter of every named optimizer (and schedule), nothing left implicit.

    A hyperparameter the job did not mention takes the spec's default prior if it has
    one, else is fixed at the spec's default. Stored with the job and returned by the
    API; the tuner samples exactly this.
    """

    optimizers: dict[str, dict[str, ParamSpace]]
    schedules: dict[str, dict[str, ParamSpace]] = Field(default_factory=dict)
    """Empty when the job names no schedule (the worker then keeps the LR constant)."""
    shared: dict[str, ParamSpace] = Field(default_factory=dict)
    """Knobs sampled once per trial for any optimizer (``SHARED_KNOBS``), by their name."""
    warm_start: ResolvedWarmStart | None = None
    """The configurations the first slots run (``warm_start`` on the job), null without."""

    def tuned_parameters(self) -> dict[str, FloatParam | IntParam | CategoricalParam]:
        """Every sampled space by its Optuna name (``"adamw.lr"`` ...), fixed ones left out."""
        groups = [*self.optimizers.items(), *self.schedules.items()]
        named = [
            (distribution_name(owner, hp, space), space)
            for owner, spaces in groups
            for hp, space in spaces.items()
        ]
        named += [
            (shared_distribution_name(knob, space), space) for knob, space in self.shared.items()
        ]
        return {name: space for name, space in named if not isinstance(space, FixedParam)}


class SearchSpace(Schema):
    """Optimizers to compare, each with spaces for some of its hyperparameters.

    ``{"adamw": {}}`` and the list form ``["adamw"]`` both mean the spec's default space.
    """

    optimizers: NamedSpaces

    @field_validator("optimizers", mode="before", json_schema_input_type=NamedSpaces | list[str])
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        return _names_to_spaces(value, "optimizer")

    @model_validator(mode="after")
    def _against_registry(self, info: ValidationInfo) -> Self:
        if is_stored(info.context):
            return self
        errors: list[InitErrorDetails] = []
        for name, spaces in self.optimizers.items():
            loc = ("optimizers", name)
            try:
                spec = lookup_optimizer(name)
            except KeyError as exc:
                errors.append(field_error(loc, "unknown_optimizer", str(exc.args[0]), name))
                continue
            errors += _hparam_errors(name, "optimizer", spec.hparams, spec.packs, spaces, loc)
        raise_errors("SearchSpace", errors)
        return self

    def resolve(self, priors: bool = True) -> ResolvedSpace:
        return ResolvedSpace(
            optimizers={
                name: _resolve(get_spec(name).hparams, spaces, priors)
                for name, spaces in self.optimizers.items()
            }
        )


class ScheduleSpace(RootModel[NamedSpaces]):
    """LR schedules to compare: ``{"cosine": {"warmup_frac": {...}}, "wsd": {}}`` or a list.

    Names and hyperparameters come from ``optimizers.registry.SCHEDULES``.
    """

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        return _names_to_spaces(value, "schedule")

    @model_validator(mode="after")
    def _against_registry(self, info: ValidationInfo) -> Self:
        if is_stored(info.context):
            return self
        errors: list[InitErrorDetails] = []
        for name, spaces in self.root.items():
            try:
                hparams = _lookup_schedule(name)
            except KeyError as exc:
                errors.append(field_error((name,), "unknown_schedule", str(exc.args[0]), name))
                continue
            errors += _hparam_errors(name, "schedule", hparams, {}, spaces, (name,))
        raise_errors("ScheduleSpace", errors)
        return self

    def resolve(self, priors: bool = True) -> dict[str, dict[str, ParamSpace]]:
        return {
            name: _resolve(SCHEDULES[name].hparams, spaces, priors)
            for name, spaces in self.root.items()
        }


# -- wrappers applied to every optimizer -------------------------------------------------
LOOKAHEAD = "lookahead"


class LookaheadSpace(RootModel[Spaces]):
    """``"lookahead": {"k": ..., "alpha": ...}``: Lookahead over every optimizer of the job.

    The same as naming each optimizer ``lookahead+<name>`` with ``lookahead_k`` and
    ``lookahead_alpha`` spaces, without repeating them per optimizer; ``{}`` takes the
    wrapper's default priors. The resolved space (and Optuna's parameter names) use the
    composed names, so a stored trial says exactly what ran.
    """

    @model_validator(mode="after")
    def _against_registry(self, info: ValidationInfo) -> Self:
        if is_stored(info.context):
            return self
        hparams = OPTIMIZERS[LOOKAHEAD].hparams
        raise_errors(
            "LookaheadSpace", _hparam_errors(LOOKAHEAD, "wrapper", hparams, {}, self.root, ())
        )
        return self

    def wrap(
        self, optimizers: Mapping[str, Mapping[str, Any]], priors: bool = True
    ) -> dict[str, dict[str, Any]]:
        """Each resolved optimizer as ``lookahead+<name>``, the wrapper's spaces added."""
        own = _resolve(OPTIMIZERS[LOOKAHEAD].hparams, self.root, priors)
        prefixed = {f"{LOOKAHEAD}_{hp}": space for hp, space in own.items()}
        return {
            f"{LOOKAHEAD}{WRAPPER_SEPARATOR}{name}": {**spaces, **prefixed}
            for name, spaces in optimizers.items()
        }


# -- knobs shared by every optimizer ------------------------------------------------------
class SharedSpace(RootModel[Spaces]):
    """``"shared": {"batch_size": {...}, "weight_decay": {...}, "grad_clip": {...}}``.

    Each knob (``SHARED_KNOBS``) is one dimension sampled for every trial whatever its
    optimizer; a fixed value is allowed too (``"batch_size": 128``). A knob left out keeps
    the task's value (``batch_size``, ``grad_clip``) or each optimizer's own space
    (``weight_decay``).
    """

    @model_validator(mode="after")
    def _against_registry(self, info: ValidationInfo) -> Self:
        if is_stored(info.context):
            return self
        raise_errors(
            "SharedSpace", _hparam_errors("shared", "task", SHARED_KNOBS, {}, self.root, ())
        )
        return self

    def apply(self, resolved: ResolvedSpace) -> ResolvedSpace:
        """The job's space with these knobs: a shared ``weight_decay`` replaces each
        optimizer's own (the worker hands the shared value to every optimizer that has
        one)."""
        shared = dict(self.root)
        optimizers = resolved.optimizers
        if WEIGHT_DECAY in shared:
            optimizers = {
                name: {hp: s for hp, s in spaces.items() if hp != WEIGHT_DECAY}
                for name, spaces in optimizers.items()
            }
        return resolved.model_copy(update={"optimizers": optimizers, "shared": shared})


# -- grids ---------------------------------------------------------------------------------
_Axis: TypeAlias = tuple[str, list[Any]]


def _axes(owner: str | None, spaces: Mapping[str, Any]) -> list[_Axis]:
    """The (Optuna name, choices) of each tuned parameter of one optimizer or schedule,
    or (``owner=None``) of the shared knobs."""
    axes = []
    for hp, space in spaces.items():
        if isinstance(space, FixedParam):
            continue
        if not isinstance(space, CategoricalParam):
            where = hp if owner is None else f"{owner}.{hp}"
            raise ValueError(f"{where}: a grid takes categorical or fixed spaces only")
        name = (
            shared_distribution_name(hp, space)
            if owner is None
            else distribution_name(owner, hp, space)
        )
        axes.append((name, list(space.choices)))
    return axes


def _choice_groups(resolved: ResolvedSpace) -> list[tuple[str, dict[str, list[_Axis]]]]:
    groups = [(OPTIMIZER_PARAM, {n: _axes(n, s) for n, s in sorted(resolved.optimizers.items())})]
    if resolved.schedules:
        groups.append(
            (SCHEDULE_PARAM, {n: _axes(n, s) for n, s in sorted(resolved.schedules.items())})
        )
    return groups


def _group_points(param: str, owners: Mapping[str, list[_Axis]]) -> Iterator[dict[str, Any]]:
    for owner, axes in owners.items():
        names = [name for name, _ in axes]
        for combo in itertools.product(*(choices for _, choices in axes)):
            yield {param: owner, **dict(zip(names, combo, strict=True))}


def grid_points(resolved: ResolvedSpace) -> Iterator[dict[str, Any]]:
    """Every distinct configuration of an all-categorical space, by Optuna parameter name.

    Optimizers (then schedules) in name order, choices in the order given, lazily, so
    slot ``i`` of a grid job always runs point ``i``. A point holds only the chosen
    optimizer's parameters: unlike one product over every parameter (Optuna's
    ``GridSampler``), no configuration repeats once per value of another optimizer's
    parameters. ``ValueError`` if a tuned space is not categorical.
    """
    groups = _choice_groups(resolved)
    shared_axes = _shared_axes(resolved)
    shared_names = [name for name, _ in shared_axes]
    for combo in itertools.product(*(_group_points(*group) for group in groups)):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        for values in itertools.product(*(choices for _, choices in shared_axes)):
            yield {**point, **dict(zip(shared_names, values, strict=True))}


def _shared_axes(resolved: ResolvedSpace) -> list[_Axis]:
    return _axes(None, resolved.shared)


def grid_size(resolved: ResolvedSpace) -> int:
    """How many points ``grid_points`` yields, counted without enumerating them."""
    per_group = math.prod(
        sum(math.prod(len(choices) for _, choices in axes) for axes in owners.values())
        for _, owners in _choice_groups(resolved)
    )
    return per_group * math.prod(len(choices) for _, choices in _shared_axes(resolved))


# -- learning-rate sweeps (``mode: sweep``) -------------------------------------------------
SWEEP_HP = "lr"
"""The hyperparameter a sweep varies."""
DEFAULT_SWEEP_LRS: tuple[float, ...] = tuple(float(f"{10 ** (-4 + i / 2):.6g}") for i in range(7))
"""Seven log-spaced learning rates, ``1e-4 .. 1e-1`` (half a decade apart)."""


def sweep_space(optimizers: Iterable[str], lrs: list[float]) -> ResolvedSpace:
    """A sweep's space: ``lr`` over ``lrs`` for each optimizer, the rest at its default.

    Every other hyperparameter is fixed at the spec's default whatever space the job
    gave it, so that the report shows the metric against the learning rate alone.
    """
    lr = CategoricalParam(choices=list(lrs))
    return ResolvedSpace(
        optimizers={
            name: _resolve(get_spec(name).hparams, {SWEEP_HP: lr}, priors=False)
            for name in optimizers
        }
    )


def sweep_point(resolved: ResolvedSpace, seeds: int, slot: int) -> tuple[dict[str, Any], int]:
    """Slot ``slot`` of a sweep: its grid point (optimizer, lr) and its seed index.

    Slots enumerate optimizers (by name), then learning rates (in the order given),
    then seeds: slot ``i`` runs point ``i // seeds`` with seed index ``i % seeds``.
    """
    point = next(itertools.islice(grid_points(resolved), slot // seeds, None), None)
    if point is None:
        raise ValueError(f"slot {slot} is past the sweep's {grid_size(resolved) * seeds} slots")
    return point, slot % seeds


__all__ = [
    "DEFAULT_SWEEP_LRS",
    "LOOKAHEAD",
    "OPTIMIZER_PARAM",
    "SCHEDULE_PARAM",
    "SHARED_KNOBS",
    "SWEEP_HP",
    "WEIGHT_DECAY",
    "CategoricalParam",
    "FixedParam",
    "FloatParam",
    "IntParam",
    "LookaheadSpace",
    "ParamSpace",
    "ResolvedSpace",
    "ScheduleSpace",
    "SearchSpace",
    "SharedSpace",
    "distribution_name",
    "grid_points",
    "grid_size",
    "lookup_optimizer",
    "param_from_space",
    "sampled_bounds",
    "schedule_distribution_name",
    "shared_distribution_name",
    "sweep_point",
    "sweep_space",
    "valid_optimizer_names",
]
