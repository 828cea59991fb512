"""Optuna's own dashboard for one job, at ``/optuna/{job_id}/...``, behind our API key.

optuna-dashboard 0.21 is a Bottle WSGI app built for the root of a host: its page loads
``/static/bundle.js``, its JavaScript fetches ``/api/...`` (an API client built with no
base URL) and routes under ``/dashboard``. The server side takes a prefix (the WSGI
``SCRIPT_NAME``); the browser side does not, so two things are rewritten on the way out:

- the page's ``<script src>`` gets the job's prefix;
- the bundle's API client base URL and router prefix become the first two segments of
  the page's own path (``/optuna/<job_id>``), one patched bundle for every job.

Everything else is Optuna's app, run on a storage view that shows this job's study only
and refuses writes (``study_storage``); only GET is forwarded. Optuna is imported inside
the request path, never when the API is built.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import re
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from service.auth.dependencies import AuthSubject, bearer_token, subject_for_key
from service.deps import session_dependency
from service.errors import Conflict, NotFound, ServiceError
from service.jobs import service as job_service

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

COOKIE = "optserve_key"
PREFIX = "/optuna"
# the page's own prefix, computed by the browser: "/optuna/<job_id>"
_PREFIX_JS = 'location.pathname.split("/").slice(0,3).join("/")'
_CLIENT_AND_ROUTER = re.compile(
    r"\}\(void 0\)"  # the API client, constructed with no base URL
    r"(,[\w$]+=\(\{children:e\}\)=>\(0,[\w$]+\.jsx\)\([\w$]+\.Provider,"
    r'\{value:\{color_mode:void 0,environment:"optuna-dashboard",url_prefix:)"/dashboard"'
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class MethodNotAllowed(ServiceError):
    status_code = 405
    error_type = "method_not_allowed"
    headers = {"Allow": "GET"}


def dashboard_subject(request: Request, session: Session = session_dependency) -> AuthSubject:
    """The API key from the ``Authorization`` header, else from the login cookie.

    A browser cannot add a header to a navigation, so the web dashboard's login sets
    an HttpOnly cookie scoped to ``/optuna``; it is checked exactly as the header is.
    """
    if "authorization" in request.headers:
        return subject_for_key(session, bearer_token(request))
    return subject_for_key(session, request.cookies.get(COOKIE))


DashboardSubject = Annotated[AuthSubject, Depends(dashboard_subject)]


def _job_prefix(job_id: uuid.UUID) -> str:
    return f"{PREFIX}/{job_id}"


def package_dir(name: str) -> Path:
    """An installed package's folder, found without importing it (no heavy import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(f"{name} is not installed", ("path",))
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def patched_bundle() -> bytes:
    """optuna-dashboard's bundle, gzipped, with its base URL and router prefix relative
    to the page's path. Fails loudly if a new version changed the code it patches."""
    source = (package_dir("optuna_dashboard") / "public" / "bundle.js").read_text(encoding="utf-8")
    patched, n = _CLIENT_AND_ROUTER.subn(
        lambda m: f'}}({_PREFIX_JS}){m.group(1)}{_PREFIX_JS}+"/dashboard"', source
    )
    if n != 1:
        raise RuntimeError(
            f"optuna-dashboard's bundle.js has {n} API-client/router sites, expected 1: "
            "this version cannot be served under a URL prefix"
        )
    return gzip.compress(patched.encode("utf-8"), compresslevel=6)


@functools.lru_cache(maxsize=32)
def _wsgi_app(job_id: str) -> Callable[..., Iterable[bytes]]:
    """Optuna's dashboard on a one-study, read-only view of the shared storage."""
    import optuna_dashboard

    from service.web.study_storage import SingleStudyStorage
    from workers.optuna_storage import get_storage, study_name

    try:
        view = SingleStudyStorage(get_storage(), study_name(job_id))
    except KeyError:
        # the first worker to run a trial of the job creates its study
        raise Conflict("no trial of this job has started yet", ("path", "job_id")) from None
    return optuna_dashboard.wsgi(view)  # type: ignore[no-any-return]


def _call_wsgi(
    app: Callable[..., Iterable[bytes]], request: Request, script_name: str, path: str
) -> tuple[int, dict[str, str], bytes]:
    """One GET through a WSGI app, buffered (the dashboard answers JSON and small files)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": request.url.query,
        "SERVER_NAME": request.url.hostname or "localhost",
        "SERVER_PORT": str(request.url.port or 80),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.url.scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        if name in ("authorization", "cookie"):
            continue  # Optuna's app has no use for our credentials
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> None:
        started["status"], started["headers"] = int(status.split()[0]), headers

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    headers = {k: v for k, v in started["headers"] if k.lower() != "content-length"}
    return started["status"], headers, body


def _readable_job(session: Session, subject: AuthSubject, job_id: uuid.UUID) -> str:
    """The id of a job the caller may read (another tenant's job is a 404)."""
    return str(job_service.get(session, subject, job_id).id)


@router.get("/{job_id}")
def dashboard_root(
    job_id: uuid.UUID, subject: DashboardSubject, session: Session = session_dependency
) -> RedirectResponse:
    _readable_job(session, subject, job_id)
    return RedirectResponse(f"{_job_prefix(job_id)}/dashboard", status_code=302)


@router.get("/{job_id}/static/bundle.js")
def dashboard_bundle(
    job_id: uuid.UUID,
    request: Request,
    subject: DashboardSubject,
    session: Session = session_dependency,
) -> Response:
    _readable_job(session, subject, job_id)
    headers = {"Cache-Control": "private, max-age=3600", "Vary": "Accept-Encoding"}
    body = patched_bundle()
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    return Response(body, media_type="application/javascript", headers=headers)


@router.get("/{job_id}/{path:path}")
def dashboard(
    job_id: uuid.UUID,
    path: str,
    request: Request,
    subject: DashboardSubject,
    session: Session = session_dependency,
) -> Response:
    """Optuna's pages and JSON API for this job's study."""
    job = _readable_job(session, subject, job_id)
    if not path:
        return RedirectResponse(f"{_job_prefix(job_id)}/dashboard", status_code=302)
    prefix = _job_prefix(job_id)
    status, headers, body = _call_wsgi(_wsgi_app(job), request, prefix, f"/{path}")
    if path.split("/", 1)[0] == "dashboard" and status == 200:
        body = body.replace(b'src="/static/', f'src="{prefix}/static/'.encode())
    return Response(body, status_code=status, headers=headers)


@router.api_route("/{job_id}/{path:path}", methods=["POST", "PUT", "PATCH", "DELETE"])
def refuse_writes(
    job_id: uuid.UUID, subject: DashboardSubject, session: Session = session_dependency
) -> Response:
    """The mounted dashboard is read-only: notes, renames, deletions stay out."""
    _readable_job(session, subject, job_id)
    raise MethodNotAllowed("Optuna's dashboard is mounted read-only", ("method",))
