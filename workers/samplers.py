"""Registries of Optuna samplers and pruners, keyed by the names ``api_schemas`` accepts.

Each trial loads the study afresh, so the sampler is built per trial: its seed is
derived from the job's seed, the slot and the attempt, otherwise every worker would
draw the same "random" start-up point. The names and options here are those of
``api_schemas.jobs.SAMPLER_OPTIONS`` / ``PRUNER_OPTIONS`` (a test keeps them equal).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from api_schemas import STORED_CONTEXT
from api_schemas.search_space import ResolvedSpace, grid_points, sweep_point
from workers.warm_start import startup_options


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may need beyond its options: the trial's seed and place in the job."""

    seed: int  # this trial's (trial_seed)
    job_seed: int  # the job's, shared by every trial
    slot: int
    resolved_space: Mapping[str, Any]


SamplerFactory = Callable[[SamplerContext, Mapping[str, Any]], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[Mapping[str, Any], int], optuna.pruners.BasePruner]


class PointSampler(optuna.samplers.BaseSampler):
    """Proposes one given configuration (a grid point); anything else at random.

    Optuna's ``GridSampler`` walks the product of every parameter, so with conditional
    spaces it repeats each configuration once per value of the other optimizers'
    parameters, and parallel workers pick grid points by racing on the study. Slot
    ``i`` running point ``i`` instead is deterministic, survives retries (the retry of
    a slot runs the same point) and never duplicates.
    """

    def __init__(self, point: Mapping[str, Any], seed: int) -> None:
        self._point = dict(point)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name in self._point:
            return self._point[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


class PinnedSampler(optuna.samplers.BaseSampler):
    """``base`` with some parameters pinned: the optimizer a ``compare`` slot tunes.

    The pinned names are left out of the relative search space, so a multivariate TPE
    models the rest from the history of every optimizer's trials as usual.
    """

    def __init__(self, base: optuna.samplers.BaseSampler, pinned: Mapping[str, Any]) -> None:
        self._base = base
        self._pinned = dict(pinned)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self._base.infer_relative_search_space(study, trial)
        return {name: d for name, d in space.items() if name not in self._pinned}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name in self._pinned:
            return self._pinned[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)


@dataclass(frozen=True)
class CompareRole:
    """What one slot of a ``compare`` job does: tune ``optimizer``, or confirm its best."""

    optimizer: str
    confirmation: int | None = None  # index of the confirmation seed; None while tuning


def compare_role(
    spec: Mapping[str, Any], resolved_space: Mapping[str, Any], slot: int, n_trials: int
) -> CompareRole | None:
    """The slot layout of a compare job (None for a tuning job).

    Slots ``0 .. n_trials-1`` tune the optimizers in turn (names sorted, as Optuna's
    categorical lists them), so each gets ``n_trials / k`` trials; the slots after them
    hold ``confirm_seeds`` reruns per optimizer.
    """
    if spec.get("mode") != "compare":
        return None
    names = sorted(resolved_space["optimizers"])
    if slot < n_trials:
        return CompareRole(names[slot % len(names)])
    seeds = max(int(spec.get("confirm_seeds") or 1), 1)
    index = slot - n_trials
    return CompareRole(names[(index // seeds) % len(names)], index % seeds)


def sweep_role(
    spec: Mapping[str, Any], resolved_space: Mapping[str, Any], slot: int
) -> tuple[dict[str, Any], int] | None:
    """The (optimizer, lr) point and seed index of a ``sweep`` slot (None for other jobs).

    Slot ``i`` runs grid point ``i // seeds`` with seed index ``i % seeds``; a retry of
    the slot runs the same point with the same seed.
    """
    if spec.get("mode") != "sweep":
        return None
    resolved = ResolvedSpace.model_validate(resolved_space, context=STORED_CONTEXT)
    seeds = int((spec.get("sweep") or {}).get("seeds") or 1)
    return sweep_point(resolved, seeds, slot)


def _tpe(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    # multivariate + group handle the conditional space (each optimizer its own
    # sub-space); constant_liar keeps parallel workers from proposing the same point.
    # A warm-started job's configurations replace the random start-up (workers.warm_start).
    kwargs: dict[str, Any] = {"multivariate": True, "group": True, "constant_liar": True}
    kwargs.update(startup_options(ctx.resolved_space, options))
    kwargs.update(options)
    return optuna.samplers.TPESampler(seed=ctx.seed, **kwargs)


def _random(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=ctx.seed, **options)


def _qmc(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    # One low-discrepancy sequence for the whole job: seeded by the job, not the trial;
    # Optuna hands each trial the next index of it through the study's storage.
    return optuna.samplers.QMCSampler(seed=ctx.job_seed, warn_independent_sampling=False, **options)


def _cmaes(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    # CMA-ES models the continuous parameters only; the optimizer categorical and the
    # conditional parameters go to the independent (random) sampler, on purpose.
    return optuna.samplers.CmaEsSampler(seed=ctx.seed, warn_independent_sampling=False, **options)


def _gp(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    kwargs = {**startup_options(ctx.resolved_space, options), **options}
    return optuna.samplers.GPSampler(seed=ctx.seed, **kwargs)


def _grid(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    del options  # the grid is the search space itself
    resolved = ResolvedSpace.model_validate(ctx.resolved_space, context=STORED_CONTEXT)
    point = next(itertools.islice(grid_points(resolved), ctx.slot, None), None)
    if point is None:  # the API keeps n_trials within the grid; a raised budget revisits
        points = list(grid_points(resolved))
        point = points[ctx.slot % len(points)]
    return PointSampler(point, ctx.seed)


def _nsga2(ctx: SamplerContext, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=ctx.seed, **options)


SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": _tpe,
    "random": _random,
    "qmc": _qmc,
    "cmaes": _cmaes,
    "gp": _gp,
    "grid": _grid,
    "nsga2": _nsga2,
}


def _hyperband(options: Mapping[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    # "auto" would wait for a finished trial to learn the budget; the task knows it
    return optuna.pruners.HyperbandPruner(**{"max_resource": epochs, **options})


PRUNERS: dict[str, PrunerFactory] = {
    "none": lambda options, epochs: optuna.pruners.NopPruner(),
    "median": lambda options, epochs: optuna.pruners.MedianPruner(**options),
    "percentile": lambda options, epochs: optuna.pruners.PercentilePruner(**options),
    "successive_halving": lambda options, epochs: optuna.pruners.SuccessiveHalvingPruner(**options),
    "hyperband": _hyperband,
    "threshold": lambda options, epochs: optuna.pruners.ThresholdPruner(**options),
}


def trial_seed(base: int, slot: int, attempt: int) -> int:
    return (base * 1_000_003 + slot * 7919 + attempt) % (2**31 - 1)


def build_sampler(spec: Mapping[str, Any], ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    return SAMPLERS[spec.get("name", "tpe")](ctx, spec.get("options") or {})


def build_pruner(spec: Mapping[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    return PRUNERS[spec.get("name", "none")](spec.get("options") or {}, epochs)
