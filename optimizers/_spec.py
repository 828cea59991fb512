"""Spec types: what an optimizer accepts, and where a tuner should look.

This module imports neither torch nor optuna, so the API process can validate a job
against the same rules the optimizer classes enforce without paying for torch.

Three notions are kept apart, as in timm's ``OptimInfo`` and torch's ``OptimizerInfo``:

* ``Domain``: every value the constructor accepts (mirrors the ``__init__`` checks);
* ``Space``: the default *search* prior, always a subset of the domain;
* ``HParam``: one scalar hyperparameter, with its default, domain and prior.

Tuple arguments of the torch constructors (``betas``) are exposed as scalars
(``beta1``, ``beta2`` ...) so that each can get its own prior, and packed back by
``OptimizerSpec.packs`` when the optimizer is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Scalar: TypeAlias = float | int | bool | str
DomainKind = Literal["float", "int", "bool", "choice"]


@dataclass(frozen=True)
class Domain:
    """The set of values a hyperparameter may take (``None`` allowed when ``nullable``)."""

    kind: DomainKind
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Scalar, ...] = ()
    nullable: bool = False

    # -- constructors -------------------------------------------------------------------
    @staticmethod
    def nonnegative() -> Domain:
        return Domain("float", low=0.0)

    @staticmethod
    def positive() -> Domain:
        return Domain("float", low=0.0, low_open=True)

    @staticmethod
    def unit(*, low_open: bool = False, high_open: bool = True) -> Domain:
        """A subset of [0, 1]; the default [0, 1) is the rule for EMA coefficients."""
        return Domain("float", low=0.0, high=1.0, low_open=low_open, high_open=high_open)

    @staticmethod
    def interval(
        low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False
    ) -> Domain:
        return Domain("float", low=low, high=high, low_open=low_open, high_open=high_open)

    @staticmethod
    def integer(low: int, high: int | None = None, *, nullable: bool = False) -> Domain:
        return Domain("int", low=low, high=high, nullable=nullable)

    @staticmethod
    def boolean() -> Domain:
        return Domain("bool", choices=(False, True))

    @staticmethod
    def one_of(*choices: Scalar) -> Domain:
        return Domain("choice", choices=tuple(choices))

    def or_none(self) -> Domain:
        return Domain(
            self.kind, self.low, self.high, self.low_open, self.high_open, self.choices, True
        )

    # -- checks -------------------------------------------------------------------------
    def describe(self) -> str:
        """A human sentence for error messages, e.g. ``a number in [0, 1)``."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            lo = "-inf" if self.low is None else _fmt(self.low)
            hi = "inf" if self.high is None else _fmt(self.high)
            left = "(" if self.low_open or self.low is None else "["
            right = ")" if self.high_open or self.high is None else "]"
            text = f"{noun} in {left}{lo}, {hi}{right}"
        return text + (" or null" if self.nullable else "")

    def contains(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        x = float(value)
        if not math.isfinite(x):
            return False
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return not (
            self.high is not None and (x > self.high or (self.high_open and x == self.high))
        )

    def check(self, name: str, value: object) -> None:
        """Raise the torch-style ``ValueError`` that names the hyperparameter."""
        if not self.contains(value):
            raise ValueError(f"Invalid {name} value: {value!r} (must be {self.describe()})")

    def invalid_examples(self) -> list[object]:
        """Values just outside the domain: the conformance suite's error inputs."""
        out: list[object] = []
        if self.kind in ("float", "int"):
            step = 1 if self.kind == "int" else 1e-3
            if self.low is not None:
                out.append(self.low if self.low_open else self.low - step)
            if self.high is not None:
                out.append(self.high if self.high_open else self.high + step)
            if self.kind == "float":
                out.append(math.nan)
        elif self.kind == "choice":
            out.append("__not_a_choice__")
        else:  # bool: a truthy string or a 1 is not a flag
            out.extend(["yes", 1])
        return out


@dataclass(frozen=True)
class FloatSpace:
    """Uniform (or log-uniform) over [low, high].

    ``one_minus`` puts the prior on ``1 - x`` instead of ``x``: the convention for EMA
    coefficients, where 0.99 and 0.999 are as different as 0.9 and 0.99. The tuner
    then samples ``1 - x`` (log-uniform in ``[1 - high, 1 - low]``) under the name
    ``one_minus_<name>`` so the stored trial parameter is never mislabelled.
    """

    low: float
    high: float
    log: bool = False
    step: float | None = None
    one_minus: bool = False
    type: Literal["float"] = "float"


@dataclass(frozen=True)
class IntSpace:
    low: int
    high: int
    log: bool = False
    step: int = 1
    type: Literal["int"] = "int"


@dataclass(frozen=True)
class CategoricalSpace:
    choices: tuple[Scalar, ...]
    type: Literal["categorical"] = "categorical"


Space: TypeAlias = FloatSpace | IntSpace | CategoricalSpace


@dataclass(frozen=True)
class HParam:
    """One scalar hyperparameter.

    ``search`` is the default prior a job gets when it names the optimizer without
    ranges; ``None`` means the hyperparameter stays at ``default`` unless the user
    gives it a range.
    """

    default: Scalar | None
    domain: Domain
    search: Space | None = None
    doc: str = ""


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the service needs to know about an optimizer, without importing it.

    Attributes:
        name: registry key (lowercase).
        cls_path: ``"module:Class"``; imported only when the optimizer is built.
        hparams: scalar hyperparameters by name.
        packs: constructor arguments that are tuples of scalars, e.g.
            ``{"betas": ("beta1", "beta2")}``.
        kind: ``"wrapper"`` optimizers wrap another optimizer (Lookahead).
        total_steps_hparams: hyperparameters that default to the run's planned number
            of steps when the caller knows it (AdEMAMix's warm-ups).
        fast_path: the class has a fused/multi-tensor path besides its reference one.
        bf16: bf16 parameters are supported.
    """

    name: str
    cls_path: str
    hparams: Mapping[str, HParam]
    packs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kind: Literal["base", "wrapper"] = "base"
    total_steps_hparams: tuple[str, ...] = ()
    fast_path: bool = False
    bf16: bool = True
    description: str = ""
    reference: str = ""

    def defaults(self) -> dict[str, Scalar | None]:
        return {name: hp.default for name, hp in self.hparams.items()}

    def search_space(self) -> dict[str, Space]:
        """The default search space: every hyperparameter that has a prior."""
        return {n: hp.search for n, hp in self.hparams.items() if hp.search is not None}

    def unpack(self, values: Mapping[str, object]) -> dict[str, object]:
        """Split packed constructor arguments (``betas=(..)``) into their scalars."""
        out: dict[str, object] = {}
        for key, value in values.items():
            if key in self.packs:
                names = self.packs[key]
                if not isinstance(value, list | tuple) or len(value) != len(names):
                    raise ValueError(
                        f"Invalid {key} value: {value!r} (must be a sequence of {len(names)})"
                    )
                out.update(zip(names, value, strict=True))
            else:
                out[key] = value
        return out

    def resolve(
        self, values: Mapping[str, object], *, total_steps: int | None = None
    ) -> dict[str, object]:
        """Defaults filled, every value checked, tuples packed: constructor kwargs.

        Raises ``ValueError`` naming the hyperparameter for an unknown name or a value
        outside its domain, the same error the worker treats as non-retryable.
        """
        scalars = self.unpack(values)
        unknown = sorted(set(scalars) - set(self.hparams))
        if unknown:
            raise ValueError(
                f"Unknown hyperparameter {unknown[0]!r} for optimizer {self.name!r}; "
                f"expected one of {sorted(self.hparams)}"
            )
        merged: dict[str, object] = {**self.defaults(), **scalars}
        if total_steps is not None:
            for name in self.total_steps_hparams:
                if merged.get(name) is None:
                    merged[name] = total_steps
        for name, value in merged.items():
            self.hparams[name].domain.check(name, value)
        packed_names = {n for names in self.packs.values() for n in names}
        kwargs = {k: v for k, v in merged.items() if k not in packed_names}
        for key, names in self.packs.items():
            kwargs[key] = tuple(merged[n] for n in names)
        return kwargs


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule: a multiplier of the base LR over the run's steps."""

    name: str
    fn_path: str
    hparams: Mapping[str, HParam]
    description: str = ""
    reference: str = ""

    def defaults(self) -> dict[str, Scalar | None]:
        return {name: hp.default for name, hp in self.hparams.items()}

    def search_space(self) -> dict[str, Space]:
        return {n: hp.search for n, hp in self.hparams.items() if hp.search is not None}

    def resolve(self, values: Mapping[str, object]) -> dict[str, object]:
        unknown = sorted(set(values) - set(self.hparams))
        if unknown:
            raise ValueError(
                f"Unknown hyperparameter {unknown[0]!r} for schedule {self.name!r}; "
                f"expected one of {sorted(self.hparams)}"
            )
        merged: dict[str, object] = {**self.defaults(), **values}
        for name, value in merged.items():
            self.hparams[name].domain.check(name, value)
        return merged


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)
