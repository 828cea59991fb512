"""A read-only Optuna storage that shows one study and nothing else.

Optuna's dashboard lists and opens every study of the storage it is given, and its
study ids are small integers anyone can guess. All jobs of all tenants share one Optuna
storage, so the dashboard of a job gets this view instead: every other study is
missing (``KeyError``, as Optuna says "no such study"), and nothing can be written.

This module imports optuna at import time: import it only inside a request path.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any, NoReturn

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState


class ReadOnlyStorageError(PermissionError):
    """A write reached the single-study view (the HTTP layer should have refused it)."""


class SingleStudyStorage(BaseStorage):
    """``inner`` restricted to the study named ``study_name``, read-only."""

    def __init__(self, inner: BaseStorage, study_name: str) -> None:
        self._inner = inner
        self.study_id = inner.get_study_id_from_name(study_name)  # KeyError: not created yet

    def _check(self, study_id: int) -> int:
        if study_id != self.study_id:
            raise KeyError(f"no study with id {study_id}")
        return study_id

    @staticmethod
    def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise ReadOnlyStorageError("this dashboard is read-only")

    # -- reads, each checked against the one study --------------------------------------
    def get_all_studies(self) -> list[FrozenStudy]:
        return [s for s in self._inner.get_all_studies() if s._study_id == self.study_id]

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._check(self._inner.get_study_id_from_name(study_name))

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._inner.get_study_name_from_id(self._check(study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._inner.get_study_directions(self._check(study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._inner.get_study_user_attrs(self._check(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._inner.get_study_system_attrs(self._check(study_id))

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return self._inner.get_all_trials(self._check(study_id), deepcopy=deepcopy, states=states)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        return self._inner.get_n_trials(self._check(study_id), state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._inner.get_best_trial(self._check(study_id))

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._inner.get_trial_id_from_study_id_trial_number(
            self._check(study_id), trial_number
        )

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = self._inner.get_trial(trial_id)
        mine = self._inner.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        if mine != trial_id:
            raise KeyError(f"no trial with id {trial_id}")
        return trial

    # -- writes: none ----------------------------------------------------------------------
    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        self._refuse()

    def delete_study(self, study_id: int) -> None:
        self._refuse()

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._refuse()

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._refuse()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._refuse()

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._refuse()

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        self._refuse()

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._refuse()

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._refuse()

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._refuse()
