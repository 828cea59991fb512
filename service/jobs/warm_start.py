"""Resolve a job's ``warm_start`` at submit time: which past configurations it runs first.

The recommender (``service.recommend``) ranks past configurations for the new task's
fingerprint; here they are restricted to the job's optimizers, fitted into its search
space (``service.jobs.warm_space``), deduplicated, cut to ``k`` and stored in the
resolved space with their source, so that the worker enqueues exactly what the API
answered and later history never changes what an accepted job runs. With ``narrow``
the ranges are shrunk around them too.

The recommender's ``k`` is a number of past tasks and its ``budget`` a number of
configurations: ``from: similar`` looks at the ``k`` most similar finished tasks (each
gives at most one configuration per optimizer, its best), ``from: [ids]`` at all the
listed jobs.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api_schemas import JobCreate, ResolvedSpace
from api_schemas.warm_start import (
    SIMILAR,
    ResolvedWarmStart,
    WarmConfiguration,
    WarmSource,
    WarmStart,
)
from service.auth import AuthSubject
from service.errors import InvalidField
from service.jobs import warm_space
from service.models import Job, TrialRun
from service.models.job import JobStatus
from service.recommend.engine import Recommendation, SupportingJob, recommend

FROM = ("body", "warm_start", "from")


def _source_jobs(session: Session, subject: AuthSubject, job_ids: Sequence[uuid.UUID]) -> None:
    """Each listed job must be the caller's or shared, and completed; 422 at ``from[i]``.

    Another tenant's private job reads as unknown, as everywhere else.
    """
    readable = or_(Job.tenant_id == subject.tenant_id, Job.shared.is_(True))
    rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids), readable))
    found: dict[uuid.UUID, str] = {row.id: row.status for row in rows}
    for i, job_id in enumerate(job_ids):
        status = found.get(job_id)
        if status is None:
            raise InvalidField(f"job {job_id} not found", (*FROM, i))
        if status != JobStatus.COMPLETED:
            msg = f"job {job_id} is {status}: only completed jobs are learned from"
            raise InvalidField(msg, (*FROM, i))


def _own_trial(session: Session, recs: Sequence[Recommendation]) -> dict[int, SupportingJob | None]:
    """The past trial each recommendation *is* (its support also holds trials it only
    resembles on other tasks): the first supporting trial with the same parameters."""
    pairs = {(s.job_id, s.trial) for rec in recs for s in rec.support}
    params: dict[tuple[uuid.UUID, int], dict[str, object]] = {}
    if pairs:
        rows = session.execute(
            select(TrialRun.job_id, TrialRun.number, TrialRun.params).where(
                TrialRun.job_id.in_({j for j, _ in pairs}),
                TrialRun.number.in_({n for _, n in pairs}),
            )
        )
        params = {(j, n): p for j, n, p in rows if (j, n) in pairs}
    own: dict[int, SupportingJob | None] = {}
    for i, rec in enumerate(recs):
        same = [s for s in rec.support if params.get((s.job_id, s.trial)) == rec.params]
        candidates = same or rec.support
        own[i] = candidates[0] if candidates else None
    return own


def _source(rec: Recommendation, trial: SupportingJob | None) -> WarmSource | None:
    if trial is None:
        return None
    similarity = trial.similarity if math.isfinite(trial.similarity) else rec.similarity
    return WarmSource(job_id=trial.job_id, trial=trial.trial, similarity=round(similarity, 6))


def configurations(
    session: Session,
    resolved: ResolvedSpace,
    recs: Sequence[Recommendation],
    k: int,
) -> list[WarmConfiguration]:
    """The first ``k`` distinct recommendations that fit the job's space, in rank order."""
    out: list[WarmConfiguration] = []
    seen: list[dict[str, object]] = []
    for i, trial in _own_trial(session, recs).items():
        rec = recs[i]
        fitted = warm_space.fit(
            resolved, rec.optimizer, rec.params, rec.hyperparameters, rec.schedule
        )
        source = _source(rec, trial)
        if fitted is None or source is None or fitted.params in seen:
            continue
        seen.append(fitted.params)
        out.append(WarmConfiguration(params=fitted.params, source=source, adjusted=fitted.adjusted))
        if len(out) == k:
            break
    return out


def resolve(
    session: Session,
    subject: AuthSubject,
    job_in: JobCreate,
    resolved: ResolvedSpace,
    fingerprint: dict[str, object],
) -> ResolvedSpace:
    """``resolved`` with ``warm_start`` filled in (and ranges narrowed if asked).

    ``from: similar`` with no usable history starts the job cold (an empty list says
    so); listed jobs that give no configuration of the job's optimizers are a 422.
    """
    warm: WarmStart | None = job_in.warm_start
    if warm is None:
        return resolved
    job_ids = None if warm.from_ == SIMILAR else list(warm.from_)
    if job_ids is not None:
        _source_jobs(session, subject, job_ids)
    recs = recommend(
        session,
        subject.tenant_id,
        fingerprint,
        method=warm.method,
        k=warm.k if job_ids is None else len(job_ids),
        optimizers=sorted(resolved.optimizers),
        job_ids=job_ids,
        # a portfolio stops once nothing improves it: ask for k configurations outright
        budget=warm.k if warm.method == "portfolio" else None,
    )
    chosen = configurations(session, resolved, recs, warm.k)
    if job_ids is not None and not chosen:
        msg = "none of these jobs completed a trial of this job's optimizers"
        raise InvalidField(msg, FROM)
    narrowed = warm_space.narrow(resolved, [c.params for c in chosen]) if warm.narrow else {}
    resolved.warm_start = ResolvedWarmStart(configurations=chosen, narrowed=narrowed)
    return resolved


__all__ = ["configurations", "resolve"]
