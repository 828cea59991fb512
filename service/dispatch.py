"""Dispatch: turn queued slots into published ``trials.run`` messages, at most
``max_parallel`` in flight per job.

Reserving a slot (queued → dispatched) is a committed DB change; publishing happens
after that commit. If the broker is down, the slot goes back to queued and the
reconciler tries again later, so an accepted job is never lost (ARCHITECTURE rule 1).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from service.broker import publish_trial
from service.db import session_scope
from service.models import SlotStatus
from service.models.job import TERMINAL_JOB_STATUSES
from service.trials import repository as trials

log = logging.getLogger(__name__)


def reserve_slots(session: Session, job_id: uuid.UUID) -> list[int]:
    """Mark as many queued slots dispatched as the job's parallelism allows."""
    job = trials.lock_job(session, job_id)
    if job is None or job.status in TERMINAL_JOB_STATUSES or job.cancel_requested:
        return []
    capacity = job.max_parallel - trials.active_slot_count(session, job_id)
    if capacity <= 0:
        return []
    slots = trials.queued_slots(session, job_id, capacity)
    for slot in slots:
        trials.set_slot_status(
            session, job_id, slot.slot, SlotStatus.DISPATCHED, expect=[SlotStatus.QUEUED]
        )
    return [s.slot for s in slots]


def publish_slots(job_id: uuid.UUID, slots: Sequence[int]) -> int:
    """Publish reserved slots; after a failed publish the rest are released to queued."""
    for i, slot in enumerate(slots):
        try:
            publish_trial(str(job_id), slot)
        except Exception as exc:
            log.warning("broker unavailable, job %s stays queued: %s", job_id, exc)
            with session_scope() as session:
                for unsent in slots[i:]:
                    trials.set_slot_status(
                        session, job_id, unsent, SlotStatus.QUEUED, expect=[SlotStatus.DISPATCHED]
                    )
            return i
    return len(slots)


def dispatch(job_ids: Iterable[uuid.UUID]) -> int:
    published = 0
    for job_id in job_ids:
        with session_scope() as session:
            slots = reserve_slots(session, job_id)
        published += publish_slots(job_id, slots)
    return published


class DispatchBuffer:
    """Jobs to dispatch once the request's transaction has committed (Polar's pattern)."""

    def __init__(self) -> None:
        self.job_ids: list[uuid.UUID] = []

    @classmethod
    def for_session(cls, session: Session) -> DispatchBuffer:
        buffer = session.info.get("dispatch")
        if buffer is None:
            buffer = session.info["dispatch"] = cls()
        return buffer  # type: ignore[no-any-return]

    def add(self, job_id: uuid.UUID) -> None:
        self.job_ids.append(job_id)

    def reset(self) -> None:
        self.job_ids.clear()

    def flush(self) -> None:
        job_ids, self.job_ids = self.job_ids, []
        try:
            dispatch(job_ids)
        except Exception:
            # the job rows are committed; the reconciler dispatches them later
            log.exception("dispatch after commit failed for jobs %s", job_ids)
