"""``warm_start`` on ``POST /v1/jobs``: begin a job with configurations that did well before.

The request part (``WarmStart``) says where the configurations come from; the service
resolves it at submit time into ``ResolvedWarmStart``, stored in the job's resolved
space, so that the worker enqueues exactly what the API returned and a later change in
the history (a new finished job) never changes what an accepted job runs.

* ``from``: ``"similar"`` (the recommender's most similar finished tasks of this tenant,
  plus shared ones) or a non-empty list of job ids to learn from.
* ``k``: how many configurations become the job's first trials (1..50, at most
  ``n_trials``).
* ``method``: ``nearest`` (the configurations of the most similar tasks) or
  ``portfolio`` (a set chosen to cover the past tasks).
* ``narrow``: also shrink each float and int range to the smallest box containing the
  past optima, widened by a margin (Perrone et al., NeurIPS 2019).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import ConfigDict, Field, PlainSerializer, PlainValidator, StrictBool
from pydantic_core import InitErrorDetails, PydanticCustomError

from api_schemas.common import FiniteFloat, Schema, field_error, raise_errors

MAX_WARM_K = 50
MAX_WARM_JOBS = 100
SIMILAR: Literal["similar"] = "similar"

# How past trials are ranked, for recommendations and warm starts alike (defined here,
# below the recommendations module in the import order).
Method: TypeAlias = Literal["nearest", "portfolio"]


def _as_uuid(item: Any) -> uuid.UUID | None:
    if isinstance(item, uuid.UUID):
        return item
    if not isinstance(item, str):
        return None
    try:
        return uuid.UUID(item)
    except ValueError:
        return None


def _source(value: Any) -> Literal["similar"] | list[uuid.UUID]:
    """``"similar"`` or a list of job ids, each error at its own index of the list.

    One validator rather than a union: a union reports one error per member, with the
    member's name in ``loc``, where a client wants ``warm_start.from[2]``.
    """
    if value == SIMILAR:
        return SIMILAR
    if not isinstance(value, list):
        raise PydanticCustomError(
            "warm_start_from", "Input should be 'similar' or a non-empty list of job ids"
        )
    if not value:
        raise PydanticCustomError("too_short", "List should have at least 1 job id")
    if len(value) > MAX_WARM_JOBS:
        raise PydanticCustomError(
            "too_long", "List should have at most {max} job ids", {"max": MAX_WARM_JOBS}
        )
    ids: list[uuid.UUID] = []
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(value):
        job_id = _as_uuid(item)
        if job_id is None:
            errors.append(field_error((i,), "uuid_parsing", "Input should be a job id", item))
        elif job_id in ids:
            errors.append(field_error((i,), "duplicate_job", f"job {job_id} repeated", item))
        else:
            ids.append(job_id)
    raise_errors("WarmStart", errors)
    return ids


def _dump_source(value: Literal["similar"] | list[uuid.UUID]) -> str | list[str]:
    # pydantic's union serializer warns on a list of UUIDs here: spell it out
    return value if isinstance(value, str) else [str(job_id) for job_id in value]


WarmFrom: TypeAlias = Annotated[
    Literal["similar"] | list[uuid.UUID],
    PlainValidator(_source, json_schema_input_type=Literal["similar"] | list[uuid.UUID]),
    PlainSerializer(_dump_source, return_type=str | list[str], when_used="json"),
]


class WarmStart(Schema):
    """``"warm_start": {"from": "similar" | [job ids], "k": 5, "method", "narrow"}``.

    The first ``k`` slots of the job run the recommended configurations (Optuna's
    ``enqueue_trial``); the sampler takes over after them. A job id in ``from`` must be
    one of the caller's jobs or a shared one (otherwise a 422 naming ``from[i]``).
    """

    model_config = ConfigDict(
        extra="forbid", validate_by_alias=True, validate_by_name=True, serialize_by_alias=True
    )

    from_: WarmFrom = Field(alias="from")
    k: Annotated[int, Field(strict=True, ge=1, le=MAX_WARM_K)] = 5
    method: Method = "nearest"
    narrow: StrictBool = False


def warm_start_conflicts(
    warm_start: WarmStart | None, *, mode: str, sampler: str, n_trials: int
) -> list[InitErrorDetails]:
    """What a job with ``warm_start`` cannot be: its errors, each naming the field.

    ``compare`` and ``sweep`` jobs pin each slot's optimizer (or point) and the grid
    sampler walks a fixed grid, so an enqueued configuration has no slot to run in.
    """
    if warm_start is None:
        return []
    errors = []
    for bad, what in (
        (mode in ("compare", "sweep"), f"mode {mode!r}"),
        (sampler == "grid", "the grid sampler"),
    ):
        if bad:
            msg = f"warm_start does not combine with {what}"
            errors.append(field_error(("warm_start",), "warm_start_conflict", msg, None))
    if warm_start.k > n_trials:
        msg = f"k ({warm_start.k}) must be less than or equal to n_trials ({n_trials})"
        errors.append(field_error(("warm_start", "k"), "warm_start_k", msg, warm_start.k))
    return errors


# -- what the service resolved (stored in the job's resolved space) --------------------
class WarmSource(Schema):
    """Where a warm configuration came from: a past job's trial, and how similar its task was."""

    kind: Literal["warm_start"] = "warm_start"
    job_id: uuid.UUID
    trial: int
    similarity: FiniteFloat


class WarmConfiguration(Schema):
    """One configuration the job runs first, by Optuna parameter name.

    ``adjusted`` names the parameters clipped into this job's ranges or left out (not
    in its space, or a choice it does not offer: those are sampled as usual).
    """

    params: dict[str, Any]
    source: WarmSource
    adjusted: list[str] = Field(default_factory=list)


class NarrowedRange(Schema):
    """A range ``narrow`` shrank: the box now sampled, and the range before it."""

    low: float
    high: float
    original_low: float
    original_high: float


class ResolvedWarmStart(Schema):
    """``resolved_space.warm_start``: slot ``i < len(configurations)`` runs configuration ``i``.

    ``narrowed`` maps each shrunk parameter (Optuna name) to its box; the optimizers'
    spaces in the resolved space already hold the narrowed ranges.
    """

    configurations: list[WarmConfiguration] = Field(default_factory=list)
    narrowed: dict[str, NarrowedRange] = Field(default_factory=dict)


__all__ = [
    "MAX_WARM_K",
    "SIMILAR",
    "Method",
    "NarrowedRange",
    "ResolvedWarmStart",
    "WarmConfiguration",
    "WarmSource",
    "WarmStart",
    "warm_start_conflicts",
]
