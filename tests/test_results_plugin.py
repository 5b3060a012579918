"""The Airflow UI plugin's pure parts: the results page and the file guard (the whole plugin runs
in a real api-server in tests/test_browser.py)."""

from __future__ import annotations

import pytest

from painting_ml.orchestration.results_plugin import (
    PaintingResultsPlugin,
    create_app,
    read_dag_runs,
    render_runs_page,
    report_href,
    resolve_run_file,
    run_prefix,
)

pytestmark = pytest.mark.unit


def _row(**over):
    row = {"id": 7, "optimizer": "adam", "backbone": "resnet18", "status": "evaluated", "test_accuracy": 0.8123,
           "macro_f1": 0.75, "promoted": True, "reasons": ["macro-F1 0.75 >= 0.70"], "is_champion": True,
           "href": "/painting/dags/d/runs/r/models/7/report.html", "has_report": True}
    return {**row, **over}


def test_the_page_shows_the_headline_figures_and_the_verdict():
    html = render_runs_page("Runs", [_row(), _row(id=8, optimizer="sgd", promoted=None, test_accuracy=None)], "none")
    assert 'class="num test-accuracy">0.812<' in html and 'class="num macro-f1">0.750<' in html
    assert "promoted (champion)" in html and "not the sweep's best" in html and ">–<" in html
    assert html.count('class="report-link"') == 2
    refused = render_runs_page("Runs", [_row(promoted=False, is_champion=False)], "none")
    assert ">not promoted<" in refused and 'title="macro-F1 0.75 &gt;= 0.70"' in refused
    assert "none" in render_runs_page("Runs", [], "none")


def test_the_page_escapes_what_it_did_not_write():
    html = render_runs_page("<b>t</b>", [_row(optimizer="<script>x</script>", has_report=False)], "")
    assert "<script>x" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "not rendered yet" in html


def test_report_links_encode_airflow_run_ids():
    run_id = "manual__2026-11-29T20:37:20.062552+00:00"
    href = report_href("painting_retrain", run_id, 3, "plots/f1_artist.png")
    assert href == ("/painting/dags/painting_retrain/runs/manual__2026-11-29T20%3A37%3A20.062552%2B00%3A00"
                    "/models/3/plots/f1_artist.png")
    assert run_prefix("painting_retrain", run_id) == f"painting_retrain:{run_id}:"


@pytest.mark.parametrize("path, ok", [("report.html", True), ("plots/a.png", True), ("../secret.txt", False),
                                      ("plots/../../secret.txt", False), ("/etc/passwd", False),
                                      ("plots", False), ("missing.png", False), ("link.txt", False)])
def test_only_files_inside_the_run_folder_are_served(tmp_path, path, ok):
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "report.html").write_text("r")
    (run / "plots" / "a.png").write_bytes(b"p")
    (tmp_path / "secret.txt").write_text("s")
    (run / "link.txt").symlink_to(tmp_path / "secret.txt")
    found = resolve_run_file(run, path)
    assert (found is not None) == ok and (found is None or found.is_relative_to(run.resolve()))


def test_the_plugin_registers_the_app_and_the_two_views():
    (app,) = PaintingResultsPlugin.fastapi_apps
    assert app["url_prefix"] == "/painting"
    views = {v["name"]: v for v in PaintingResultsPlugin.external_views}
    assert views["Results"]["destination"] == "dag_run" and "{DAG_ID}" in views["Results"]["href"] \
        and "{RUN_ID}" in views["Results"]["href"]
    assert views["Painting results"]["destination"] == "nav"
    routes = {r.path for r in app["app"].routes}
    expected = {"/", "/dags/{dag_id}/runs/{run_id}", "/dags/{dag_id}/runs/{run_id}/models/{model_run}/{path:path}"}
    assert expected <= routes


@pytest.mark.parametrize("status, accept, expected", [
    (401, "text/html,application/xhtml+xml,*/*;q=0.8", 303),  # a browser without a session: to login
    (401, "application/json", 401),  # an API client: the 401 itself
    (401, "*/*", 401),
    (403, "text/html", 403),  # logged in but not allowed: no redirect loop
])
def test_a_browser_without_a_session_is_sent_to_login_and_back(monkeypatch, status, accept, expected):
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    class AuthManager:
        def get_url_login(self, next_url=None):
            return f"/auth/login?next={next_url}"

    def refuse():
        raise HTTPException(status, "Not authenticated")

    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: AuthManager())
    app = create_app()
    app.dependency_overrides[read_dag_runs] = refuse
    api_server = FastAPI()
    api_server.mount("/painting", app)  # as Airflow mounts a plugin's app
    page = "/painting/dags/painting_retrain/runs/manual__1/models/3/report.html?x=1"
    got = TestClient(api_server).get(page, headers={"Accept": accept}, follow_redirects=False)
    assert got.status_code == expected
    if expected == 303:
        assert got.headers["location"] == f"/auth/login?next={page}"
    else:
        assert got.json() == {"detail": "Not authenticated"}
