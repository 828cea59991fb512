"""Shared building blocks: the base model, strict scalars, pagination and the error envelope.

Every request model forbids unknown fields (a misspelt ``"optimzer"`` is a 422 naming it,
not a silently ignored key), every count is a strict int (lax mode would read ``true`` as
1 and ``"10"`` as 10) and every float is finite (pydantic accepts ``NaN`` and
``Infinity`` from JSON by default).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticKnownError


class Schema(BaseModel):
    """Base of every request and response model: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


# -- scalars ----------------------------------------------------------------------------
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
"""A JSON number (ints accepted); strings, booleans, NaN and +-Infinity are rejected."""

StrictPositiveInt = Annotated[int, Strict(), Field(ge=1)]
StrictNonNegativeInt = Annotated[int, Strict(), Field(ge=0)]

MAX_STRING_VALUE = 256  # longest string accepted as a scalar value (choices, fixed values)


def _scalar(value: Any, *, nullable: bool) -> bool | int | float | str | None:
    # One validator instead of a union: a union of bool|int|float|str reports one error per
    # member with the member name in ``loc``, which is noise for a client.
    if value is None:
        if nullable:
            return None
    elif isinstance(value, bool | int):
        return value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticKnownError("finite_number")
        return value
    elif isinstance(value, str):
        if len(value) > MAX_STRING_VALUE:
            raise PydanticKnownError("string_too_long", {"max_length": MAX_STRING_VALUE})
        return value
    expected = "a number, a boolean, a string" + (" or null" if nullable else "")
    raise PydanticCustomError("scalar_type", "Input should be {expected}", {"expected": expected})


def _scalar_not_null(value: Any) -> bool | int | float | str:
    out = _scalar(value, nullable=False)
    assert out is not None
    return out


def _scalar_or_null(value: Any) -> bool | int | float | str | None:
    return _scalar(value, nullable=True)


ScalarValue: TypeAlias = Annotated[
    bool | int | float | str,
    PlainValidator(_scalar_not_null, json_schema_input_type=bool | int | float | str),
]
"""A JSON scalar: boolean, integer, finite number or string (at most 256 characters)."""

NullableScalarValue: TypeAlias = Annotated[
    bool | int | float | str | None,
    PlainValidator(_scalar_or_null, json_schema_input_type=bool | int | float | str | None),
]
"""A JSON scalar or ``null``."""

ScalarParams: TypeAlias = Annotated[dict[str, ScalarValue], Field(max_length=64)]
"""Keyword parameters passed on as data (model sizes, loader settings, sampler options)."""


# -- identifiers ------------------------------------------------------------------------
JobId: TypeAlias = uuid.UUID
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
"""Catalogue keys: lowercase identifiers, never an import path or code."""


# -- non-finite floats in responses (RELIABILITY N2) -------------------------------------
ValueKind: TypeAlias = Literal["finite", "inf", "-inf", "nan"]


def encode_float(x: float | None) -> tuple[float | None, ValueKind | None]:
    """JSON has no inf/nan: a response carries ``value: null`` and says which it was.

    ``None`` (no value yet) gives ``(None, None)``; a finite ``x`` gives ``(x, "finite")``;
    ``inf``/``-inf``/``nan`` give ``(None, "inf" | "-inf" | "nan")``.
    """
    if x is None:
        return None, None
    if math.isnan(x):
        return None, "nan"
    if math.isinf(x):
        return None, "inf" if x > 0 else "-inf"
    return x, "finite"


def decode_float(value: float | None, kind: ValueKind | None) -> float | None:
    """The inverse of ``encode_float``, for clients."""
    if kind is None or kind == "finite":
        return value
    return {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}[kind]


# -- pagination ---------------------------------------------------------------------------
T = TypeVar("T")

MAX_PAGE_LIMIT = 200


class Page(Schema, Generic[T]):
    """One page of a listing; ``total`` counts every row the caller may read."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(Schema):
    """Query parameters of a listing."""

    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_LIMIT)] = 50
    offset: Annotated[int, Field(ge=0)] = 0


# -- error envelope -------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    """One error, in the shape of FastAPI's 422 items so that clients parse one format.

    Extra keys (FastAPI adds ``input``, ``ctx``, ``url``) are ignored rather than refused,
    so a client can parse any optserve error body with this model.
    """

    model_config = ConfigDict(extra="ignore")

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`` for every 4xx."""

    model_config = ConfigDict(extra="ignore")

    detail: list[ErrorDetail]

    @classmethod
    def single(cls, msg: str, type: str, loc: Sequence[str | int] = ()) -> ErrorBody:
        return cls(detail=[ErrorDetail(loc=list(loc), msg=msg, type=type)])

    @classmethod
    def from_errors(cls, errors: Iterable[Mapping[str, Any]]) -> ErrorBody:
        """The envelope of pydantic/FastAPI errors, keeping ``loc``, ``msg`` and ``type``.

        Use it in the 422 handler: FastAPI's default one echoes each ``input``, and a
        rejected ``NaN`` echoed into ``json.dumps(allow_nan=False)`` turns the 422 into a
        500 (it also sends oversized inputs back to the client).
        """
        return cls(
            detail=[
                ErrorDetail(loc=list(e["loc"]), msg=str(e["msg"]), type=str(e["type"]))
                for e in errors
            ]
        )


class HealthRead(Schema):
    status: Literal["ok", "degraded"]
    database: bool
    broker: bool
    version: str


# -- raising errors at a chosen ``loc`` ----------------------------------------------------
def field_error(
    loc: Sequence[str | int], type: str, msg: str, value: Any, **ctx: Any
) -> InitErrorDetails:
    """An error located below the model that is being validated.

    A ``model_validator`` can only put a ``ValueError`` on the model itself; raising a
    ``ValidationError`` built from these details instead puts each at its own ``loc``
    (pydantic re-bases it on the model's location), so that a cross-field rule can name
    the field that is wrong.
    """
    # ``msg`` is passed as context, never as the template: it may contain braces.
    error = PydanticCustomError(type, "{message}", {"message": msg, **ctx})
    return InitErrorDetails(type=error, loc=tuple(loc), input=value)


def raise_errors(title: str, errors: Iterable[InitErrorDetails]) -> None:
    """Raise every collected error at once (a client fixes them in one round trip)."""
    collected = list(errors)
    if collected:
        raise ValidationError.from_exception_data(title, collected)


STORED_CONTEXT: dict[str, Any] = {"optserve_stored": True}
"""Validation context for specs read back from the database.

Registry checks (optimizer, schedule and hyperparameter names and domains) are skipped
under it, so that a job accepted before a registry change still reads back instead of
failing with a 500: ``JobCreate.model_validate(row.spec, context=STORED_CONTEXT)``.
Shape rules (types, Optuna's range rules) still apply.
"""


def is_stored(context: Any) -> bool:
    return isinstance(context, dict) and bool(context.get("optserve_stored"))
