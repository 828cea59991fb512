"""The job body (``POST /v1/jobs``) and the job responses.

Field names are a contract with clients and stored specs: extend, never rename.
Shape, finiteness, caps and cross-field rules fail here with a 422 whose ``loc`` names
the field; whether the model and dataset exist in the worker catalogue is checked by the
service (it owns that catalogue), as is the metric/direction pairing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from api_schemas.common import (
    NAME_PATTERN,
    FiniteFloat,
    JobId,
    Page,
    ScalarParams,
    Schema,
    StrictNonNegativeInt,
    ValueKind,
    encode_float,
    field_error,
    is_stored,
    raise_errors,
)
from api_schemas.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_PARALLEL, MAX_TRIALS
from api_schemas.search_space import (
    DEFAULT_SWEEP_LRS,
    SWEEP_HP,
    WEIGHT_DECAY,
    FloatParam,
    IntParam,
    LookaheadSpace,
    ResolvedSpace,
    ScheduleSpace,
    SearchSpace,
    SharedSpace,
    grid_size,
    lookup_optimizer,
    sweep_space,
)
from api_schemas.trials import (
    CurvePoint,
    CurveRead,
    TrialList,
    TrialRead,
    TrialState,
    encode_value_fields,
)
from api_schemas.warm_start import WarmStart, warm_start_conflicts
from optimizers.registry import WRAPPER_SEPARATOR

CatalogName: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=NAME_PATTERN)
]
"""A catalogue key: a lowercase identifier, so never an import path or code."""

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
DatasetName: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=rf"^(?:[a-z][a-z0-9_]*|{_UUID})$")
]
"""A built-in dataset's key, or the id (lowercase UUID) of an uploaded dataset."""


class ModelRef(Schema):
    name: CatalogName
    params: ScalarParams = Field(default_factory=dict)


class DatasetRef(Schema):
    name: DatasetName
    params: ScalarParams = Field(default_factory=dict)


class TaskSpec(Schema):
    """What each trial trains and how it is scored."""

    model: ModelRef
    dataset: DatasetRef
    epochs: Annotated[int, Field(strict=True, ge=1, le=MAX_EPOCHS)]
    batch_size: Annotated[int, Field(strict=True, ge=1, le=MAX_BATCH_SIZE)] = 64
    metric: CatalogName = "val_loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    seed: StrictNonNegativeInt = 0
    grad_clip: Annotated[FiniteFloat, Field(gt=0)] | None = None
    """Clip the gradients' global L2 norm to this value before each step (none: off)."""


# -- sampler and pruner options --------------------------------------------------------------
# Options become keyword arguments of Optuna's constructors in the worker
# (workers/samplers.py, whose registries a test keeps equal to these tables): an unknown
# or ill-typed one is refused here rather than failing every trial there.
_Check: TypeAlias = Callable[[Any], bool]


def _is_int(minimum: int) -> tuple[_Check, str]:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
        f"an integer >= {minimum}",
    )


def _is_number(low: float | None = None, high: float | None = None) -> tuple[_Check, str]:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return (low is None or v >= low) and (high is None or v <= high)

    bounds = [f"{op} {b:g}" for op, b in ((">=", low), ("<=", high)) if b is not None]
    return check, " ".join(["a number", " and ".join(bounds)]).strip()


def _int_or_auto(minimum: int) -> tuple[_Check, str]:
    check, text = _is_int(minimum)
    return (lambda v: v == "auto" or check(v)), f"{text} or 'auto'"


def _one_of(*choices: str) -> tuple[_Check, str]:
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


_IS_BOOL: tuple[_Check, str] = (lambda v: isinstance(v, bool), "true or false")
_IS_POSITIVE: tuple[_Check, str] = (
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
    "a number > 0",
)

SamplerName: TypeAlias = Literal["tpe", "random", "qmc", "cmaes", "gp", "grid", "nsga2"]
PrunerName: TypeAlias = Literal[
    "none", "median", "percentile", "successive_halving", "hyperband", "threshold"
]

SAMPLER_OPTIONS: Mapping[str, Mapping[str, tuple[_Check, str]]] = {
    "tpe": {
        "n_startup_trials": _is_int(0),
        "n_ei_candidates": _is_int(1),
        "multivariate": _IS_BOOL,
        "group": _IS_BOOL,
        "constant_liar": _IS_BOOL,
        "consider_endpoints": _IS_BOOL,
        "prior_weight": _IS_POSITIVE,
    },
    "random": {},
    "qmc": {"qmc_type": _one_of("sobol", "halton"), "scramble": _IS_BOOL},
    "cmaes": {
        "n_startup_trials": _is_int(0),
        "sigma0": _IS_POSITIVE,
        "consider_pruned_trials": _IS_BOOL,
        "use_separable_cma": _IS_BOOL,
        "with_margin": _IS_BOOL,
        "lr_adapt": _IS_BOOL,
    },
    "gp": {"n_startup_trials": _is_int(0), "deterministic_objective": _IS_BOOL},
    "grid": {},
    "nsga2": {
        "population_size": _is_int(2),
        "mutation_prob": _is_number(0, 1),
        "crossover_prob": _is_number(0, 1),
        "swapping_prob": _is_number(0, 1),
    },
}
MULTI_OBJECTIVE_SAMPLERS = frozenset({"tpe", "random", "qmc", "gp", "grid", "nsga2"})
"""Samplers that handle several objectives (CMA-ES is single-objective; NSGA-II only multi)."""
_MEDIAN_OPTIONS: Mapping[str, tuple[_Check, str]] = {
    "n_startup_trials": _is_int(0),
    "n_warmup_steps": _is_int(0),
    "interval_steps": _is_int(1),
    "n_min_trials": _is_int(1),
}
PRUNER_OPTIONS: Mapping[str, Mapping[str, tuple[_Check, str]]] = {
    "none": {},
    "median": _MEDIAN_OPTIONS,
    "percentile": {"percentile": _is_number(0, 100), **_MEDIAN_OPTIONS},
    "successive_halving": {
        "min_resource": _int_or_auto(1),
        "reduction_factor": _is_int(2),
        "min_early_stopping_rate": _is_int(0),
        "bootstrap_count": _is_int(0),
    },
    "hyperband": {
        "min_resource": _is_int(1),
        "max_resource": _int_or_auto(1),
        "reduction_factor": _is_int(2),
        "bootstrap_count": _is_int(0),
    },
    "threshold": {
        "lower": _is_number(),
        "upper": _is_number(),
        "n_warmup_steps": _is_int(0),
        "interval_steps": _is_int(1),
    },
}


def _option_errors(
    kind: str, name: str, options: Mapping[str, Any], allowed: Mapping[str, tuple[_Check, str]]
) -> list[InitErrorDetails]:
    errors = []
    for key, value in options.items():
        loc = ("options", key)
        if key not in allowed:
            expected = ", ".join(allowed) or "none"
            msg = f"Unknown option {key!r} for {kind} {name!r}; expected one of: {expected}"
            errors.append(field_error(loc, "unknown_option", msg, value))
        elif not allowed[key][0](value):
            msg = f"Invalid {key} value: {value!r} (must be {allowed[key][1]})"
            errors.append(field_error(loc, "invalid_option", msg, value))
    return errors


class SamplerSpec(Schema):
    """Optuna sampler.

    * ``tpe`` (default): multivariate, grouped, with the constant liar, which is what a
      conditional space (an optimizer choice with per-optimizer sub-spaces) and parallel
      workers need.
    * ``random``, ``qmc`` (Sobol/Halton; parameters outside the first trial's space are
      drawn at random), ``gp`` (Gaussian process, BoTorch-style; needs scipy).
    * ``cmaes``: CMA-ES over the continuous parameters. The categorical optimizer choice
      (and any categorical or conditional parameter) is outside what CMA-ES can model:
      Optuna samples those independently (at random), so CMA-ES suits a job with one
      optimizer and float/int spaces.
    * ``grid``: the job's categorical and fixed values form the grid (a learning-rate
      sweep: ``"lr": {"type": "categorical", "choices": [1e-3, 3e-3, 1e-2]}``); a
      hyperparameter not mentioned is fixed at its default, not tuned, and slot ``i``
      runs grid point ``i``, so ``n_trials`` may not exceed the number of points.
    * ``nsga2``: NSGA-II, for jobs with several ``objectives`` only.

    Each trial draws with its own seed (the job's seed, the slot and the attempt).
    """

    name: SamplerName = "tpe"
    options: ScalarParams = Field(default_factory=dict)
    seed: StrictNonNegativeInt | None = None

    @model_validator(mode="after")
    def _known_options(self) -> Self:
        errors = _option_errors("sampler", self.name, self.options, SAMPLER_OPTIONS[self.name])
        # The worker turns ``group`` on by default, and Optuna refuses group without
        # multivariate: say so here instead of failing every trial.
        if self.options.get("multivariate") is False and self.options.get("group") is not False:
            msg = "multivariate=false needs group=false (Optuna's TPE groups only multivariate)"
            errors.append(field_error(("options", "multivariate"), "invalid_option", msg, False))
        raise_errors("SamplerSpec", errors)
        return self


def _pruner_rules(name: str, options: Mapping[str, Any]) -> list[InitErrorDetails]:
    """What the options' types cannot say: required options and their order."""
    loc = ("options",)
    if name == "percentile" and "percentile" not in options:
        return [field_error((*loc, "percentile"), "missing", "percentile is required", None)]
    if name == "threshold":
        lower, upper = options.get("lower"), options.get("upper")
        if lower is None and upper is None:
            msg = "threshold needs lower, upper or both"
            return [field_error(loc, "missing_threshold", msg, dict(options))]
        # both already checked to be numbers when given
        if isinstance(lower, int | float) and isinstance(upper, int | float) and lower > upper:
            msg = f"upper ({upper}) must be greater than or equal to lower ({lower})"
            return [field_error((*loc, "upper"), "range_order", msg, upper)]
    return []


class PrunerSpec(Schema):
    """Optuna pruner: stops a trial at an epoch boundary when its curve is not promising.

    ``median``, ``percentile``, ``successive_halving`` (asynchronous successive halving,
    ASHA), ``hyperband`` (its ``max_resource`` defaults to the task's epochs) and
    ``threshold`` (prune once the metric leaves ``[lower, upper]``). One epoch is one
    step of resource.
    """

    name: PrunerName = "none"
    options: ScalarParams = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_options(self) -> Self:
        errors = _option_errors("pruner", self.name, self.options, PRUNER_OPTIONS[self.name])
        raise_errors("PrunerSpec", errors or _pruner_rules(self.name, self.options))
        return self


class Objective(Schema):
    """One objective of a multi-objective job: a reported metric and its direction."""

    metric: CatalogName
    direction: Literal["minimize", "maximize"]


MAX_CONFIRM_SEEDS = 10

Seconds: TypeAlias = Annotated[FiniteFloat, Field(gt=0, le=30 * 24 * 3600)]
"""A wall-clock budget in seconds (at most 30 days)."""


MAX_SWEEP_LRS = 32
MAX_SWEEP_SEEDS = 10
PositiveLR: TypeAlias = Annotated[FiniteFloat, Field(gt=0)]


class SweepSpec(Schema):
    """``mode: sweep``: every optimizer of the search space at each of ``lrs``, ``seeds`` times.

    ``lrs`` defaults to seven log-spaced values from ``1e-4`` to ``1e-1``. Seed index
    ``j`` trains with the task's ``seed + j`` (index 0 is the task's own seed).
    """

    lrs: Annotated[list[PositiveLR], Field(min_length=1, max_length=MAX_SWEEP_LRS)] = Field(
        default_factory=lambda: list(DEFAULT_SWEEP_LRS)
    )
    seeds: Annotated[int, Field(strict=True, ge=1, le=MAX_SWEEP_SEEDS)] = 1

    @field_validator("lrs")
    @classmethod
    def _unique(cls, lrs: list[float]) -> list[float]:
        errors = [
            field_error((i,), "duplicate_lr", f"learning rate {lr!r} repeated", lr)
            for i, lr in enumerate(lrs)
            if lr in lrs[:i]
        ]
        raise_errors("SweepSpec", errors)
        return lrs


def _sweep_size(data: Any) -> int | None:
    """The slots of a ``mode: sweep`` body, counted before validation (None: not a sweep).

    Counted leniently (a malformed count reads as 1): that field's own error is then the
    one reported, rather than it plus a missing ``n_trials``.
    """
    if not isinstance(data, dict) or data.get("mode") != "sweep":
        return None
    space = data.get("search_space")
    optimizers = space.get("optimizers") if isinstance(space, dict) else None
    sweep = data.get("sweep")
    sweep = sweep if isinstance(sweep, dict) else {}
    lrs, seeds = sweep.get("lrs", DEFAULT_SWEEP_LRS), sweep.get("seeds", 1)
    n_opt = len(optimizers) if isinstance(optimizers, dict | list) else 1
    n_lrs = len(lrs) if isinstance(lrs, list | tuple) else 1
    n_seeds = seeds if isinstance(seeds, int) and not isinstance(seeds, bool) else 1
    return max(n_opt, 1) * max(n_lrs, 1) * max(n_seeds, 1)


class JobCreate(Schema):
    """``POST /v1/jobs``: tune ``n_trials`` trials of ``task`` over ``search_space``.

    Budgets, each optional, each ending the job early:

    * ``timeout``: the job's wall clock, from its first trial's start. Once passed, no
      trial starts, running ones stop at their next epoch boundary (recorded cancelled),
      and the job ends ``completed`` (``failed`` if nothing finished), ``error`` saying
      why it stopped.
    * ``trial_timeout``: one trial's wall clock, checked at each epoch boundary; a trial
      past it fails with reason ``timeout``, and the job goes on.
    * ``max_failed_trials``: the job fails once more trials than this have failed.
    * ``target``: the job stops, ``completed``, as soon as a trial completes with a
      value at least as good as ``target`` (``>=`` when maximizing, ``<=`` when
      minimizing): queued slots are cancelled and running trials stop at their next
      epoch boundary. An intermediate (per-epoch) value does not count.

    ``lookahead`` wraps every optimizer of the search space in Lookahead (see
    ``LookaheadSpace``).

    ``objectives`` (2 to 4 metrics, each with its direction) makes the job
    multi-objective: each trial is scored by every objective at its last epoch and
    ``GET /v1/jobs/{id}/pareto`` returns the non-dominated trials. The pruner acts on the
    first objective (Optuna prunes single-objective studies only, so the worker keeps a
    shadow study of that objective); ``target`` is refused (a target needs one
    objective); a trial's ``value`` (and ``best``) follow the first objective.
    ``task.metric`` / ``task.direction`` are ignored when ``objectives`` is set.

    ``shared`` (see ``SharedSpace``) samples ``batch_size``, one ``weight_decay`` for every
    optimizer, or ``grad_clip`` once per trial, whatever the optimizer.

    ``mode: compare`` gives every optimizer of the search space the same budget: slot
    ``i`` tunes optimizer ``i mod k`` (names sorted), so ``n_trials`` must be a multiple
    of their number ``k``. Then, once every tuning trial has ended, ``confirm_seeds``
    more trials per optimizer rerun its best configuration with other task seeds
    (``seed + 1``, ``seed + 2``...), so that a ranking is not one lucky seed.
    ``GET /v1/jobs/{id}/comparison`` reads the result.

    ``mode: sweep`` is a learning-rate sensitivity report (see ``SweepSpec``): slot ``i``
    trains one (optimizer, lr, seed) point, optimizers by name, then ``sweep.lrs`` in
    the order given, then seeds, with every other hyperparameter fixed at the
    optimizer's default: the search space only names the optimizers, its spaces are
    ignored, and so is ``sampler``. ``n_trials`` may be omitted (it is then the number
    of points, optimizers x lrs x seeds); if given it must equal it. A sweep runs every
    point to its last epoch, so ``pruner``, ``target``, ``objectives``, ``schedule`` and
    ``lookahead`` are refused (``confirm_seeds`` is for ``compare``; a sweep has
    ``seeds``). ``GET /v1/jobs/{id}/sensitivity`` reads the result.
    """

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    task: TaskSpec
    search_space: SearchSpace
    schedule: ScheduleSpace | None = None
    lookahead: LookaheadSpace | None = None
    shared: SharedSpace | None = None
    n_trials: Annotated[int, Field(strict=True, ge=1, le=MAX_TRIALS)]
    max_parallel: Annotated[int, Field(strict=True, ge=1, le=MAX_PARALLEL)] = 1
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    max_failed_trials: StrictNonNegativeInt | None = None
    timeout: Seconds | None = None
    trial_timeout: Seconds | None = None
    target: FiniteFloat | None = None
    objectives: Annotated[list[Objective], Field(min_length=2, max_length=4)] | None = None
    mode: Literal["tune", "compare", "sweep"] = "tune"
    confirm_seeds: Annotated[int, Field(strict=True, ge=0, le=MAX_CONFIRM_SEEDS)] = 0
    sweep: SweepSpec | None = None
    warm_start: WarmStart | None = None
    """Run past good configurations first (see ``api_schemas.warm_start``)."""

    @model_validator(mode="before")
    @classmethod
    def _sweep_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and "n_trials" not in data:
            size = _sweep_size(data)
            if size is not None:
                return {**data, "n_trials": size}
        return data

    @field_validator("max_parallel")
    @classmethod
    def _not_above_n_trials(cls, max_parallel: int, info: ValidationInfo) -> int:
        n_trials = info.data.get("n_trials")  # absent when n_trials itself failed
        if n_trials is not None and max_parallel > n_trials:
            raise PydanticCustomError(
                "max_parallel_above_n_trials",
                "max_parallel ({max_parallel}) must be less than or equal to n_trials ({n_trials})",
                {"max_parallel": max_parallel, "n_trials": n_trials},
            )
        return max_parallel

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Self:
        if is_stored(info.context):
            return self
        if self.mode == "sweep" and self.sweep is None:
            self.sweep = SweepSpec()  # stored explicitly: the default grid may change
        errors = _lookahead_errors(self) + _objective_errors(self) + _compare_errors(self)
        errors += _sweep_errors(self) + _shared_errors(self)
        errors += warm_start_conflicts(
            self.warm_start, mode=self.mode, sampler=self.sampler.name, n_trials=self.n_trials
        )
        if self.sampler.name == "grid" and self.mode != "sweep" and not errors:
            errors = _grid_errors(self)
        raise_errors("JobCreate", errors)
        return self

    def resolved_space(self) -> ResolvedSpace:
        """Every hyperparameter's space, the spec's defaults filled in (stored with the job).

        The grid sampler varies only what the job lists: there, unmentioned
        hyperparameters are fixed at their defaults instead of taking default priors.
        """
        if self.mode == "sweep":
            lrs = (self.sweep or SweepSpec()).lrs
            return sweep_space(self.search_space.optimizers, lrs)
        priors = self.sampler.name != "grid"
        resolved = self.search_space.resolve(priors)
        if self.lookahead is not None:
            resolved.optimizers = self.lookahead.wrap(resolved.optimizers, priors)
        if self.schedule is not None:
            resolved.schedules = self.schedule.resolve(priors)
        if self.shared is not None:
            resolved = self.shared.apply(resolved)
        return resolved


def _lookahead_errors(job: JobCreate) -> list[InitErrorDetails]:
    if job.lookahead is None:
        return []
    msg = "already wrapped: with 'lookahead' set, name the base optimizer only"
    return [
        field_error(("search_space", "optimizers", name), "already_wrapped", msg, name)
        for name in job.search_space.optimizers
        if WRAPPER_SEPARATOR in name
    ]


def _objective_errors(job: JobCreate) -> list[InitErrorDetails]:
    """Multi-objective rules: what Optuna cannot do with several objectives is a 422."""
    if job.objectives is None:
        if job.sampler.name == "nsga2":
            msg = "nsga2 needs several objectives: set 'objectives'"
            return [field_error(("sampler", "name"), "single_objective", msg, "nsga2")]
        return []
    errors = []
    if job.sampler.name not in MULTI_OBJECTIVE_SAMPLERS:
        msg = f"sampler {job.sampler.name!r} handles one objective only"
        errors.append(field_error(("sampler", "name"), "multi_objective", msg, job.sampler.name))
    if job.target is not None:
        msg = "target needs a single objective"
        errors.append(field_error(("target",), "multi_objective", msg, job.target))
    metrics = [o.metric for o in job.objectives]
    errors += [
        field_error(("objectives", i, "metric"), "duplicate_objective", f"{m!r} repeated", m)
        for i, m in enumerate(metrics)
        if m in metrics[:i]
    ]
    return errors


def _shared_errors(job: JobCreate) -> list[InitErrorDetails]:
    """A shared ``weight_decay`` is the only one: an optimizer's own is refused beside it.

    (Every base optimizer has a ``weight_decay`` on the same non-negative domain, which
    ``SharedSpace`` checks, so the shared value always reaches some optimizer.)
    """
    if job.shared is None or WEIGHT_DECAY not in job.shared.root:
        return []
    msg = "set once for every optimizer by shared.weight_decay: give it there only"
    return [
        field_error(("search_space", "optimizers", name, WEIGHT_DECAY), "shared_knob", msg, None)
        for name, overrides in job.search_space.optimizers.items()
        if WEIGHT_DECAY in overrides
    ]


def _sweep_errors(job: JobCreate) -> list[InitErrorDetails]:
    if job.mode != "sweep":
        if job.sweep is not None:
            msg = "sweep needs mode 'sweep'"
            return [field_error(("sweep",), "sweep_only", msg, None)]
        return []
    sweep = job.sweep or SweepSpec()
    errors = [
        field_error(
            ("search_space", "optimizers", name),
            "no_learning_rate",
            f"optimizer {name!r} has no {SWEEP_HP!r} to sweep",
            name,
        )
        for name in job.search_space.optimizers
        if SWEEP_HP not in lookup_optimizer(name).hparams
    ]
    size = len(job.search_space.optimizers) * len(sweep.lrs) * sweep.seeds
    if job.n_trials != size:
        msg = (
            f"n_trials ({job.n_trials}) must equal the sweep's {size} points "
            "(optimizers x lrs x seeds), or be omitted"
        )
        errors.append(field_error(("n_trials",), "sweep_budget", msg, job.n_trials))
    for field, bad in (
        ("pruner", job.pruner.name != "none"),
        ("target", job.target is not None),
        ("objectives", job.objectives is not None),
        ("schedule", job.schedule is not None),
        ("lookahead", job.lookahead is not None),
        ("shared", job.shared is not None),
    ):
        if bad:
            msg = f"mode 'sweep' does not combine with this {field}"
            errors.append(field_error((field,), "sweep_conflict", msg, None))
    return errors


def _compare_errors(job: JobCreate) -> list[InitErrorDetails]:
    if job.mode != "compare":
        if job.confirm_seeds:
            msg = "confirm_seeds needs mode 'compare'"
            return [field_error(("confirm_seeds",), "compare_only", msg, job.confirm_seeds)]
        return []
    errors = []
    k = len(job.search_space.optimizers)
    if job.n_trials % k:
        msg = f"n_trials ({job.n_trials}) must be a multiple of the {k} optimizers compared"
        errors.append(field_error(("n_trials",), "compare_budget", msg, job.n_trials))
    for field, bad in (
        ("objectives", job.objectives is not None),
        ("sampler", job.sampler.name == "grid"),
    ):
        if bad:
            msg = f"mode 'compare' does not combine with this {field}"
            errors.append(field_error((field,), "compare_conflict", msg, None))
    return errors


def _grid_errors(job: JobCreate) -> list[InitErrorDetails]:
    """A grid is made of listed values: ranges are refused, and the budget must fit it."""
    groups: list[tuple[tuple[str, ...], Mapping[str, Mapping[str, Any]]]] = [
        (("search_space", "optimizers"), job.search_space.optimizers)
    ]
    if job.schedule is not None:
        groups.append((("schedule",), job.schedule.root))
    if job.lookahead is not None:
        groups.append(((), {"lookahead": job.lookahead.root}))
    if job.shared is not None:
        groups.append(((), {"shared": job.shared.root}))
    msg = "the grid sampler takes categorical or fixed spaces: list the values to try"
    errors = [
        field_error((*loc, owner, hp, space.type), "grid_range", msg, space.type)
        for loc, owners in groups
        for owner, spaces in owners.items()
        for hp, space in spaces.items()
        if isinstance(space, FloatParam | IntParam)
    ]
    if not errors and job.n_trials > (size := grid_size(job.resolved_space())):
        msg = f"n_trials ({job.n_trials}) exceeds the grid's {size} points"
        errors.append(field_error(("n_trials",), "grid_too_small", msg, job.n_trials))
    return errors


class JobUpdate(BaseModel):
    """``PATCH /v1/jobs/{id}``: only the budget of a job that has not ended can change.

    ``n_trials`` may only grow (new slots are queued) and ``max_parallel`` may change.
    Other fields of the job are accepted here so that the service can answer 409
    naming them (they are immutable once trials have been sampled from them) rather
    than a generic "extra field" 422.
    """

    model_config = ConfigDict(extra="allow")

    n_trials: Annotated[int, Field(strict=True, ge=1, le=MAX_TRIALS)] | None = None
    max_parallel: Annotated[int, Field(strict=True, ge=1, le=MAX_PARALLEL)] | None = None

    def other_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


# -- responses --------------------------------------------------------------------------
JobStatus: TypeAlias = Literal["queued", "running", "completed", "failed", "cancelled"]


class BestRead(Schema):
    """The best finished trial so far (``value`` follows the N2 rule, see ``trials``)."""

    value: float | None
    value_kind: ValueKind | None = None
    trial: int
    optimizer: str
    params: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _n2(self) -> Self:
        encode_value_fields(self)
        return self


class JobRead(Schema):
    """A job: its spec as accepted, the resolved space the tuner samples, and progress.

    ``n_finished`` counts COMPLETE and PRUNED trials (a FAIL does not use up the budget).
    """

    id: JobId
    name: str | None
    status: JobStatus
    spec: JobCreate
    resolved_space: ResolvedSpace
    counts: dict[TrialState, int] = Field(default_factory=dict)
    n_finished: int = 0
    best: BestRead | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    event_seq: int = 0
    """The job's last event so far: a client that has read the job, its trials and its
    curves follows ``GET /v1/jobs/{id}/events`` from here (``Last-Event-ID``) instead of
    replaying the whole history."""


class ParetoTrial(Schema):
    """A non-dominated trial: its value for each objective (N2 rule: null if not finite)."""

    trial: int
    optimizer: str
    values: dict[str, float | None]
    params: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class ParetoRead(Schema):
    """``GET /v1/jobs/{id}/pareto``: the completed trials no other completed trial dominates.

    A single-objective job has the same answer shape: its front is its best trial(s).
    """

    objectives: list[Objective]
    trials: list[ParetoTrial]


class ExpectedBest(Schema):
    """The expected best value after ``k`` tuning trials, and a 90% interval around it.

    Computed from the optimizer's COMPLETE tuning trials as the best of ``k`` of them
    drawn with replacement (bootstrap, computed exactly: see ``service.jobs.comparison``).
    Null when the optimizer has no completed trial with a finite value.
    """

    k: int
    mean: float | None
    low: float | None
    high: float | None


class TimeToTarget(Schema):
    """Tuning trials (in trial order) and their summed training wall time (seconds) until
    one completed at least as well as ``target``; null when none did or without a target."""

    target: float | None
    trials: int | None
    seconds: float | None


class OptimizerComparison(Schema):
    """One optimizer of a ``compare`` job: its tuning trials and its confirmation reruns.

    Values follow the N2 rule (null when not finite). ``expected_best`` has one entry
    per ``k = 1 .. budget_per_optimizer``; ``time_to_target`` uses the job's ``target``,
    or the endpoint's ``?target=`` when the job has none.
    """

    optimizer: str
    finished: int
    failed: int
    best_trial: int | None = None
    best_value: float | None = None
    best_hyperparameters: dict[str, Any] = Field(default_factory=dict)
    confirmations: list[float | None] = Field(default_factory=list)
    confirmation_mean: float | None = None
    confirmation_std: float | None = None
    expected_best: list[ExpectedBest] = Field(default_factory=list)
    time_to_target: TimeToTarget = Field(
        default_factory=lambda: TimeToTarget(target=None, trials=None, seconds=None)
    )


class ComparisonRead(Schema):
    """``GET /v1/jobs/{id}/comparison``: optimizers ranked best first.

    Ranked by the mean of the confirmation reruns when there are any, else by the best
    tuning value; an optimizer without a completed trial comes last.
    """

    metric: str
    direction: Literal["minimize", "maximize"]
    budget_per_optimizer: int
    confirm_seeds: int
    optimizers: list[OptimizerComparison]


class SensitivityPoint(Schema):
    """One learning rate of one optimizer: the final metric of each seed, and their mean.

    ``values`` has one entry per seed index, null while that run has not completed (or
    failed, or its value is not finite); ``mean`` is over the finite ones.
    """

    lr: float
    values: list[float | None]
    mean: float | None


class OptimizerSensitivity(Schema):
    optimizer: str
    points: list[SensitivityPoint]


class SensitivityRead(Schema):
    """``GET /v1/jobs/{id}/sensitivity``: final metric against learning rate, per optimizer
    (optimizers by name, learning rates ascending)."""

    metric: str
    direction: Literal["minimize", "maximize"]
    seeds: int
    optimizers: list[OptimizerSensitivity]


JobList = Page[JobRead]
JobCancelRead = JobRead

__all__ = [
    "PRUNER_OPTIONS",
    "SAMPLER_OPTIONS",
    "BestRead",
    "ComparisonRead",
    "CurvePoint",
    "CurveRead",
    "DatasetRef",
    "ExpectedBest",
    "JobCancelRead",
    "JobCreate",
    "JobList",
    "JobRead",
    "JobStatus",
    "JobUpdate",
    "ModelRef",
    "Objective",
    "OptimizerComparison",
    "OptimizerSensitivity",
    "ParetoRead",
    "ParetoTrial",
    "PrunerName",
    "PrunerSpec",
    "SamplerName",
    "SamplerSpec",
    "SensitivityPoint",
    "SensitivityRead",
    "SweepSpec",
    "TaskSpec",
    "TimeToTarget",
    "TrialList",
    "TrialRead",
    "TrialState",
    "encode_float",
]
