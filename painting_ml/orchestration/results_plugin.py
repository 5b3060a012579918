"""Results one click away in the Airflow UI: an Airflow 3 plugin.

A FastAPI app mounted by the api-server under ``/painting`` serves each training run's
``report.html`` with its plots and mosaics straight from the run folder, and two pages:

* a **Results** tab on every DAG run (an ``external_views`` entry with ``destination="dag_run"``):
  the runs that DAG run trained — optimizer, test accuracy, macro-F1, promoted or not — each
  linked to its report;
* a **Painting results** entry in the navigation bar: the latest runs of any DAG run;
* a **Label review** entry in the navigation bar: the label audit's review queue, where curators
  keep, relabel or leave unsure the flagged paintings (:mod:`painting_ml.orchestration.review_page`,
  with its own permissions: reading ``painting_audit``'s runs to look, editing it to act).

Every route needs a logged-in Airflow user allowed to read that DAG's runs (the UI's ``_token``
cookie or a bearer token), and files are served only from inside the run's own folder. A browser
without a session (a report link opened in a new window, an expired login) is sent to the login
page and, once logged in, back to the page it asked for; API clients get the 401.
``plugins/painting_results.py`` registers :class:`PaintingResultsPlugin` with Airflow.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from painting_ml.core import db

URL_PREFIX = "/painting"

_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1a202c}
table{border-collapse:collapse}th,td{padding:.35rem .8rem;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.yes{color:#276749;font-weight:600}
.no{color:#9b2c2c}.muted{color:#718096}
</style>"""


def run_prefix(dag_id: str, run_id: str) -> str:
    """The run-key prefix of the training runs a DAG run started."""
    return f"{dag_id}:{run_id}:"


def report_href(dag_id: str, run_id: str, model_run: int, path: str = "report.html") -> str:
    """Where the plugin serves a file of ``model_run``'s folder (relative links in reports keep working)."""
    return f"{URL_PREFIX}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/models/{model_run}/{path}"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _verdict(row: dict[str, Any]) -> str:
    if row["promoted"] is None:
        return '<span class="muted">not the sweep\'s best</span>'
    reasons = escape("; ".join(row["reasons"] or []))
    if row["promoted"]:
        return f'<span class="yes" title="{reasons}">promoted{" (champion)" if row["is_champion"] else ""}</span>'
    return f'<span class="no" title="{reasons}">not promoted</span>'


def render_runs_page(title: str, rows: list[dict[str, Any]], empty: str) -> str:
    """An HTML table of training runs: headline figures, the promotion verdict, the report link.

    Args:
        title: the page heading.
        rows: ``runs_of_dag_run``/``recent_runs`` rows, each with an ``href`` to its report.
        empty: the sentence shown when there are no rows.
    """
    body = [f"<h2>{escape(title)}</h2>"]
    if not rows:
        body.append(f'<p class="muted">{escape(empty)}</p>')
    else:
        body.append("<table><thead><tr><th>run</th><th>optimizer</th><th>backbone</th><th>status</th>"
                    "<th>test accuracy</th><th>macro-F1</th><th>promotion</th><th>report</th></tr></thead><tbody>")
        for r in rows:
            link = (f'<a class="report-link" href="{escape(r["href"])}">report.html</a>'
                    if r.get("has_report") else '<span class="muted">not rendered yet</span>')
            body.append(
                f'<tr data-run-id="{r["id"]}"><td>{r["id"]}</td><td>{escape(r["optimizer"] or "")}</td>'
                f'<td>{escape(r["backbone"] or "")}</td><td>{escape(r["status"])}</td>'
                f'<td class="num test-accuracy">{_fmt(r["test_accuracy"])}</td>'
                f'<td class="num macro-f1">{_fmt(r["macro_f1"])}</td>'
                f'<td class="promotion">{_verdict(r)}</td><td>{link}</td></tr>')
        body.append("</tbody></table>")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{_STYLE}</head>" \
           f"<body>{''.join(body)}</body></html>"


def _with_links(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        # "<dag_id>:<run_id>:<fingerprint>"; Airflow run ids contain colons (timestamps), dag ids do not.
        dag_id, rest = r["run_key"].split(":", 1)
        run_id = rest.rsplit(":", 1)[0]
        r["href"] = report_href(dag_id, run_id, r["id"])
    return rows


def resolve_run_file(run_dir: str | Path, path: str) -> Path | None:
    """The file ``path`` names inside ``run_dir``, or None when it is not a file there
    (``..``, absolute paths and symlinks out of the folder are refused)."""
    folder = Path(run_dir).resolve()
    target = (folder / path).resolve()
    return target if target.is_relative_to(folder) and target.is_file() else None


def fetch_run_file(run_dir_key: str, path: str) -> Path | None:
    """The file ``path`` of the run folder ``run_dir_key`` in the artifact store, brought to this
    host (the api-server need not be where the run was trained); None when there is no such file."""
    from painting_ml.core.store import StoreError, check_key, get_store

    try:
        key = check_key(f"{run_dir_key}/{path}")
    except ValueError:
        return None
    store = get_store()
    if not key.startswith(f"{run_dir_key}/"):
        return None
    try:
        store.fetch(key)
    except StoreError:
        return None
    return resolve_run_file(store.local_path(run_dir_key), path)


#: Who may look: a logged-in user allowed to read the DAG's runs (the ``dag_id`` path parameter).
read_dag_runs = requires_access_dag("GET", DagAccessEntity.RUN)


def login_redirect(request: Request) -> str | None:
    """Where to send a request refused for want of a session: the auth manager's login page with
    this page as ``next``, for a browser navigation (it accepts HTML); None for API clients."""
    if "text/html" not in request.headers.get("accept", ""):
        return None
    from airflow.api_fastapi.app import get_auth_manager

    page = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return get_auth_manager().get_url_login(next_url=page)


async def _unauthenticated_to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    target = login_redirect(request) if exc.status_code == 401 else None
    if target is not None:
        return RedirectResponse(target, status_code=303)
    return await http_exception_handler(request, exc)


def create_app() -> FastAPI:
    """The FastAPI app the api-server mounts at :data:`URL_PREFIX`."""
    app = FastAPI(title="painting_ml results", description="Reports, plots and mosaics of painting_ml runs")
    app.add_exception_handler(StarletteHTTPException, _unauthenticated_to_login)
    can_read_runs = Depends(read_dag_runs)

    @app.get("/", response_class=HTMLResponse, dependencies=[can_read_runs])
    def recent_runs(limit: int = 50) -> str:
        with db.connect() as conn:
            rows = db.fetch_dicts(conn, db.sql("ui", "recent_runs"), {"limit": min(max(limit, 1), 500)})
        return render_runs_page("Latest painting_ml runs", _with_links(rows),
                                "No training runs yet: trigger painting_retrain.")

    @app.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
    def dag_run_results(dag_id: str, run_id: str) -> str:
        with db.connect() as conn:
            rows = db.fetch_dicts(conn, db.sql("ui", "runs_of_dag_run"), {"prefix": run_prefix(dag_id, run_id)})
        return render_runs_page(f"Runs trained by {dag_id} / {run_id}", _with_links(rows),
                                "This DAG run trained no model (yet).")

    @app.get("/dags/{dag_id}/runs/{run_id}/models/{model_run}/{path:path}", dependencies=[can_read_runs])
    def run_file(dag_id: str, run_id: str, model_run: int, path: str) -> FileResponse:
        with db.connect() as conn:
            row = db.fetch_one(conn, db.sql("ui", "run_folder"), {"id": model_run})
        # The training run must belong to the DAG run the user was authorised for.
        if row is None or not row["run_key"].startswith(run_prefix(dag_id, run_id)):
            raise HTTPException(404, f"no training run {model_run} in {dag_id} / {run_id}")
        target = fetch_run_file(row["run_dir"], path)
        if target is None:
            raise HTTPException(404, f"{path} is not a file of run {model_run}")
        return FileResponse(target)

    from painting_ml.orchestration.review_page import add_review_routes

    add_review_routes(app, URL_PREFIX, fetch_run_file)
    return app


class PaintingResultsPlugin(AirflowPlugin):
    """Registers the results app and its three views with Airflow."""

    name = "painting_results"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "painting_ml results"}]
    external_views = [
        {"name": "Results", "href": f"{URL_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}", "destination": "dag_run",
         "url_route": "painting-results"},
        {"name": "Painting results", "href": f"{URL_PREFIX}/", "destination": "nav", "category": "browse",
         "url_route": "painting-runs"},
        {"name": "Label review", "href": f"{URL_PREFIX}/review", "destination": "nav", "category": "browse",
         "url_route": "painting-label-review"},
    ]
