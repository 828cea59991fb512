"""Hyperparameter importance of a job, from our own ``trial_runs`` rows.

The job's completed trials are replayed into an in-memory Optuna study and handed to
Optuna's evaluator (PED-ANOVA by default: fast, and it copes with the conditional
spaces our optimizer categorical creates; fANOVA on request). The API never reads
Optuna's storage here, and imports optuna only inside :func:`evaluate`, so building
the app stays light (tests/service/test_app_imports.py).

Each trial's distributions are recovered by replaying its stored params through the
workers' own ``suggest`` with an Optuna ``FixedTrial``: the names, ranges and log
scales are exactly the ones the trial was sampled from, with no second copy of the
search-space rules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from api_schemas.trials import ImportanceMethod
from service import logs

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.importance import BaseImportanceEvaluator
    from optuna.trial import FrozenTrial

MIN_TRIALS = 5
"""Fewer completed trials than this give no importances (too little to rank anything)."""

log = logging.getLogger(__name__)


def evaluate(
    resolved_space: Mapping[str, Any],
    rows: Sequence[tuple[dict[str, Any], float]],
    *,
    maximize: bool,
    method: ImportanceMethod,
) -> dict[str, float]:
    """``{param: importance}`` (summing to 1, largest first) over ``(params, value)`` rows."""
    if len(rows) < MIN_TRIALS:
        return {}
    import optuna

    logs.adopt_optuna()
    shapes: dict[frozenset[str], dict[str, BaseDistribution] | None] = {}
    trials = [t for params, value in rows if (t := _frozen(resolved_space, params, value, shapes))]
    if len(trials) < MIN_TRIALS:
        return {}
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    study.add_trials(trials)
    scores = optuna.importance.get_param_importances(study, evaluator=_evaluator(method))
    return {name: float(score) for name, score in scores.items()}


def _frozen(
    resolved_space: Mapping[str, Any],
    params: dict[str, Any],
    value: float,
    shapes: dict[frozenset[str], dict[str, BaseDistribution] | None],
) -> FrozenTrial | None:
    """The run as a COMPLETE Optuna trial, or None when its params no longer fit the space.

    Trials with the same parameter names (one optimizer, one schedule) share their
    distributions: ``shapes`` replays one of them only.
    """
    from optuna.trial import create_trial

    shape = frozenset(params)
    if shape not in shapes:
        shapes[shape] = _distributions(resolved_space, params)
    distributions = shapes[shape]
    if distributions is None:
        return None
    sampled = {name: params[name] for name in distributions}
    return create_trial(params=sampled, distributions=distributions, value=value)


def _distributions(
    resolved_space: Mapping[str, Any], params: dict[str, Any]
) -> dict[str, BaseDistribution] | None:
    from optuna.trial import FixedTrial

    from workers.objective import suggest

    fixed = FixedTrial(params)
    try:
        suggest(fixed, resolved_space)
    except (ValueError, KeyError) as exc:
        log.warning("importance: a trial's params do not fit the job's space: %s", exc)
        return None
    return dict(fixed.distributions)


def _evaluator(method: ImportanceMethod) -> BaseImportanceEvaluator:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if method == "fanova":
        return FanovaImportanceEvaluator(seed=0)
    return PedAnovaImportanceEvaluator()
