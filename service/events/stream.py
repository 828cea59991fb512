"""The Server-Sent Events body of ``GET /v1/jobs/{id}/events``.

The stream polls the database (a fresh, short session per poll, in a worker thread so
the event loop never blocks on I/O) instead of holding a transaction or a connection
for the life of the connection: a stream may stay open for hours, and on SQLite an
open transaction would hold the write lock. Events commit in ``seq`` order (see
``recorder``), so "everything after the last ``seq`` sent" loses nothing between polls.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from api_schemas.events import JOB_FINISHED, EventRead
from service.db import read_scope
from service.events import repository
from service.models import JobEvent

BATCH = 500  # events read per query; a long backlog is sent in several
KEEP_ALIVE = ": keep-alive\n\n"


@dataclass(frozen=True)
class Message:
    seq: int
    type: str
    text: str  # the SSE frame, ready to send


@dataclass(frozen=True)
class Batch:
    messages: list[Message]
    more: bool  # a full batch: read again at once
    ended: bool  # the job has ended (or is gone) and every one of its events is here


def frame(event: JobEvent) -> str:
    """One event as an SSE message: ``id``, ``event`` and a one-line JSON ``data``."""
    created = event.created_at
    if created.tzinfo is None:  # SQLite hands back naive datetimes; they are UTC
        created = created.replace(tzinfo=dt.UTC)
    envelope = {"seq": event.seq, "type": event.type, "job_id": event.job_id, "at": created}
    data = EventRead.model_validate({**(event.payload or {}), **envelope})
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data.model_dump_json()}\n\n"


def read_batch(job_id: uuid.UUID, after: int) -> Batch:
    """The events after ``after`` (at most ``BATCH``), framed, and whether the stream ended."""
    with read_scope() as session:
        position = repository.position(session, job_id)
        if position is None:
            return Batch([], more=False, ended=True)
        events = []
        if position.last_seq > after:
            events = repository.events_after(session, job_id, after, BATCH)
        messages = [Message(e.seq, e.type, frame(e)) for e in events]
    last = messages[-1].seq if messages else after
    return Batch(
        messages, more=len(events) == BATCH, ended=position.ended and last >= position.last_seq
    )


async def event_stream(
    job_id: uuid.UUID, after: int, *, follow: bool, poll_s: float, heartbeat_s: float
) -> AsyncIterator[str]:
    """Send the events after ``after``; with ``follow``, wait for new ones until the job ends.

    A following stream closes after ``job.finished`` (or at once when the client
    resumes after it); while idle it sends a ``: keep-alive`` comment every
    ``heartbeat_s`` so that proxies do not close a quiet connection.
    """
    last_sent = time.monotonic()
    while True:
        batch = await anyio.to_thread.run_sync(read_batch, job_id, after)
        for message in batch.messages:
            yield message.text
            after = message.seq
            if follow and message.type == JOB_FINISHED:
                return
        if batch.messages:
            last_sent = time.monotonic()
        if batch.more:
            continue
        if not follow or batch.ended:
            return
        if time.monotonic() - last_sent >= heartbeat_s:
            yield KEEP_ALIVE
            last_sent = time.monotonic()
        await anyio.sleep(min(poll_s, heartbeat_s))
