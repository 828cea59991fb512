"""The worker side of a warm-started job: slot ``i < n`` runs stored configuration ``i``.

The service resolved the configurations at submit time into
``resolved_space["warm_start"]["configurations"]``. Before asking Optuna for a trial,
the worker of such a slot enqueues its configuration (``study.enqueue_trial``, with the
source in the trial's user attrs), so the trial Optuna hands out next carries exactly
those parameters; any parameter the configuration lacks is sampled as usual. Which
waiting trial a worker pops is Optuna's choice (the oldest): with parallel slots a
configuration may run on another slot than its own, but each runs once, and the run
records the source of the trial it actually got.

A configuration is enqueued again only if every earlier trial of it failed: a retry of
a slot whose worker was lost (its trial failed by the reconciler) reruns it, while a
duplicate, a waiting or a finished one is never added twice. Optuna's own
``skip_if_exists`` would also skip the failed one, and the retry would sample instead.

Start-up: with warm configurations and no ``n_startup_trials`` of the user's, TPE and
GP start modelling once the warm trials have finished (``n_startup_trials = n``)
instead of after Optuna's ten random trials: the warm configurations replace the
random initial design (Feurer, Springenberg and Hutter, AAAI 2015). A user's
``n_startup_trials`` is kept and counts the warm trials, as Optuna counts every
finished trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

SOURCE_ATTR = "optserve.source"
INDEX_ATTR = "optserve.warm_index"
STARTUP_OPTION = "n_startup_trials"


def configurations(resolved_space: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The job's warm configurations, in slot order (empty for a cold job)."""
    warm = resolved_space.get("warm_start") or {}
    return list(warm.get("configurations") or [])


def _taken(study: optuna.Study, index: int) -> bool:
    """Whether configuration ``index`` is waiting, running or finished (not failed)."""
    return any(
        trial.user_attrs.get(INDEX_ATTR) == index and trial.state != optuna.trial.TrialState.FAIL
        for trial in study.get_trials(deepcopy=False)
    )


def enqueue_for_slot(study: optuna.Study, resolved_space: Mapping[str, Any], slot: int) -> bool:
    """Enqueue the slot's warm configuration, if it has one still to run; True if it did."""
    warm = configurations(resolved_space)
    if slot >= len(warm) or _taken(study, slot):
        return False
    config = warm[slot]
    study.enqueue_trial(
        dict(config["params"]),
        user_attrs={SOURCE_ATTR: dict(config["source"]), INDEX_ATTR: slot},
    )
    return True


def source_of(trial: optuna.Trial) -> dict[str, Any] | None:
    """Where the trial's configuration came from (``None``: the sampler drew it)."""
    source = trial.user_attrs.get(SOURCE_ATTR)
    return dict(source) if isinstance(source, Mapping) else None


def startup_options(
    resolved_space: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The sampler's ``n_startup_trials`` for a warm-started job (see the module docstring)."""
    n_warm = len(configurations(resolved_space))
    if n_warm == 0 or STARTUP_OPTION in options:
        return {}
    return {STARTUP_OPTION: n_warm}


__all__ = [
    "INDEX_ATTR",
    "SOURCE_ATTR",
    "configurations",
    "enqueue_for_slot",
    "source_of",
    "startup_options",
]
