"""``GET /v1/jobs/{id}/events``: the job's events as Server-Sent Events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from api_schemas.events import EventCursor
from service.auth import Authenticated
from service.config import get_settings
from service.deps import SessionDep
from service.events.stream import event_stream
from service.jobs import service as job_service

router = APIRouter(prefix="/v1/jobs", tags=["events"])

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once, do not buffer
}


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"}},
)
def job_events(
    job_id: uuid.UUID,
    session: SessionDep,
    subject: Authenticated,
    last_event_id_header: Annotated[EventCursor | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[EventCursor | None, Query()] = None,
    follow: bool = True,
) -> StreamingResponse:
    """The job's events after ``Last-Event-ID`` (header, else ``?last_event_id=``; 0 = all).

    With ``follow`` (the default) the stream waits for new events and closes after
    ``job.finished``; ``?follow=false`` sends what exists and closes. The header wins
    over the query: a browser's ``EventSource`` reconnects to the same URL and sends
    the last id it received in the header.
    """
    # the session dependency ends its transaction when this function returns, before the
    # stream starts (scope="function"): a stream lasting hours pins no connection
    job = job_service.get(session, subject, job_id)
    after = last_event_id_header if last_event_id_header is not None else last_event_id or 0
    settings = get_settings()
    stream = event_stream(
        job.id,
        after,
        follow=follow,
        poll_s=settings.EVENTS_POLL_S,
        heartbeat_s=settings.EVENTS_HEARTBEAT_S,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
