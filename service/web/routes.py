"""Dashboard pages and their static assets.

The page at ``/`` is plain HTML and JavaScript modules (no build step) that call the
public API with the API key the user typed, kept in the browser's localStorage.
Plotly comes from the installed ``plotly`` package, so the dashboard works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from service.auth.dependencies import authenticate, bearer_token
from service.web import optuna_mount

STATIC_DIR = Path(__file__).parent / "static"
# the page may load only our own scripts (Plotly included): no inline script, no CDN
PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)
router.include_router(optuna_mount.router)


def plotly_js() -> Path:
    """``plotly.min.js`` shipped in the plotly wheel, found without importing plotly."""
    return optuna_mount.package_dir("plotly") / "package_data" / "plotly.min.js"


@router.get("/")
def index() -> FileResponse:
    """The dashboard page; it asks for an API key and keeps it in localStorage."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )


@router.get("/static/plotly.min.js")
def plotly() -> FileResponse:
    return FileResponse(
        plotly_js(),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.post("/web/session", status_code=204, dependencies=[Depends(authenticate)])
def login(request: Request, response: Response) -> None:
    """Check the key in the ``Authorization`` header and set it as an HttpOnly cookie
    for ``/optuna`` (a browser cannot add a header when it navigates there)."""
    token = bearer_token(request)
    assert token is not None  # ``authenticate`` accepted it
    response.set_cookie(
        optuna_mount.COOKIE,
        token,
        path=optuna_mount.PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.delete("/web/session", status_code=204)
def logout(response: Response) -> None:
    response.delete_cookie(optuna_mount.COOKIE, path=optuna_mount.PREFIX)


def mount(app: FastAPI) -> None:
    """Mount what is not a plain route (the page's own scripts and styles)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="web-static")
