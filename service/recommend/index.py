"""The history the recommender learns from: past tasks and their normalised trials.

A past task is one finished job (status ``completed``) that the caller may learn from:
its own, or one an admin marked ``shared``. Its trials are the runs that completed
with a finite value. Each gets a normalised score, the quantile of its value among
that job's completed trials (direction-aware, 1 = best, 0 = worst, ties share the
mean rank), so that a loss of 0.02 on one task and an accuracy of 0.9 on another
compare. Pruned and failed runs have no final value and are left out.

Two queries whatever the history's size: the jobs, then their completed runs.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api_schemas import STORED_CONTEXT, ResolvedSpace
from api_schemas.search_space import FloatParam, IntParam, sampled_bounds
from service.models import Job, TrialRun, TrialState
from service.models.job import JobStatus
from service.recommend.fingerprint import fingerprint_for_spec


@dataclass(frozen=True)
class Range:
    """A tuned numeric parameter's range, for distances between configurations."""

    low: float
    high: float
    log: bool

    def position(self, value: float) -> float | None:
        """Where ``value`` lies, 0 at ``low`` and 1 at ``high`` (beyond: outside [0, 1])."""
        if self.log:
            if value <= 0 or self.low <= 0:
                return None
            low, high, value = math.log(self.low), math.log(self.high), math.log(value)
        else:
            low, high = self.low, self.high
        width = high - low
        return 0.5 if width <= 0 else (value - low) / width


@dataclass(frozen=True)
class PastTrial:
    job_id: uuid.UUID
    number: int
    optimizer: str
    params: dict[str, Any]
    hyperparameters: dict[str, Any]
    value: float
    score: float


@dataclass(frozen=True)
class PastTask:
    """One finished job: its fingerprint, its search ranges and its scored trials."""

    job_id: uuid.UUID
    fingerprint: dict[str, Any]
    ranges: Mapping[str, Range]
    trials: tuple[PastTrial, ...]
    by_optimizer: Mapping[str, tuple[PastTrial, ...]] = field(default_factory=dict)

    def best_per_optimizer(self) -> dict[str, PastTrial]:
        """Each optimizer's best trial here (ties: the earlier trial)."""
        return {
            name: max(trials, key=lambda t: (t.score, -t.number))
            for name, trials in self.by_optimizer.items()
        }


def quantile_scores(values: Sequence[float], direction: str) -> list[float]:
    """Each value's quantile among ``values``: 1 for the best, 0 for the worst.

    The score is the share of the *other* values it beats, ties counting a half, so
    equal values score equally and a lone value scores 1.
    """
    n = len(values)
    if n == 1:
        return [1.0]
    sign = 1.0 if direction == "maximize" else -1.0
    ordered = sorted(sign * v for v in values)
    scores = []
    for v in values:
        x = sign * v
        beaten = bisect.bisect_left(ordered, x)
        tied = bisect.bisect_right(ordered, x) - beaten - 1
        scores.append((beaten + 0.5 * tied) / (n - 1))
    return scores


def _ranges(resolved_space: Mapping[str, Any]) -> dict[str, Range]:
    try:
        space = ResolvedSpace.model_validate(resolved_space, context=STORED_CONTEXT)
    except ValueError:
        return {}
    return {
        # a ``one_minus`` parameter is stored as sampled, on 1 - x: its range is too
        name: Range(*sampled_bounds(p), bool(p.log))
        for name, p in space.tuned_parameters().items()
        if isinstance(p, FloatParam | IntParam)
    }


def _direction(job: Job, fingerprint: Mapping[str, Any]) -> str:
    return str(fingerprint.get("direction") or job.spec.get("task", {}).get("direction"))


def _task(job: Job, session: Session, runs: Sequence[TrialRun]) -> PastTask | None:
    fingerprint = job.fingerprint or fingerprint_for_spec(session, job.tenant_id, job.spec)
    scored = [r for r in runs if r.optimizer and r.value is not None and math.isfinite(r.value)]
    if not scored:
        return None
    scores = quantile_scores([float(r.value) for r in scored], _direction(job, fingerprint))  # type: ignore[arg-type]
    trials = tuple(
        PastTrial(
            job_id=job.id,
            number=r.number,
            optimizer=str(r.optimizer),
            params=dict(r.params or {}),
            hyperparameters=dict(r.hyperparameters or {}),
            value=float(r.value),  # type: ignore[arg-type]
            score=s,
        )
        for r, s in zip(scored, scores, strict=True)
    )
    by_optimizer: dict[str, list[PastTrial]] = {}
    for t in trials:
        by_optimizer.setdefault(t.optimizer, []).append(t)
    return PastTask(
        job_id=job.id,
        fingerprint=dict(fingerprint),
        ranges=_ranges(job.resolved_space),
        trials=trials,
        by_optimizer={k: tuple(v) for k, v in by_optimizer.items()},
    )


def load_history(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    job_ids: Collection[uuid.UUID] | None = None,
    exclude_job_ids: Collection[uuid.UUID] = (),
) -> list[PastTask]:
    """The past tasks ``tenant_id`` may learn from, oldest job first.

    Its own completed jobs plus completed jobs any tenant's admin marked ``shared``;
    ``job_ids`` narrows to those jobs (still only readable ones), ``exclude_job_ids``
    leaves some out (a leave-one-task-out evaluation). Jobs without a completed,
    finite trial are not tasks.
    """
    stmt = (
        select(Job)
        .where(
            Job.status == JobStatus.COMPLETED,
            or_(Job.tenant_id == tenant_id, Job.shared.is_(True)),
        )
        .order_by(Job.created_at, Job.id)
    )
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    if exclude_job_ids:
        stmt = stmt.where(Job.id.not_in(list(exclude_job_ids)))
    jobs = list(session.scalars(stmt))
    if not jobs:
        return []
    runs: dict[uuid.UUID, list[TrialRun]] = {job.id: [] for job in jobs}
    run_stmt = (
        select(TrialRun)
        .where(TrialRun.job_id.in_(list(runs)), TrialRun.state == TrialState.COMPLETE)
        .order_by(TrialRun.job_id, TrialRun.number)
    )
    for run in session.scalars(run_stmt):
        runs[run.job_id].append(run)
    tasks = (_task(job, session, runs[job.id]) for job in jobs)
    return [t for t in tasks if t is not None]


__all__ = ["PastTask", "PastTrial", "Range", "load_history", "quantile_scores"]
