"""Pruning a multi-objective trial on its first objective.

Optuna reports and prunes single-objective studies only: ``Trial.report`` refuses a
study with several directions, and its pruners read ``study.direction``. A
multi-objective job with a pruner therefore keeps a *shadow* study beside its own:
single-objective, in the first objective's direction, holding the job's pruner. Each
trial asks one shadow trial, reports the first objective there at every epoch and asks
it whether to stop; when the trial ends the shadow trial is told the same outcome, so
that later trials are judged against every trial that finished before them. The job's
own study keeps Optuna's ``NopPruner`` and all the objectives.
"""

from __future__ import annotations

from typing import Protocol

import optuna

SHADOW_SUFFIX = ":prune-first-objective"


class Reporter(Protocol):
    """Where a trial's per-epoch values go: ``optuna.Trial`` has exactly this shape."""

    def report(self, value: float, step: int) -> None: ...

    def should_prune(self) -> bool: ...


def shadow_study(
    study_name: str,
    storage: optuna.storages.BaseStorage,
    pruner: optuna.pruners.BasePruner,
    direction: str,
) -> optuna.Study:
    """The job's shadow study (created by the first trial that needs it)."""
    return optuna.create_study(
        study_name=study_name + SHADOW_SUFFIX,
        storage=storage,
        # the shadow trial samples nothing: its sampler is never consulted
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner,
        direction=direction,
        load_if_exists=True,
    )


class ShadowReporter:
    """A ``Reporter`` backed by one trial of the job's shadow study (see the module)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._trial = study.ask()

    def report(self, value: float, step: int) -> None:
        self._trial.report(value, step)

    def should_prune(self) -> bool:
        return self._trial.should_prune()

    def finish(self, state: optuna.trial.TrialState, value: float | None) -> None:
        """End the shadow trial like the job's trial: COMPLETE with its first objective."""
        if state == optuna.trial.TrialState.COMPLETE and value is not None:
            self._study.tell(self._trial, value)
        else:
            self._study.tell(self._trial, state=state)
