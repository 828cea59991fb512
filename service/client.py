"""A typed Python client of the REST API. The CLI uses it for every call, so there is one
code path from a terminal and from a script to the service.

    from service.client import Client

    client = Client("http://127.0.0.1:8000", api_key)
    job = client.submit(spec)
    client.wait(job.id, progress=True)      # live progress bar, driven by the event stream
    print(client.best(job.id).hyperparameters)

Responses are validated into ``api_schemas`` models; an HTTP error raises ``ApiError``
with the service's error body (``{"detail": [{"loc", "msg", "type"}]}``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from api_schemas import BestRead, CurveRead, JobCreate, JobRead, Page, TrialRead
from api_schemas.datasets import DatasetUploadRead
from api_schemas.recommendations import RecommendationList
from api_schemas.trials import TrialCurve
from service.client_events import Event, parse_event
from service.sse import SSEParser

if TYPE_CHECKING:
    from rich.console import Console

TERMINAL = frozenset({"completed", "failed", "cancelled"})
JobRef = uuid.UUID | str
TRIALS_PAGE = 500  # the API's largest trials page
CURVES_PAGE = 100  # the curves endpoint's default page (its points make pages heavy)
ItemT = TypeVar("ItemT", bound=BaseModel)


class ApiError(Exception):
    """An HTTP error answer; ``body`` is the decoded error envelope (or the raw text)."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"HTTP {status_code}: {body}")
        self.status_code = status_code
        self.body = body


class Client:
    """One API key against one server.

    Args:
        url: the API's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: a key from ``optserve keys create`` (sent as ``Authorization: Bearer``).
        timeout: seconds for a request (a stream waits ``stream_read_timeout`` between
            bytes instead: long enough for a few keep-alive comments).
        http: an ``httpx.Client`` to send requests with (tests pass FastAPI's
            ``TestClient``); its headers get the key.
        reconnect_delay_s, max_reconnects: how ``events()`` retries a dropped stream;
            the count starts again after every event received.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        stream_read_timeout: float = 90.0,
        reconnect_delay_s: float = 1.0,
        max_reconnects: int = 10,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout)
        self._http.headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._stream_read_timeout = stream_read_timeout
        self._reconnect_delay_s = reconnect_delay_s
        self._max_reconnects = max_reconnects

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- raw -------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; returns the decoded JSON body (``None`` for an empty one).

        ``kwargs`` go to ``httpx.Client.request`` (``params``, ``json``, ``files``,
        ``headers``...). Raises ``ApiError`` on a 4xx/5xx answer.
        """
        response = self._http.request(method, path, **kwargs)
        _raise_for_status(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- jobs ------------------------------------------------------------------------------
    def submit(
        self, spec: Mapping[str, Any] | JobCreate, *, idempotency_key: str | None = None
    ) -> JobRead:
        """``POST /v1/jobs``; the same ``idempotency_key`` and body return the same job."""
        body = (
            spec.model_dump(mode="json", exclude_unset=True)
            if isinstance(spec, JobCreate)
            else dict(spec)
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return JobRead.model_validate(self.request("POST", "/v1/jobs", json=body, headers=headers))

    def job(self, job_id: JobRef) -> JobRead:
        return JobRead.model_validate(self.request("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, limit: int = 50, offset: int = 0, status: str | None = None) -> Page[JobRead]:
        """One page of your jobs, newest first."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return Page[JobRead].model_validate(self.request("GET", "/v1/jobs", params=params))

    def update(
        self, job_id: JobRef, *, n_trials: int | None = None, max_parallel: int | None = None
    ) -> JobRead:
        """Raise ``n_trials`` or change ``max_parallel`` of a job that has not ended."""
        pairs = (("n_trials", n_trials), ("max_parallel", max_parallel))
        body = {k: v for k, v in pairs if v is not None}
        return JobRead.model_validate(self.request("PATCH", f"/v1/jobs/{job_id}", json=body))

    def cancel(self, job_id: JobRef) -> JobRead:
        return JobRead.model_validate(self.request("POST", f"/v1/jobs/{job_id}/cancel"))

    # -- results -----------------------------------------------------------------------------
    def trials(
        self, job_id: JobRef, *, state: str | None = None, limit: int | None = None
    ) -> Iterator[TrialRead]:
        """Every trial (every attempt) in trial-number order, fetched page by page.

        ``state`` keeps one state (``complete``, ``pruned``, ``fail``...); ``limit``
        stops after that many trials.
        """
        filters = {"state": state} if state else {}
        return self._pages(TrialRead, f"/v1/jobs/{job_id}/trials", TRIALS_PAGE, filters, limit)

    def curve(self, job_id: JobRef, number: int) -> CurveRead:
        """One trial's per-epoch curve."""
        return CurveRead.model_validate(
            self.request("GET", f"/v1/jobs/{job_id}/trials/{number}/curve")
        )

    def curves(self, job_id: JobRef, *, metric: str | None = None) -> Iterator[TrialCurve]:
        """Every trial's curve in trial-number order (``GET /v1/jobs/{id}/curves``, all pages)."""
        filters = {"metric": metric} if metric else {}
        return self._pages(TrialCurve, f"/v1/jobs/{job_id}/curves", CURVES_PAGE, filters)

    def _pages(
        self,
        item: type[ItemT],
        path: str,
        page_size: int,
        filters: dict[str, Any],
        limit: int | None = None,
    ) -> Iterator[ItemT]:
        """Every item of a paged ``GET``, page by page; ``limit`` stops after that many."""
        offset = 0
        while limit is None or offset < limit:
            size = page_size if limit is None else min(page_size, limit - offset)
            params: dict[str, Any] = {**filters, "limit": size, "offset": offset}
            page = Page[item].model_validate(self.request("GET", path, params=params))  # type: ignore[valid-type]
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def best(self, job_id: JobRef) -> BestRead:
        """The best completed trial (404 ``ApiError`` while none has completed)."""
        return BestRead.model_validate(self.request("GET", f"/v1/jobs/{job_id}/best"))

    def export(
        self,
        job_id: JobRef,
        path: str | Path,
        *,
        format: Literal["csv", "parquet", "json"] | None = None,
    ) -> int:
        """Write every trial with its curve to ``path``; returns the number of rows (json:
        trials). The format defaults to the file's suffix (see ``service.export``)."""
        from service.export import export_job

        return export_job(self, job_id, Path(path), format)

    # -- datasets ------------------------------------------------------------------------------
    def upload_dataset(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        target: str | None = None,
        task_type: Literal["classification", "regression"] | None = None,
    ) -> DatasetUploadRead:
        """Upload a ``.npz``, ``.csv`` or ``.parquet`` file; use the returned ``id`` as
        ``task.dataset.name``. ``target`` names the label column of a CSV/Parquet file."""
        path = Path(path)
        form = {
            k: v for k, v in (("name", name), ("target", target), ("task_type", task_type)) if v
        }
        with path.open("rb") as fh:
            data = self.request("POST", "/v1/datasets", files={"file": (path.name, fh)}, data=form)
        return DatasetUploadRead.model_validate(data)

    # -- following a job -------------------------------------------------------------------------
    def events(
        self, job_id: JobRef, last_event_id: int | None = None, *, follow: bool = True
    ) -> Iterator[Event]:
        """The job's events, in ``seq`` order, from after ``last_event_id`` (all by default).

        With ``follow`` (the default) the iterator waits for new events and ends after
        ``job.finished``; a dropped connection is reopened with ``Last-Event-ID``, so no
        event is lost or repeated. ``follow=False`` returns the backlog and ends. An
        error answer (404, 401...) raises ``ApiError`` at once; a connection that keeps
        failing raises ``httpx.TransportError`` after ``max_reconnects`` tries.
        """
        last = last_event_id
        failures = 0
        while True:
            received = False
            try:
                for event in self._stream_once(job_id, last, follow):
                    received, failures, last = True, 0, event.seq
                    yield event
                    if event.type == "job.finished":
                        return
            except (httpx.TransportError, _ServerError):
                failures += 1
                if failures > self._max_reconnects:
                    raise
            else:
                # a clean end: the backlog without follow, or a server that closed early
                if not follow or (not received and self.job(job_id).status in TERMINAL):
                    return
                if not received:  # closed with nothing sent, again and again: give up
                    failures += 1
                    if failures > self._max_reconnects:
                        raise httpx.RemoteProtocolError("event stream keeps closing empty")
            time.sleep(self._reconnect_delay_s)

    def _stream_once(self, job_id: JobRef, last: int | None, follow: bool) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        timeout = httpx.Timeout(self._timeout, read=self._stream_read_timeout)
        params = {"follow": "true" if follow else "false"}
        path = f"/v1/jobs/{job_id}/events"
        with self._http.stream(
            "GET", path, params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 500:
                response.read()
                raise _ServerError(response.status_code, response.text)
            if response.status_code >= 400:
                response.read()
                _raise_for_status(response)
            parser = SSEParser()
            for chunk in response.iter_text():
                for message in parser.feed(chunk):
                    yield parse_event(message)
            for message in parser.close():
                yield parse_event(message)

    def wait(
        self,
        job_id: JobRef,
        *,
        progress: bool = True,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_update: Callable[[JobRead], None] | None = None,
        console: Console | None = None,
    ) -> JobRead:
        """Block until the job ends; returns the final job.

        ``progress=True`` shows a live progress bar and the top trials (driven by the
        event stream, or by polling when the stream fails); ``progress=False`` polls
        every ``poll_s`` seconds and calls ``on_update`` with each read.
        """
        if progress:
            from service.progress import follow_job

            return follow_job(self, job_id, console=console, poll_s=poll_s, timeout_s=timeout_s)
        started = time.monotonic()
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job.status in TERMINAL:
                return job
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s}s")
            time.sleep(poll_s)

    # -- recommendations -------------------------------------------------------------------
    def recommend(self, body: Mapping[str, Any]) -> RecommendationList:
        """``POST /v1/recommendations``; ``body`` in ``RecommendationCreate``'s shape."""
        answer = self.request("POST", "/v1/recommendations", json=dict(body))
        return RecommendationList.model_validate(answer)


class _ServerError(ApiError):
    """A 5xx on the event stream: retried like a dropped connection."""


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = response.text
    raise ApiError(response.status_code, body)


__all__ = ["TERMINAL", "ApiError", "Client"]
