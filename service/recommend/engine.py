"""Recommend configurations for a task from similar past tasks.

Two methods over the same pieces:

* **Task distance** (Feurer, Springenberg and Hutter, *Initializing Bayesian
  Hyperparameter Optimization via Meta-Learning*, AAAI 2015): each numeric
  meta-feature is put on a log scale when it is a count, then divided by its standard
  deviation over the history (floored, so that a history of near-equal tasks does not
  blow small differences up: see ``_MIN_SCALE``); a categorical feature that differs
  (modality, task type, model family, metric) adds a fixed penalty. The distance is
  the Euclidean norm of these terms, and ``similarity = 1 / (1 + distance)``: 1 for an
  identical task. A feature the new task leaves unknown is not compared; one a past
  task lacks counts as one standard deviation away.
* **A configuration's score on a past task**: its normalised score there when it ran
  there; otherwise the score of the nearest trial of the same optimizer on that task,
  in that task's normalised hyperparameter space (each tuned parameter scaled to
  [0, 1] over its search range, log ranges on a log scale; a differing categorical
  counts 1; the root mean square over parameters; equally near trials are averaged).
  On a task where its optimizer never ran, its score is unknown: that task is left out
  of its expected score and gives it no credit in a portfolio.

``nearest`` takes the ``k`` nearest past tasks, the best configuration of each allowed
optimizer on each, and ranks them by their similarity-weighted mean score over those
tasks (``expected_score``). ``portfolio`` (Wistuba, Schilling and Schmidt-Thieme,
*Sequential Model-Free Hyperparameter Tuning*, ICDM 2015) picks from the same
candidates greedily: each step adds the configuration that most raises the
similarity-weighted mean, over the ``k`` tasks, of the best score among those chosen.
Without a ``budget`` it stops when nothing raises it any more; with one it returns
``budget`` configurations (when there are that many), those that add nothing ranked
as ``nearest`` ranks them.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from api_schemas.recommendations import Method
from api_schemas.search_space import OPTIMIZER_PARAM, SCHEDULE_PARAM
from service.recommend.index import PastTask, PastTrial, load_history

# Counts compare by ratio: log1p before standardising. class_balance is already a ratio.
_LOG_FEATURES = ("n_parameters", "n_examples", "n_features", "n_classes", "epochs", "batch_size")
_LINEAR_FEATURES = ("class_balance",)
_MIN_SCALE = {**dict.fromkeys(_LOG_FEATURES, 0.5), "class_balance": 0.1}
"""Smallest standard deviation a feature is divided by: a factor of 1.65 in a count, or
0.1 in the balance ratio, counts as at most one. Without it a history whose tasks all
trained 10 epochs would make 20 epochs look as far away as another kind of data."""
_MISMATCH = {"modality": 2.0, "task_type": 2.0, "model": 1.0, "metric": 0.5}
"""Distance added by a differing categorical feature, in standard deviations: another
kind of data or task weighs more than another model family, which weighs more than
another metric (scores are per-task quantiles, so metrics compare anyway)."""
_UNKNOWN = 1.0
_TIE = 1e-12


@dataclass(frozen=True)
class SupportingJob:
    """A past trial behind a recommendation."""

    job_id: uuid.UUID
    trial: int
    similarity: float
    score: float


@dataclass(frozen=True)
class Recommendation:
    optimizer: str
    params: dict[str, Any]
    """Optuna parameter names, ready for ``study.enqueue_trial``."""
    hyperparameters: dict[str, Any]
    """Constructor keyword arguments of the optimizer."""
    schedule: dict[str, Any] | None
    """``{"name": ..., hyperparameter: value...}``; ``None`` when the job had none."""
    expected_score: float
    support: list[SupportingJob]
    similarity: float


# -- task distance ------------------------------------------------------------------------
def _transform(name: str, value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return math.log1p(max(float(value), 0.0)) if name in _LOG_FEATURES else float(value)


def feature_scales(history: Sequence[PastTask]) -> dict[str, float]:
    """Each numeric feature's standard deviation over the history (floored)."""
    scales = {}
    for name in (*_LOG_FEATURES, *_LINEAR_FEATURES):
        known = [v for t in history if (v := _transform(name, t.fingerprint.get(name))) is not None]
        spread = statistics.pstdev(known) if len(known) >= 2 else 0.0
        scales[name] = max(spread, _MIN_SCALE[name])
    return scales


def task_distance(
    query: Mapping[str, Any], past: Mapping[str, Any], scales: Mapping[str, float]
) -> float:
    """Scaled distance from the new task to a past one (see the module docstring)."""
    terms = []
    for name, scale in scales.items():
        q = _transform(name, query.get(name))
        if q is None:
            continue  # the new task does not say: not compared
        p = _transform(name, past.get(name))
        terms.append(_UNKNOWN if p is None else (q - p) / scale)
    for name, penalty in _MISMATCH.items():
        q, p = query.get(name), past.get(name)
        if q is None:
            continue
        terms.append(_UNKNOWN if p is None else (0.0 if q == p else penalty))
    return math.sqrt(sum(t * t for t in terms))


def similarity(distance: float) -> float:
    return 1.0 / (1.0 + distance)


# -- a configuration's score on another task -----------------------------------------------
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _param_gap(task: PastTask, name: str, a: Any, b: Any) -> float:
    if _same(a, b):
        return 0.0
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    span = task.ranges.get(name)
    if numeric and span is not None:
        pa, pb = span.position(float(a)), span.position(float(b))
        if pa is not None and pb is not None:
            return abs(pa - pb)
    return 1.0


def config_distance(task: PastTask, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Root-mean-square gap between two configurations in ``task``'s search space."""
    names = (set(a) | set(b)) - {OPTIMIZER_PARAM}
    if not names:
        return 0.0
    gaps = [_param_gap(task, n, a[n], b[n]) if n in a and n in b else 1.0 for n in sorted(names)]
    return math.sqrt(sum(g * g for g in gaps) / len(gaps))


def estimate(task: PastTask, trial: PastTrial) -> tuple[float, list[PastTrial]] | None:
    """``trial``'s configuration's score on ``task`` and the trials it rests on.

    ``None`` when ``task`` never ran that optimizer.
    """
    same_optimizer = task.by_optimizer.get(trial.optimizer)
    if not same_optimizer:
        return None
    gaps = [(config_distance(task, trial.params, u.params), u) for u in same_optimizer]
    nearest = min(g for g, _ in gaps)
    tied = [u for g, u in gaps if g <= nearest + _TIE]
    return statistics.fmean(u.score for u in tied), tied


# -- candidates and their scores ----------------------------------------------------------
@dataclass(frozen=True)
class _Scored:
    trial: PastTrial
    similarity: float  # of the task it ran on
    order: int  # a stable tie-break: its task's rank among the neighbours
    per_task: dict[uuid.UUID, float]  # estimated score on each neighbour (where known)
    support: list[SupportingJob]
    expected: float


def _neighbours(
    history: Sequence[PastTask], fingerprint: Mapping[str, Any], k: int
) -> list[tuple[PastTask, float]]:
    scales = feature_scales(history)
    scored = [(t, similarity(task_distance(fingerprint, t.fingerprint, scales))) for t in history]
    scored.sort(key=lambda pair: -pair[1])  # stable: equally similar tasks keep job order
    return scored[:k]


def _score(
    trial: PastTrial, home_similarity: float, order: int, neighbours: list[tuple[PastTask, float]]
) -> _Scored:
    per_task: dict[uuid.UUID, float] = {}
    support: list[SupportingJob] = []
    weighted = weights = 0.0
    for task, sim in neighbours:
        found = estimate(task, trial)
        if found is None:
            continue
        score, backing = found
        per_task[task.job_id] = score
        weighted += sim * score
        weights += sim
        support += [SupportingJob(u.job_id, u.number, sim, u.score) for u in backing]
    expected = weighted / weights if weights > 0 else 0.0
    return _Scored(trial, home_similarity, order, per_task, support, expected)


def _candidates(
    neighbours: list[tuple[PastTask, float]], optimizers: Collection[str] | None
) -> list[_Scored]:
    """The best trial of each allowed optimizer on each neighbour, scored; no duplicates."""
    seen: set[str] = set()
    out = []
    for order, (task, sim) in enumerate(neighbours):
        for name, trial in sorted(task.best_per_optimizer().items()):
            if optimizers is not None and name not in optimizers:
                continue
            key = repr(sorted(trial.params.items()))
            if key in seen:
                continue
            seen.add(key)
            out.append(_score(trial, sim, order, neighbours))
    return out


def _rank_key(c: _Scored) -> tuple[float, float, int, int]:
    return (-c.expected, -c.similarity, c.order, c.trial.number)


def _portfolio(
    candidates: list[_Scored], neighbours: list[tuple[PastTask, float]], budget: int | None
) -> list[_Scored]:
    weights = {task.job_id: sim for task, sim in neighbours}
    total = sum(weights.values())
    best = dict.fromkeys(weights, 0.0)  # best score so far on each task

    def gain(c: _Scored) -> float:
        return sum(weights[t] * max(s - best[t], 0.0) for t, s in c.per_task.items()) / total

    chosen: list[_Scored] = []
    left = sorted(candidates, key=_rank_key)
    while left and (budget is None or len(chosen) < budget):
        pick = max(left, key=lambda c: (gain(c), -left.index(c)))
        if gain(pick) <= _TIE and budget is None:
            break  # saturated; a budget is filled with the best-ranked of the rest
        chosen.append(pick)
        left.remove(pick)
        for t, s in pick.per_task.items():
            best[t] = max(best[t], s)
    return chosen


# -- the answer ----------------------------------------------------------------------------
def schedule_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schedule and its hyperparameters, from a trial's Optuna parameters."""
    name = params.get(SCHEDULE_PARAM)
    if not isinstance(name, str):
        return None
    out: dict[str, Any] = {"name": name}
    prefix = f"{name}."
    for key, value in params.items():
        if key.startswith(prefix):
            hp = key[len(prefix) :]
            if hp.startswith("one_minus_") and isinstance(value, int | float):
                out[hp[len("one_minus_") :]] = 1.0 - value
            else:
                out[hp] = value
    return out


def _recommendation(c: _Scored) -> Recommendation:
    support = sorted(c.support, key=lambda s: (-s.similarity, -s.score, s.trial))
    return Recommendation(
        optimizer=c.trial.optimizer,
        params=dict(c.trial.params),
        hyperparameters=dict(c.trial.hyperparameters),
        schedule=schedule_of(c.trial.params),
        expected_score=round(c.expected, 6),
        support=support,
        similarity=round(c.similarity, 6),
    )


def recommend_from(
    history: Sequence[PastTask],
    fingerprint: Mapping[str, Any],
    *,
    method: Method = "nearest",
    k: int = 5,
    optimizers: Sequence[str] | None = None,
    budget: int | None = None,
) -> list[Recommendation]:
    """``recommend`` on an already loaded history (pure: no database)."""
    allowed = None if optimizers is None else set(optimizers)
    if allowed is not None:
        history = [t for t in history if allowed & set(t.by_optimizer)]
    if not history:
        return []
    neighbours = _neighbours(history, fingerprint, k)
    candidates = _candidates(neighbours, allowed)
    if method == "portfolio":
        chosen = _portfolio(candidates, neighbours, budget)
    else:
        chosen = sorted(candidates, key=_rank_key)[:budget]
    return [_recommendation(c) for c in chosen]


def recommend(
    session: Session,
    tenant_id: uuid.UUID,
    fingerprint: Mapping[str, Any],
    *,
    method: Method = "nearest",
    k: int = 5,
    optimizers: Sequence[str] | None = None,
    budget: int | None = None,
    exclude_job_ids: Collection[uuid.UUID] = (),
    job_ids: Collection[uuid.UUID] | None = None,
) -> list[Recommendation]:
    """Ranked configurations for a task with this ``fingerprint``.

    Learns only from ``tenant_id``'s completed jobs and jobs an admin shared;
    ``job_ids`` narrows that history (never widens it), ``exclude_job_ids`` leaves
    jobs out. An empty list when no past task ran an allowed optimizer.
    """
    history = load_history(session, tenant_id, job_ids=job_ids, exclude_job_ids=exclude_job_ids)
    return recommend_from(
        history, fingerprint, method=method, k=k, optimizers=optimizers, budget=budget
    )


__all__ = [
    "Recommendation",
    "SupportingJob",
    "config_distance",
    "estimate",
    "feature_scales",
    "recommend",
    "recommend_from",
    "schedule_of",
    "similarity",
    "task_distance",
]
