"""Typed events of a job's stream (``GET /v1/jobs/{id}/events``), as a client reads them.

Each SSE message carries ``{"seq", "type", "job_id", "at", ...payload}``
(``api_schemas.events.EventRead``); ``parse_event`` turns it into the model of its
``type``, whose payload fields are typed attributes. Fields a newer server adds stay
readable as extras, and an unknown type parses as ``JobEvent``, so an old client keeps
working against a newer server.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from api_schemas.events import EventRead
from service.sse import SSEMessage


class JobEvent(EventRead):
    """Any event: ``api_schemas.events.EventRead``'s envelope, with ``type`` open to a
    type this client does not know yet (its fields then stay as extras)."""

    type: str  # type: ignore[assignment]


class JobStarted(JobEvent):
    type: Literal["job.started"] = "job.started"


class TrialStarted(JobEvent):
    type: Literal["trial.started"] = "trial.started"
    trial: int
    slot: int | None = None
    attempt: int = 1
    optimizer: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None


class TrialEpoch(JobEvent):
    """One epoch; losses and metrics are null when not finite (the N2 rule)."""

    type: Literal["trial.epoch"] = "trial.epoch"
    trial: int
    epoch: int
    step: int | None = None
    examples: int | None = None
    wall_time: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    value: float | None = None
    lr: float | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)


TrialEndState = Literal["complete", "pruned", "fail", "cancelled"]


class TrialFinished(JobEvent):
    type: Literal["trial.finished"] = "trial.finished"
    trial: int
    state: TrialEndState
    value: float | None = None
    reason: str | None = None
    diverged: bool = False
    duration_s: float | None = None


class JobUpdated(JobEvent):
    type: Literal["job.updated"] = "job.updated"
    n_trials: int | None = None
    max_parallel: int | None = None


class JobCancelRequested(JobEvent):
    type: Literal["job.cancel_requested"] = "job.cancel_requested"


class JobFinished(JobEvent):
    type: Literal["job.finished"] = "job.finished"
    status: str
    error: str | None = None
    best_value: float | None = None


Event = (
    JobStarted
    | TrialStarted
    | TrialEpoch
    | TrialFinished
    | JobUpdated
    | JobCancelRequested
    | JobFinished
    | JobEvent
)

EVENT_TYPES: dict[str, type[JobEvent]] = {
    "job.started": JobStarted,
    "trial.started": TrialStarted,
    "trial.epoch": TrialEpoch,
    "trial.finished": TrialFinished,
    "job.updated": JobUpdated,
    "job.cancel_requested": JobCancelRequested,
    "job.finished": JobFinished,
}


def parse_event(message: SSEMessage) -> Event:
    """The typed event of one SSE message (its ``data`` is the JSON event)."""
    data = json.loads(message.data)
    if not isinstance(data, dict):
        raise ValueError(f"event {message.id}: data is not a JSON object")
    data.setdefault("type", message.event)
    if "seq" not in data and message.id is not None:
        data["seq"] = int(message.id)
    model = EVENT_TYPES.get(str(data["type"]), JobEvent)
    return model.model_validate(data)


__all__ = [
    "EVENT_TYPES",
    "Event",
    "JobCancelRequested",
    "JobEvent",
    "JobFinished",
    "JobStarted",
    "JobUpdated",
    "TrialEpoch",
    "TrialFinished",
    "TrialStarted",
    "parse_event",
]
