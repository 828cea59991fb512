"""``GET /v1/optimizers`` and ``GET /v1/schedules``, generated from the registry.

Nothing here is written by hand per optimizer: every name, default, domain and default
prior is read from ``optimizers.registry``, the same specs that validate job bodies and
that the optimizer classes enforce, so the three can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Self

from pydantic import Field

from api_schemas.common import NullableScalarValue, Schema
from api_schemas.search_space import ParamSpace, lookup_optimizer, param_from_space
from optimizers._spec import DomainKind, HParam, OptimizerSpec, ScheduleSpec, Space
from optimizers.registry import SCHEDULES, WRAPPER_SEPARATOR, list_specs


class HyperparameterRead(Schema):
    """One hyperparameter: what the constructor accepts and where the tuner looks by default.

    ``low``/``high`` (with ``low_open``/``high_open``) bound numeric domains; ``choices``
    lists a boolean's or a choice's values; ``domain`` says the same in one sentence.
    """

    name: str
    type: DomainKind
    default: NullableScalarValue
    domain: str
    choices: list[NullableScalarValue] | None = None
    low: int | float | None = None
    high: int | float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    search: ParamSpace | None = None
    doc: str = ""

    @classmethod
    def from_hparam(cls, name: str, hp: HParam) -> Self:
        d = hp.domain
        return cls(
            name=name,
            type=d.kind,
            default=hp.default,
            domain=d.describe(),
            choices=list(d.choices) if d.kind in ("bool", "choice") else None,
            low=d.low,
            high=d.high,
            low_open=d.low_open,
            high_open=d.high_open,
            nullable=d.nullable,
            search=param_from_space(hp.search) if hp.search is not None else None,
            doc=hp.doc,
        )


def _hparams(hparams: Mapping[str, HParam]) -> list[HyperparameterRead]:
    return [HyperparameterRead.from_hparam(n, hp) for n, hp in hparams.items()]


def _default_space(space: Mapping[str, Space]) -> dict[str, ParamSpace]:
    return {n: param_from_space(s) for n, s in space.items()}


class OptimizerRead(Schema):
    """An optimizer a job may name. ``packs``: constructor tuples split into scalars
    (``{"betas": ["beta1", "beta2"]}``); the API takes the scalars."""

    name: str
    kind: Literal["base", "wrapper"]
    description: str
    reference: str
    hyperparameters: list[HyperparameterRead]
    default_search_space: dict[str, ParamSpace]
    packs: dict[str, list[str]] = Field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: OptimizerSpec) -> OptimizerRead:
        return cls(
            name=spec.name,
            kind=spec.kind,
            description=spec.description,
            reference=spec.reference,
            hyperparameters=_hparams(spec.hparams),
            default_search_space=_default_space(spec.search_space()),
            packs={k: list(v) for k, v in spec.packs.items()},
        )


class ScheduleRead(Schema):
    """A learning-rate schedule a job may name under ``schedule``."""

    name: str
    description: str
    reference: str
    hyperparameters: list[HyperparameterRead]
    default_search_space: dict[str, ParamSpace]

    @classmethod
    def from_spec(cls, spec: ScheduleSpec) -> ScheduleRead:
        return cls(
            name=spec.name,
            description=spec.description,
            reference=spec.reference,
            hyperparameters=_hparams(spec.hparams),
            default_search_space=_default_space(spec.search_space()),
        )


def list_optimizer_reads(include_composed: bool = False) -> list[OptimizerRead]:
    """Every registered optimizer, in registry order; wrappers are listed on their own
    (they are named in a job only composed). ``include_composed`` appends every
    ``"<wrapper>+<base>"`` pair, with the wrapper's hyperparameters prefixed."""
    specs = list_specs()
    reads = [OptimizerRead.from_spec(s) for s in specs]
    if include_composed:
        bases = [s for s in specs if s.kind == "base"]
        for wrapper in (s for s in specs if s.kind == "wrapper"):
            reads += [
                OptimizerRead.from_spec(
                    lookup_optimizer(f"{wrapper.name}{WRAPPER_SEPARATOR}{b.name}")
                )
                for b in bases
            ]
    return reads


def get_optimizer_read(name: str) -> OptimizerRead:
    """One optimizer (composed names included); ``KeyError`` naming the valid ones."""
    return OptimizerRead.from_spec(lookup_optimizer(name))


def list_schedule_reads() -> list[ScheduleRead]:
    return [ScheduleRead.from_spec(s) for s in SCHEDULES.values()]


__all__ = [
    "HyperparameterRead",
    "OptimizerRead",
    "ScheduleRead",
    "get_optimizer_read",
    "list_optimizer_reads",
    "list_schedule_reads",
]
