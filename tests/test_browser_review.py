"""The review loop as a curator meets it, in headless Chromium on ``make airflow``'s Airflow: log in,
open **Label review** from the navigation, keep one flagged painting and relabel another from its
page, then trigger painting_retrain; its dataset version applies the relabel and its report says so.

The audit's flags are written straight into ``audits``/``label_issues`` (what painting_audit would
store), so the test trains only the retrain, one optimizer, one epoch. Shares the Airflow, browser and
data fixtures of tests/test_browser.py (this module starts its own instance of them).
"""

from __future__ import annotations

import time
import urllib.request
from urllib.parse import quote

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests import test_browser as ui
from tests.test_browser import DAG, Page, _log_in, _manual_runs, _rest, _token

# The same fixtures as tests/test_browser.py, started for this module.
browser, airflow, demo_data = ui.browser, ui.airflow, ui.demo_data

pytestmark = pytest.mark.e2e

#: The retrain's options: the cpu preset, every painting of the selected artists (no equalising
#: subsample could drop the relabelled one), one short training.
RETRAIN = {"strategy": "capped", "optimizers": ["adam"], "epochs": 1}


def _flag_two(db_url: str, data_dir) -> tuple[str, dict[str, str], dict[str, str]]:
    """Ingest the demo set and store a ranked audit flagging two of its paintings; returns the data
    root and each flagged painting's catalog and suggested artist."""
    from painting_ml.core.config import PRESETS, RunConfig
    from painting_ml.data import ingest as catalog
    from painting_ml.data.ingest import resolve_root
    from painting_ml.data.selection import select_artists
    from painting_ml.data.versions import create_dataset_version, load_items

    catalog.ingest(data_dir, db_url)
    cfg = RunConfig(**{**PRESETS["cpu"], **RETRAIN, "data_dir": str(data_dir)})
    version = create_dataset_version(cfg, select_artists(cfg, db_url), db_url)
    artists, items = load_items(version, db_url)
    root = resolve_root(data_dir)
    first_of = {}
    for item in items:
        if item.split == "train":
            first_of.setdefault(item.artist, item.filename)
    a, b = first_of[artists[0]], first_of[artists[1]]
    catalog_of, suggested_of = {a: artists[0], b: artists[1]}, {a: artists[2], b: artists[2]}
    with psycopg.connect(db_url) as conn:
        audit = conn.execute("INSERT INTO audits (audit_key, dataset_version_id, data_root, folds, recipe, config, "
                             "status) VALUES ('browser:audit', %s, %s, 5, 'head', '{}', 'ranked') RETURNING id",
                             (version, root)).fetchone()[0]
        for rank, f in enumerate((a, b), 1):
            conn.execute("INSERT INTO label_issues (audit_id, data_root, filename, catalog_artist, suggested_artist, "
                         "quality, is_issue, rank, evidence) VALUES (%s, %s, %s, %s, %s, %s, true, %s, %s)",
                         (audit, root, f, catalog_of[f], suggested_of[f], 0.01 * rank, rank, Jsonb({})))
    return root, catalog_of, suggested_of


def test_a_curator_keeps_one_relabels_another_and_the_retrain_counts_the_override(browser, airflow, demo_data,
                                                                                  db_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, catalog_of, suggested_of = _flag_two(db_url, demo_data)
    kept, moved = list(catalog_of)
    page = Page(browser, airflow)
    step = "login"
    try:
        browser.get(f"{airflow.base_url}/auth/login?next={quote('/')}")
        _log_in(page)

        # --- the queue from the navigation's Label review entry -----------------------------------
        step = "queue"
        page.wait(lambda: browser.execute_script("return location.pathname") == "/", 30, "the home page")
        browser.get(f"{airflow.base_url}/plugin/painting-label-review")
        browser.switch_to.frame(page.css("iframe[title='Label review']"))
        rows = page.wait(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.issue"), 30, "the queue's rows")
        assert [r.get_attribute("data-filename") for r in rows] == [kept, moved]

        # --- keep the first painting -------------------------------------------------------------
        step = "keep"
        page.click(rows[0].find_element(By.CSS_SELECTOR, "a.open"))
        page.wait(lambda: kept in page.css("h2").text, 30, "the painting's page")
        assert browser.find_element(By.CSS_SELECTOR, "td.catalog").text == catalog_of[kept]
        page.click(page.button(f"Keep {catalog_of[kept]}"))
        notice = page.css("p.ok").text
        assert f"Recorded for {kept}" in notice and "keep by admin" in notice

        # --- relabel the second to the suggested artist ------------------------------------------
        step = "relabel"
        rows = page.wait(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.issue"), 30, "the queue's rows")
        assert [r.get_attribute("data-filename") for r in rows] == [moved]  # the kept one left the queue
        page.click(rows[0].find_element(By.CSS_SELECTOR, "a.open"))
        page.wait(lambda: moved in page.css("h2").text, 30, "the painting's page")
        select = Select(page.css("select[name='new_artist']"))
        assert select.first_selected_option.text == suggested_of[moved]
        page.click(page.button("Relabel"))
        assert f"relabel to '{suggested_of[moved]}' by admin" in page.css("p.ok").text
        assert not browser.find_elements(By.CSS_SELECTOR, "tr.issue")
        browser.switch_to.default_content()
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT filename, decision, new_artist, reviewer FROM label_reviews ORDER BY id"
                                ).fetchall() == [(kept, "keep", None, "admin"),
                                                 (moved, "relabel", suggested_of[moved], "admin")]

        # --- the next retrain applies the override and its report says so ----------------------------
        step = "retrain"
        token = _token(airflow)
        _rest(airflow, "PATCH", f"/api/v2/dags/{DAG}", token, {"is_paused": False})
        before = {r["dag_run_id"] for r in _manual_runs(airflow, token)}
        started = time.monotonic()
        run_id = _rest(airflow, "POST", f"/api/v2/dags/{DAG}/dagRuns", token,
                       {"logical_date": None, "conf": RETRAIN})["dag_run_id"]
        assert run_id not in before
        browser.get("about:blank")  # nothing polling and redrawing while the retrain trains
        state = page.wait(lambda: (s := _rest(airflow, "GET", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id)}",
                                               token)["state"]) in ("success", "failed") and s,
                          1200, f"run {run_id} to finish", every=3)
        assert state == "success", airflow.logs()
        print(f"retrain {run_id} succeeded in {time.monotonic() - started:.0f} s")
        with psycopg.connect(db_url) as conn:
            model_run, applied = conn.execute(
                "SELECT r.id, v.overrides_applied FROM runs r JOIN dataset_versions v ON v.id = r.dataset_version_id "
                "WHERE starts_with(r.run_key, %s) ORDER BY r.id LIMIT 1", (f"{DAG}:{run_id}:",)).fetchone()
            artist = conn.execute("SELECT i.artist FROM dataset_items i JOIN runs r ON r.dataset_version_id = "
                                  "i.version_id WHERE r.id = %s AND i.filename = %s", (model_run, moved)).fetchone()
        assert applied == 1 and artist == (suggested_of[moved],)

        step = "report"
        report = f"/painting/dags/{DAG}/runs/{quote(run_id, safe='')}/models/{model_run}/report.html"
        browser.get(airflow.base_url + report)
        page.wait(lambda: "1 label override applied" in browser.find_element(By.CSS_SELECTOR, "p.overrides").text,
                  30, "the report's overrides line")
        req = urllib.request.Request(airflow.base_url + report, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert "1 label override applied" in resp.read().decode()
    except Exception:
        browser.switch_to.default_content()
        shot = page.save(f"failed-review-{step}")
        print(f"screenshot of the failing step: {shot}\n{airflow.logs()}")
        raise
