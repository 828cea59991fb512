"""A small typed client for the REST API; the CLI uses it, so there is one code path."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from api_schemas import BestRead, JobRead, Page, TrialRead

TERMINAL = {"completed", "failed", "cancelled"}


class ApiError(Exception):
    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"HTTP {status_code}: {body}")
        self.status_code = status_code
        self.body = body


class Client:
    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(response.status_code, body)
        return response.json()

    def submit(self, spec: dict[str, Any]) -> JobRead:
        return JobRead.model_validate(self._request("POST", "/v1/jobs", json=spec))

    def job(self, job_id: uuid.UUID | str) -> JobRead:
        return JobRead.model_validate(self._request("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, limit: int = 50, status: str | None = None) -> Page[JobRead]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return Page[JobRead].model_validate(self._request("GET", "/v1/jobs", params=params))

    def trials(self, job_id: uuid.UUID | str, *, limit: int = 500) -> Page[TrialRead]:
        data = self._request("GET", f"/v1/jobs/{job_id}/trials", params={"limit": limit})
        return Page[TrialRead].model_validate(data)

    def best(self, job_id: uuid.UUID | str) -> BestRead:
        return BestRead.model_validate(self._request("GET", f"/v1/jobs/{job_id}/best"))

    def cancel(self, job_id: uuid.UUID | str) -> JobRead:
        return JobRead.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    def wait(
        self,
        job_id: uuid.UUID | str,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_update: Callable[[JobRead], None] | None = None,
    ) -> JobRead:
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
