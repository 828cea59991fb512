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

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from api_schemas.common import (
    NAME_PATTERN,
    JobId,
    Page,
    ScalarParams,
    Schema,
    StrictNonNegativeInt,
    ValueKind,
    encode_float,
    field_error,
    raise_errors,
)
from api_schemas.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_PARALLEL, MAX_TRIALS
from api_schemas.search_space import ResolvedSpace, ScheduleSpace, SearchSpace
from api_schemas.trials import (
    CurvePoint,
    CurveRead,
    TrialList,
    TrialRead,
    TrialState,
    encode_value_fields,
)

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


# -- sampler and pruner options --------------------------------------------------------------
# Options become keyword arguments of Optuna's constructors in the worker
# (workers/samplers.py): an unknown or ill-typed one is refused here rather than
# failing every trial there.
_Check: TypeAlias = Callable[[Any], bool]


def _is_int(minimum: int) -> tuple[_Check, str]:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
        f"an integer >= {minimum}",
    )


_IS_BOOL: tuple[_Check, str] = (lambda v: isinstance(v, bool), "true or false")
_IS_POSITIVE: tuple[_Check, str] = (
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
    "a number > 0",
)

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
}
PRUNER_OPTIONS: Mapping[str, Mapping[str, tuple[_Check, str]]] = {
    "none": {},
    "median": {
        "n_startup_trials": _is_int(0),
        "n_warmup_steps": _is_int(0),
        "interval_steps": _is_int(1),
        "n_min_trials": _is_int(1),
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
    """Optuna sampler; ``tpe`` runs multivariate, grouped, with the constant liar."""

    name: Literal["tpe", "random"] = "tpe"
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


class PrunerSpec(Schema):
    name: Literal["none", "median"] = "none"
    options: ScalarParams = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_options(self) -> Self:
        raise_errors(
            "PrunerSpec",
            _option_errors("pruner", self.name, self.options, PRUNER_OPTIONS[self.name]),
        )
        return self


class JobCreate(Schema):
    """``POST /v1/jobs``: tune ``n_trials`` trials of ``task`` over ``search_space``."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    task: TaskSpec
    search_space: SearchSpace
    schedule: ScheduleSpace | None = None
    n_trials: Annotated[int, Field(strict=True, ge=1, le=MAX_TRIALS)]
    max_parallel: Annotated[int, Field(strict=True, ge=1, le=MAX_PARALLEL)] = 1
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    max_failed_trials: StrictNonNegativeInt | None = None

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

    def resolved_space(self) -> ResolvedSpace:
        """Every hyperparameter's space, the spec's defaults filled in (stored with the job)."""
        resolved = self.search_space.resolve()
        if self.schedule is not None:
            resolved.schedules = self.schedule.resolve()
        return resolved


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


JobList = Page[JobRead]
JobCancelRead = JobRead

__all__ = [
    "PRUNER_OPTIONS",
    "SAMPLER_OPTIONS",
    "BestRead",
    "CurvePoint",
    "CurveRead",
    "DatasetRef",
    "JobCancelRead",
    "JobCreate",
    "JobList",
    "JobRead",
    "JobStatus",
    "ModelRef",
    "PrunerSpec",
    "SamplerSpec",
    "TaskSpec",
    "TrialList",
    "TrialRead",
    "TrialState",
    "encode_float",
]
