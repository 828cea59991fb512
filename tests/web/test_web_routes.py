"""The dashboard's routes and Optuna's mounted dashboard, through the real app and DB."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import example_job, make_key

TASK = {
    "model": {"name": "mlp", "params": {"width": 8}},
    "dataset": {"name": "digits"},
    "epochs": 1,
    "metric": "val_accuracy",
    "direction": "maximize",
}


def _submit(client: TestClient, auth: dict[str, str], *, run: bool = True) -> str:
    """A one-trial job, run as a worker runs it (the worker creates the Optuna study)."""
    from workers.trial_runner import run_trial

    body = example_job(task=TASK, n_trials=1, max_parallel=1)
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job_id = str(response.json()["id"])
    if run:
        run_trial(job_id, 0, "w1")
    return job_id


def test_page_and_static_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="login-form"' in page.text and "/static/plotly.min.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and "javascript" in plotly.headers["content-type"]
    assert len(plotly.content) > 1_000_000 and b"plotly" in plotly.content[:2000].lower()
    for asset in ("app.js", "job.js", "charts.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200, asset
    assert client.get("/static/missing.js").status_code == 404


def test_login_sets_a_cookie_only_for_a_valid_key(client: TestClient, api_key: str) -> None:
    refused = client.post("/web/session", headers={"Authorization": "Bearer osk_wrong_00000000"})
    assert refused.status_code == 401 and "optserve_key" not in refused.cookies
    accepted = client.post("/web/session", headers={"Authorization": f"Bearer {api_key}"})
    assert accepted.status_code == 204
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/optuna" in cookie and "SameSite=strict" in cookie


def test_optuna_dashboard_needs_a_key_and_the_job_of_its_tenant(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = _submit(client, auth)
    studies = f"/optuna/{job_id}/api/studies"
    assert client.get(studies).status_code == 401
    other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
    assert client.get(studies, headers=other).status_code == 404
    assert client.get(f"/optuna/{job_id}/dashboard", headers=other).status_code == 404
    answer = client.get(studies, headers=auth)
    assert answer.status_code == 200, answer.text
    names = [s["study_name"] for s in answer.json()["study_summaries"]]
    assert names == [f"job-{job_id}"]


def test_optuna_dashboard_shows_one_study_and_is_read_only(
    client: TestClient, auth: dict[str, str], api_key: str
) -> None:
    mine, sibling = _submit(client, auth), _submit(client, auth)
    sibling_study = client.get(f"/optuna/{sibling}/api/studies", headers=auth).json()
    sibling_id = sibling_study["study_summaries"][0]["study_id"]
    # the same tenant's other study is not reachable through this job's dashboard
    assert client.get(f"/optuna/{mine}/api/studies/{sibling_id}", headers=auth).status_code == 404
    assert (
        client.get(f"/optuna/{sibling}/api/studies/{sibling_id}", headers=auth).status_code == 200
    )
    deleted = client.delete(f"/optuna/{sibling}/api/studies/{sibling_id}", headers=auth)
    assert deleted.status_code == 405
    assert client.get(f"/optuna/{sibling}/api/studies", headers=auth).json()["study_summaries"]


def test_optuna_dashboard_opens_with_the_login_cookie(client: TestClient, api_key: str) -> None:
    job_id = _submit(client, {"Authorization": f"Bearer {api_key}"})
    assert (
        client.post("/web/session", headers={"Authorization": f"Bearer {api_key}"}).status_code
        == 204
    )
    root = client.get(f"/optuna/{job_id}/", follow_redirects=False)
    assert root.status_code == 302 and root.headers["location"] == f"/optuna/{job_id}/dashboard"
    page = client.get(f"/optuna/{job_id}/dashboard/studies/1")
    assert page.status_code == 200, page.text
    assert f'src="/optuna/{job_id}/static/bundle.js"' in page.text
    assert "Content-Security-Policy" in page.headers
    prefix_js = b'location.pathname.split("/").slice(0,3).join("/")'
    for encoding in ("gzip", "identity"):
        bundle = client.get(
            f"/optuna/{job_id}/static/bundle.js", headers={"Accept-Encoding": encoding}
        )
        assert bundle.status_code == 200
        assert bundle.headers.get("content-encoding") == (encoding if encoding == "gzip" else None)
        assert bundle.content.count(prefix_js) == 2  # httpx decodes the gzip one
    client.cookies.clear()
    assert client.get(f"/optuna/{job_id}/dashboard").status_code == 401


def test_optuna_dashboard_of_a_job_not_started_yet(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = _submit(client, auth, run=False)
    answer = client.get(f"/optuna/{job_id}/api/studies", headers=auth)
    assert answer.status_code == 409, answer.text
    assert answer.json()["detail"][0]["loc"] == ["path", "job_id"]
