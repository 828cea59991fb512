"""Prometheus metrics, read from the database at each scrape.

Every number comes from our tables (six aggregate queries), never from counters kept
in a process: with N API processes behind a load balancer each scrape sees the same
truth, and a restart loses nothing. The series are aggregates only (states, optimizer
names from the public registry, durations): no job id, tenant or name, so
``/metrics`` can be scraped without an API key (see ``service.observability``).

Series:

- ``optserve_database_up``: the database answered (0: the scrape still answers 200).
- ``optserve_info{version}``: always 1.
- ``optserve_jobs{status}``: jobs per status.
- ``optserve_trials{state, optimizer}``: trial runs (attempts) per state and optimizer.
- ``optserve_trial_duration_seconds{state, optimizer}``: histogram of finished runs'
  wall-clock duration (``finished_at - started_at``); it only grows, so ``rate()`` works.
- ``optserve_trial_slots{status}``: budget slots per status.
- ``optserve_queue_depth``: slots waiting for a worker (queued + dispatched, unclaimed).
- ``optserve_workers``: Celery worker processes whose presence heartbeat is fresh
  (within ``OPTSERVE_HEARTBEAT_GRACE_S``), busy or idle (``workers`` table).
- ``optserve_worker_capacity``: how many trials those workers can run at once.
- ``optserve_workers_busy``: trials running on a worker with a fresh heartbeat (distinct
  pool processes); ``capacity - busy`` is the idle capacity.
- ``optserve_trials_stale``: running slots whose heartbeat is older than the grace; the
  reconciler fails and requeues them, so a value that stays above 0 means it is down.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, distinct, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

import service
from service.models import Job, SlotStatus, TrialRun, TrialSlot, TrialState, WorkerPresence
from service.models._types import utcnow
from service.models.job import JobStatus

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
"""Upper bounds (seconds) of the trial-duration histogram, ``+Inf`` added."""

WAITING = (SlotStatus.QUEUED, SlotStatus.DISPATCHED)


@dataclass
class DurationRow:
    buckets: list[int]  # cumulative counts, one per DURATION_BUCKETS bound
    count: int
    total: float


@dataclass
class Snapshot:
    """What one scrape read from the database."""

    jobs: dict[str, int] = field(default_factory=dict)
    trials: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, optimizer)
    durations: dict[tuple[str, str], DurationRow] = field(default_factory=dict)
    slots: dict[str, int] = field(default_factory=dict)
    workers: int = 0
    worker_capacity: int = 0
    workers_busy: int = 0
    trials_stale: int = 0


# -- the queries (aggregates over every tenant: operations only) -------------------------
def _duration_seconds(dialect: str) -> ColumnElement[float]:
    if dialect == "postgresql":
        return func.extract("epoch", TrialRun.finished_at - TrialRun.started_at)
    # SQLite stores timestamps as text; julianday() reads them, in days
    return (func.julianday(TrialRun.finished_at) - func.julianday(TrialRun.started_at)) * 86400.0


def _optimizer(name: str | None) -> str:
    return name or "unknown"


def read_snapshot(session: Session, *, now: dt.datetime, grace_s: float) -> Snapshot:
    snap = Snapshot()
    jobs = select(Job.status, func.count()).group_by(Job.status)
    snap.jobs = {status: int(n) for status, n in session.execute(jobs)}
    trials = select(TrialRun.state, TrialRun.optimizer, func.count()).group_by(
        TrialRun.state, TrialRun.optimizer
    )
    snap.trials = {(state, _optimizer(opt)): int(n) for state, opt, n in session.execute(trials)}
    snap.durations = _durations(session)
    slots = select(TrialSlot.status, func.count()).group_by(TrialSlot.status)
    snap.slots = {status: int(n) for status, n in session.execute(slots)}
    since = now - dt.timedelta(seconds=grace_s)
    alive = select(func.count(), func.coalesce(func.sum(WorkerPresence.concurrency), 0)).where(
        WorkerPresence.heartbeat_at >= since
    )
    workers, capacity = session.execute(alive).one()
    snap.workers, snap.worker_capacity = int(workers), int(capacity)
    fresh = TrialSlot.heartbeat_at >= since
    running = select(
        func.count(distinct(case((fresh, TrialSlot.worker)))),
        func.count(case((~fresh, 1))),
    ).where(TrialSlot.status == SlotStatus.RUNNING)
    busy, stale = session.execute(running).one()
    snap.workers_busy, snap.trials_stale = int(busy), int(stale)
    return snap


def _durations(session: Session) -> dict[tuple[str, str], DurationRow]:
    finished = (
        select(
            TrialRun.state,
            TrialRun.optimizer,
            _duration_seconds(session.get_bind().dialect.name).label("seconds"),
        )
        .where(
            TrialRun.state != TrialState.RUNNING,
            TrialRun.started_at.is_not(None),
            TrialRun.finished_at.is_not(None),
        )
        .subquery()
    )
    seconds = finished.c.seconds
    stmt = select(
        finished.c.state,
        finished.c.optimizer,
        *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS),
        func.count(),
        func.coalesce(func.sum(seconds), 0.0),
    ).group_by(finished.c.state, finished.c.optimizer)
    out = {}
    for state, opt, *row in session.execute(stmt):
        *buckets, count, total = row
        out[(state, _optimizer(opt))] = DurationRow(
            [int(b or 0) for b in buckets], int(count), float(total)
        )
    return out


# -- the collector -------------------------------------------------------------------------
class DatabaseCollector(Collector):
    """Reads a :class:`Snapshot` per ``collect()``: register it on a registry per scrape."""

    def __init__(self, session: Callable[[], Session], *, grace_s: float) -> None:
        self._session = session
        self._grace_s = grace_s

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("optserve_database_up", "The database answered this scrape.")
        try:
            with self._session() as session:
                snap = read_snapshot(session, now=utcnow(), grace_s=self._grace_s)
        except SQLAlchemyError as exc:  # one line per scrape, not a traceback
            log.warning("metrics: database unreachable: %s", exc.__cause__ or exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snap)


def families(snap: Snapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily("optserve_info", "optserve version.", labels=["version"])
    info.add_metric([service.__version__], 1)
    yield info
    jobs = GaugeMetricFamily("optserve_jobs", "Jobs per status.", labels=["status"])
    for status in JobStatus:
        jobs.add_metric([status.value], snap.jobs.get(status, 0))
    yield jobs
    trials = GaugeMetricFamily(
        "optserve_trials", "Trial runs per state and optimizer.", labels=["state", "optimizer"]
    )
    for (state, opt), n in sorted(snap.trials.items()):
        trials.add_metric([state, opt], n)
    yield trials
    yield _duration_family(snap)
    slots = GaugeMetricFamily("optserve_trial_slots", "Budget slots per status.", labels=["status"])
    for status in SlotStatus:
        slots.add_metric([status.value], snap.slots.get(status, 0))
    yield slots
    yield GaugeMetricFamily(
        "optserve_queue_depth",
        "Slots waiting for a worker: queued, or dispatched and not claimed yet.",
        value=sum(snap.slots.get(status, 0) for status in WAITING),
    )
    yield GaugeMetricFamily(
        "optserve_workers",
        "Celery worker processes with a fresh presence heartbeat, busy or idle.",
        value=snap.workers,
    )
    yield GaugeMetricFamily(
        "optserve_worker_capacity",
        "Trials the live workers can run at once (sum of their concurrency).",
        value=snap.worker_capacity,
    )
    yield GaugeMetricFamily(
        "optserve_workers_busy",
        "Trials running on a worker with a fresh heartbeat (distinct pool processes).",
        value=snap.workers_busy,
    )
    yield GaugeMetricFamily(
        "optserve_trials_stale",
        "Running slots whose heartbeat is older than the grace (the reconciler requeues them).",
        value=snap.trials_stale,
    )


def _duration_family(snap: Snapshot) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "optserve_trial_duration_seconds",
        "Wall-clock duration of finished trial runs.",
        labels=["state", "optimizer"],
        unit="seconds",
    )
    bounds = [f"{b:g}" for b in DURATION_BUCKETS]
    for (state, opt), row in sorted(snap.durations.items()):
        buckets = [*zip(bounds, row.buckets, strict=True), ("+Inf", row.count)]
        family.add_metric([state, opt], buckets=buckets, sum_value=row.total)
    return family
