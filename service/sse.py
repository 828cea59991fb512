"""Server-Sent Events, the wire format of ``GET /v1/jobs/{id}/events``, parsed by clients.

The HTML standard's "interpreting an event stream" rules, kept to what a client needs:
lines end in LF, CRLF or CR; a line starting with ``:`` is a comment (our keep-alives);
``field: value`` loses one space after the colon; ``data`` lines are joined with ``\\n``;
``id`` updates the last event id (the one a reconnect sends as ``Last-Event-ID``), even
when the event it belongs to is never completed; a blank line dispatches the event, and
an event with no data is dropped. A stream cut mid-event drops that partial event, so a
reconnect from the last *complete* id never loses or repeats one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# SSE lines end at CR, LF or CRLF only: ``str.splitlines`` would also cut at \x0b, \x1c,
# \u2028 and more, which JSON text may hold unescaped
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched event: ``event`` defaults to ``"message"`` as in browsers."""

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


@dataclass
class SSEParser:
    """An incremental parser: feed it lines (or chunks of text), take messages out.

    ``last_event_id`` is the id of the last message dispatched, which is what a client
    resumes from after a dropped connection.
    """

    last_event_id: str | None = None
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _retry: int | None = None
    _buffer: str = ""

    def feed_line(self, line: str) -> SSEMessage | None:
        """One line without its terminator; returns the message a blank line completes."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def feed(self, text: str) -> Iterator[SSEMessage]:
        """A chunk of the stream, cut anywhere (even inside a line or a CRLF)."""
        self._buffer += text
        lines = _LINE.findall(self._buffer)
        self._buffer = ""
        if lines and not lines[-1].endswith(("\n", "\r")):
            self._buffer = lines.pop()  # an unfinished line waits for the next chunk
        elif lines and lines[-1].endswith("\r"):
            self._buffer = lines.pop()  # "\r" may be the first half of a "\r\n"
        for raw in lines:
            message = self.feed_line(raw.rstrip("\r\n"))
            if message is not None:
                yield message

    def close(self) -> Iterator[SSEMessage]:
        """End of stream: a finished last line is read, a partial event is dropped."""
        if self._buffer:
            tail, self._buffer = self._buffer, ""
            message = self.feed_line(tail.rstrip("\r\n"))
            if message is not None:
                yield message
        self._data, self._event, self._id = [], "", self.last_event_id

    def _dispatch(self) -> SSEMessage | None:
        if self._id is not None:
            self.last_event_id = self._id
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return SSEMessage(
            data="\n".join(data), event=event or "message", id=self.last_event_id, retry_ms=retry
        )


def parse(chunks: Iterable[str]) -> Iterator[SSEMessage]:
    """Every complete message of a stream given as text chunks."""
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
