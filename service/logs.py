"""Structured logs: one JSON object per line, carrying the job and trial it is about.

Every process (API, worker, reconciler) calls :func:`configure` once at start. Code
that works on a job wraps the work in :func:`bind`; every line logged inside it, by
our code or a library's (Optuna, Celery, uvicorn, SQLAlchemy), carries those fields,
so ``jq 'select(.job_id == "…")'`` over all processes' logs tells one job's story::

    with logs.bind(job_id=job_id, slot=3):
        log.info("claimed")   # {"ts": …, "level": "INFO", "msg": "claimed", "job_id": …, "slot": 3}

The bound fields live in a ``ContextVar``, so concurrent requests (asyncio tasks, the
threadpool FastAPI runs sync handlers in) never see each other's fields. ``text`` is
the same information on one human-readable line, for a terminal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import IO, Any, Literal

from service.json_values import replace_nonfinite

LogFormat = Literal["json", "text"]

_FIELDS: ContextVar[Mapping[str, Any]] = ContextVar(
    "optserve_log_fields", default=MappingProxyType({})
)
_OURS = "_optserve_handler"
# attributes every LogRecord has: anything else on a record came from ``extra=`` or bind()
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line until the block exits (``None`` values are left out)."""
    token = _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def annotate(**fields: Any) -> None:
    """Add ``fields`` until the enclosing :func:`bind` block exits (for a value learnt
    midway, such as the Optuna trial number once the trial has been asked for)."""
    _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}})


def bound() -> dict[str, Any]:
    """The fields bound here and now."""
    return dict(_FIELDS.get())


class ContextFilter(logging.Filter):
    """Copy the bound fields onto each record (a field passed with ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _FIELDS.get().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "process", "pid", "msg", <bound and extra fields>, "exc"}``."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "process": self.process,
            "pid": record.process,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(replace_nonfinite(line, str), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-11-23T21:40:00.123Z INFO worker workers.trial_runner: msg job_id=… trial=3``."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        text = (
            f"{_timestamp(record)} {record.levelname} {self.process} {record.name}: "
            f"{record.getMessage()}"
        )
        text = f"{text} {fields}" if fields else text
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def make_handler(process: str, fmt: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A handler that writes our format to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else TextFormatter(process))
    setattr(handler, _OURS, True)
    return handler


# Libraries that install their own handlers: theirs go, their records come to ours.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu")


def configure(
    process: str, fmt: LogFormat | None = None, level: str | None = None, *, optuna: bool = False
) -> None:
    """Send every log record of this process through one handler on stderr.

    Idempotent: a second call replaces our handler (tests build many apps), and leaves
    handlers that are not ours (pytest's capture) alone. ``uvicorn.access`` is quieted:
    the API logs each request itself, with its status, duration and request id.
    ``optuna=True`` also routes Optuna's logs here (worker, reconciler).
    """
    from service.config import get_settings

    settings = get_settings()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
    root.addHandler(make_handler(process, fmt or settings.log_format))
    root.setLevel(level or settings.LOG_LEVEL)
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    if optuna:
        adopt_optuna()


def adopt_optuna() -> None:
    """Optuna logs through its own stderr handler and stops propagation: undo both, so its
    lines ("Trial 3 finished with value …") come out in our format with the bound fields."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
