"""The Airflow UI as a newcomer meets it, in headless Chromium: log in, open painting_retrain's trigger
form, see the config schema's sections with each field's limits and only the genuinely required
fields marked required, have an invalid value refused, then trigger with *no edits to the form* —
the CPU preset ``make airflow`` starts with fits the demo set — wait for success, open the run's
Results tab (the painting_results plugin) and click through to report.html with its images. An
unauthenticated report link lands on the login page and, after logging in, on the report.

Airflow is the one ``make airflow`` starts (painting_ml.orchestration.local_server: api-server,
scheduler, dag-processor, triggerer, LocalExecutor sized for two cores, the ``cpu`` preset) on a
fresh metadata database, with a small demo-shaped data set as its default data folder. Screenshots
and the page source go to ``$PAINTING_TEST_ARTIFACTS`` (default ``var/test-artifacts``) when a step
fails; ``PAINTING_UPDATE_DOCS=1`` also refreshes the README's screenshot ``docs/airflow-ui.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from conftest import PARSE_ONCE

from painting_ml.orchestration.local_airflow import airflow_bin

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("PAINTING_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))
DAG = "painting_retrain"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


#: The machine the local Airflow is sized for: two cores, as on a laptop or a small CI runner.
CORES = 2


@pytest.fixture(scope="module")
def demo_data(painting_home):
    """A demo-shaped set (10 artists, as `make demo`'s, fewer paintings each) where `make demo` puts its own."""
    from painting_ml.data.synth import generate

    out = painting_home / "data" / "demo"
    generate(out, artists=10, per_artist=8, size=48, seed=5, test_only_artists=1, broken=1)
    return out


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, server_url, db_url, painting_home, demo_data):
    """`make airflow`'s Airflow (the cpu preset, sized for :data:`CORES` cores) on a metadata database of
    its own, stopped and dropped afterwards."""
    from painting_ml.core import db
    from painting_ml.core.settings import get_settings
    from painting_ml.orchestration.local_server import LocalAirflow, free_port

    meta = db.create_database(server_url, "pm_airflow")
    # Two gpu slots: two trainings of the sweep run side by side (the test is about the UI).
    local = LocalAirflow(get_settings(), db_url, meta, port=free_port(), gpu_slots=2,
                         home=tmp_path_factory.mktemp("airflow_ui") / "airflow", preset="cpu", cores=CORES,
                         extra_env={**PARSE_ONCE, "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                                    "PAINTING_DATA_DIR": str(demo_data),
                                    "WANDB_MODE": "disabled"})
    try:
        local.start()
        yield local
    finally:
        local.stop()
        db.drop_database(server_url, meta)


class Page:
    """Small waits and lookups on top of Selenium, with a screenshot when a step fails."""

    def __init__(self, driver, airflow):
        self.d, self.airflow = driver, airflow

    def wait(self, check, timeout: float = 30, what: str = "", every: float = 0.3):
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = check()
            except (StaleElementReferenceException, WebDriverException):
                value = None
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def css(self, selector: str, timeout: float = 30):
        from selenium.webdriver.common.by import By

        return self.wait(lambda: next((e for e in self.d.find_elements(By.CSS_SELECTOR, selector)
                                       if e.is_displayed()), None), timeout, selector)

    def button(self, text: str, timeout: float = 30, within: str = ""):
        """A visible button by its text or aria-label; ``within`` an XPath to search under."""
        from selenium.webdriver.common.by import By

        xpath = f"{within}//button[normalize-space()='{text}' or @aria-label='{text}']"
        return self.wait(lambda: next((e for e in self.d.find_elements(By.XPATH, xpath) if e.is_displayed()), None),
                         timeout, f"button {text!r}")

    def click(self, element) -> None:
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        self.d.execute_script("arguments[0].click();", element)

    def section(self, title: str) -> None:
        """Open the trigger form's section ``title`` (an accordion: opening one closes the others)."""
        header = self.button(title, within="//*[@role='dialog']")
        if header.get_attribute("aria-expanded") != "true":
            self.focus(header)
            self.wait(lambda: header.get_attribute("aria-expanded") == "true", 10, f"section {title} to open")

    def focus(self, element) -> None:
        """Scroll to ``element`` and click it, retrying while an opening section still covers it."""
        def clicked():
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            element.click()
            return True

        self.wait(clicked, 10, "a clickable form field")

    def fill(self, name: str, value: str) -> None:
        """Replace the value of the form field ``element_<name>`` the way a person types."""
        from selenium.webdriver.common.keys import Keys

        field = self.css(f"[name='element_{name}']")
        self.focus(field)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        if value:
            field.send_keys(value)
        field.send_keys(Keys.TAB)

    def choose(self, name: str, option: str) -> None:
        """Pick ``option`` in the select of Param ``name`` (a searchable combobox): type, press Enter."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = self.css(f"#element_{name} input[role='combobox']")
        self.focus(box)
        box.send_keys(option, Keys.ENTER)
        hidden = self.d.find_element(By.CSS_SELECTOR, f"input[type='hidden'][name='element_{name}']")
        self.wait(lambda: hidden.get_attribute("value") == option, 10, f"{name} = {option}")

    def row(self, name: str):
        """The form row of Param ``name``: its label, field, description and any error."""
        from selenium.webdriver.common.by import By

        field = self.css(f"[name='element_{name}'], #element_{name}")  # an input, or an object editor's wrapper
        return field.find_element(By.XPATH, "./ancestor::*[@data-scope='field' and @data-part='root'][1]")

    def required(self, name: str) -> bool:
        """Whether the form marks Param ``name`` required (the red star beside its title)."""
        row = self.row(name)
        return row.get_attribute("data-required") is not None or bool(
            self.d.execute_script("return arguments[0].querySelector('[class*=\"requiredIndicator\"]')", row))

    def section_text(self, title: str) -> str:
        """The visible text of the form after opening section ``title``."""
        self.section(title)
        return self.css("[role='dialog']").text

    def report_images(self) -> dict[str, int]:
        """The images of the open report.html: ``folder/file`` -> natural width (0: did not load)."""
        from selenium.webdriver.common.by import By

        images = self.wait(lambda: (imgs := self.d.find_elements(By.TAG_NAME, "img")) and self.d.execute_script(
            "return document.readyState") == "complete" and imgs, 30, "the report's images")
        return {i.get_attribute("src").rsplit("/", 2)[-2] + "/" + i.get_attribute("src").rsplit("/", 1)[-1]:
                self.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images}

    def save(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.d.save_screenshot(str(path))
        (ARTIFACTS / f"{name}.html").write_text(self.d.page_source)
        return path


def _rest(airflow, method: str, path: str, token: str, body=None):
    req = urllib.request.Request(airflow.base_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def _manual_runs(airflow, token: str) -> list[dict]:
    """The DAG's manually triggered runs (the scheduler may add a scheduled one on unpause)."""
    return [r for r in _rest(airflow, "GET", f"/api/v2/dags/{DAG}/dagRuns", token)["dag_runs"]
            if r["run_type"] == "manual"]


def _token(airflow) -> str:
    req = urllib.request.Request(airflow.base_url + "/auth/token", method="POST",
                                 data=json.dumps({"username": "admin", "password": airflow.password()}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


def _task_logs(airflow, token: str, run_id: str):
    """(task label, structured log lines) of every task instance of ``run_id`` that ran."""
    base = f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id)}/taskInstances"
    for ti in _rest(airflow, "GET", f"{base}?limit=100", token)["task_instances"]:
        if not ti.get("try_number"):
            continue
        try:
            log = _rest(airflow, "GET", f"{base}/{ti['task_id']}/logs/{ti['try_number']}?map_index={ti['map_index']}"
                                        "&full_content=true", token)
        except urllib.error.HTTPError:  # skipped before it ran
            continue
        label = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        yield label, [line for line in log["content"] if isinstance(line, dict)]


def _executor_workers(airflow) -> list[str]:
    """The LocalExecutor's worker processes: the scheduler's children with the workers' process title."""
    import psutil

    scheduler = psutil.Process(airflow.procs["scheduler"].pid)
    titles = []
    for child in scheduler.children(recursive=True):
        try:
            titles.append(" ".join(child.cmdline()).strip())
        except psutil.NoSuchProcess:
            continue
    return [t for t in titles if t.startswith("airflow worker -- LocalExecutor")]


def _log_in(page) -> None:
    page.css("input[name='username']").send_keys("admin")
    page.css("input[name='password']").send_keys(page.airflow.password())
    page.click(page.button("Sign in"))


def test_the_executor_starts_one_worker_per_core(airflow):
    """On a two-core machine the LocalExecutor forks two workers, not [core] parallelism's default 32."""
    workers = Page(None, airflow).wait(lambda: (w := _executor_workers(airflow)) and len(w) >= CORES and w, 60,
                                       "the executor's workers", every=1)
    assert len(workers) == CORES and all(w.endswith("<idle>") for w in workers), workers


def test_the_airflow_cli_reads_the_ui_s_database(airflow):
    """What `painting-ml airflow --print-env` exports is enough for the airflow CLI to see the UI's DAGs."""
    import subprocess

    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **airflow.cli_env()}
    listed = Page(None, airflow).wait(lambda: (out := subprocess.run(
        [airflow_bin(), "dags", "list", "-o", "json"], env=env, capture_output=True, text=True, timeout=120).stdout)
        and DAG in out and out, 120, "the CLI to list the DAGs the dag-processor parsed", every=3)
    assert {"painting_retrain", "painting_ingest", "painting_attribute", "painting_gc"} <= \
        {d["dag_id"] for d in json.loads(listed.strip().splitlines()[-1])}  # the JSON after any warnings
    errors = subprocess.run([airflow_bin(), "dags", "list-import-errors", "-o", "json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert errors.returncode == 0 and "painting_retrain.py" not in errors.stdout, errors.stdout + errors.stderr


def test_trigger_form_runs_the_dag_with_no_edits_and_the_report_opens_from_the_ui(browser, airflow, demo_data):
    from selenium.webdriver.common.by import By

    from painting_ml.core.config import PRESETS, Section

    page = Page(browser, airflow)
    preset = PRESETS["cpu"]
    step = "login"
    try:
        # --- log in with the simple auth manager's generated password --------------------------
        browser.get(f"{airflow.base_url}/auth/login?next={quote('/dags/' + DAG)}")
        _log_in(page)

        # --- the DAG page and its trigger form, with the config schema's sections ---------------
        step = "trigger-form"
        page.click(page.button("Trigger Dag", timeout=120))  # waits for the dag-processor to parse it
        for section in Section:
            page.button(section.value)
        # Each field shows its limits; only fields that need a value are marked required.
        page.section(Section.DATA)
        assert page.required("data_dir") and page.required("n_artists")
        assert not page.required("artists")  # empty by default: every strategy but list
        page.section(Section.MODEL)
        assert "Takes an integer in [32, 1024]." in page.row("image_size").text
        assert not page.required("loss_weights") and not page.required("weights")
        assert "Takes a list of adam, adamw, rmsprop, sgd." in page.section_text(Section.OPTIMISATION)
        assert not browser.find_elements(By.CSS_SELECTOR, "[name='element_optimizer']")  # the sweep has optimizers

        # --- invalid values are refused; an empty optional list is not ----------------------------
        step = "invalid-value"
        page.section(Section.MODEL)
        page.fill("image_size", "8")  # below the schema's minimum: the number field clamps it
        assert page.css("[name='element_image_size']").get_attribute("value") == "32"
        page.section(Section.AUGMENTATION)
        page.fill("augment", "")  # no offline transforms: an empty list is a valid choice
        assert not page.required("augment") and "required" not in page.row("augment").text.lower()
        page.section(Section.OPTIMISATION)
        page.fill("optimizers", "adam\nlbfgs")  # not one of the schema's optimizers
        token = _token(airflow)
        doc = _rest(airflow, "GET", f"/api/v2/dags/{DAG}/details", token)["doc_md"]
        assert "**The form's defaults here:** the cpu preset (PAINTING_RUN_DEFAULTS=" in doc
        before = {r["dag_run_id"] for r in _manual_runs(airflow, token)}
        page.click(page.button("Trigger", within="//*[@role='dialog']"))
        refusal = page.wait(lambda: next((e.text for e in browser.find_elements(
            By.XPATH, "//*[@role='dialog']//*[contains(., 'lbfgs') and not(self::textarea)][not(*)]")
            if e.is_displayed()), None), 20, "the form to refuse optimizers=[adam, lbfgs]")
        assert "lbfgs" in refusal and "augment" not in refusal
        assert {r["dag_run_id"] for r in _manual_runs(airflow, token)} == before, "no run was created"

        # --- a fresh form, triggered as it comes: the preset's defaults on the demo set --------------
        step = "run"
        browser.refresh()
        page.click(page.button("Trigger Dag", timeout=60))
        page.button(Section.DATA.value)
        started = time.monotonic()
        page.click(page.button("Trigger", within="//*[@role='dialog']"))
        run = page.wait(lambda: next((r for r in _manual_runs(airflow, token) if r["dag_run_id"] not in before), None),
                        30, "the triggered run to appear")
        run_id = run["dag_run_id"]
        conf = run["conf"]
        assert conf["data_dir"] == str(demo_data) and conf["artists"] == [] and "optimizer" not in conf
        assert {k: conf[k] for k in preset} == preset, "the form's defaults are the cpu preset"
        # A blank tab while the run trains: the open DAG page polls and redraws all along, a third of a
        # core the trainings are short of.
        browser.get("about:blank")
        state = page.wait(lambda: (s := _rest(airflow, "GET", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id)}",
                                               token)["state"]) in ("success", "failed") and s,
                          # Minutes on 2 idle cores (three trainings); more when other work shares them.
                          1200, f"run {run_id} to finish", every=3)
        assert state == "success", airflow.logs()
        print(f"run {run_id} succeeded in {time.monotonic() - started:.0f} s")
        # A successful run logs no error record (none from reading the mapped evaluations past their end
        # either). TensorFlow's C++ start-up notes written straight to stderr are not log records.
        errors = [f"{task}: {line.get('event')} {line.get('detail', '')}"
                  for task, lines in _task_logs(airflow, token, run_id)
                  for line in lines if line.get("level") == "error" and line.get("logger") != "task.stderr"]
        assert errors == []

        # --- the Results tab of the DAG run: headline figures and the report link --------------
        step = "results-tab"
        browser.get(f"{airflow.base_url}/dags/{DAG}/runs/{quote(run_id)}")
        page.click(page.css("a[href$='/plugin/painting-results']"))
        frame = page.css("iframe[title='Results']")
        docs_shot = page.save("airflow-ui")
        browser.switch_to.frame(frame)
        rows = page.wait(lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-run-id]"), 30, "result rows")
        assert len(rows) == len(preset["optimizers"])
        for row in rows:
            acc = float(row.find_element(By.CSS_SELECTOR, ".test-accuracy").text)
            f1 = float(row.find_element(By.CSS_SELECTOR, ".macro-f1").text)
            assert 0 <= acc <= 1 and 0 <= f1 <= 1
        verdicts = [r.find_element(By.CSS_SELECTOR, ".promotion").text for r in rows]
        assert sum(v.startswith("promoted") or v == "not promoted" for v in verdicts) == 1, verdicts

        # --- click through to report.html: every image really loads ----------------------------
        step = "report"
        page.click(rows[0].find_element(By.CSS_SELECTOR, "a.report-link"))
        page.wait(lambda: browser.execute_script("return location.pathname").endswith("/report.html"), 30,
                  "report.html")
        sizes = page.report_images()
        assert any(k.startswith("plots/") for k in sizes) and any(k.startswith("mosaics/") for k in sizes), sizes
        assert all(w and w > 0 for w in sizes.values()), sizes
        report_url = browser.execute_script("return location.href")
        browser.switch_to.default_content()

        # --- the plugin lets in only logged-in users, and serves only the run's own files --------
        step = "plugin-guards"
        for path, token_ok, status in [(report_url, False, 401), (report_url.replace("report.html", "..%2F..%2Fx"),
                                                                  True, 404)]:
            req = urllib.request.Request(path, headers={"Authorization": f"Bearer {token}"} if token_ok else {})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=30)
            assert refused.value.code == status, path

        # --- a report link opened without a session: the login page, then the report ------------
        step = "login-redirect"
        browser.delete_all_cookies()
        browser.get(report_url)
        page.wait(lambda: browser.execute_script("return location.pathname").startswith("/auth/login"), 30,
                  "the login page")
        assert "report.html" in browser.execute_script("return decodeURIComponent(location.search)")
        _log_in(page)
        page.wait(lambda: unquote(browser.execute_script("return location.href")) == unquote(report_url), 30,
                  "back on the report")
        assert page.report_images()
        if os.environ.get("PAINTING_UPDATE_DOCS") == "1":
            shutil.copyfile(docs_shot, REPO / "docs" / "airflow-ui.png")
    except Exception:
        browser.switch_to.default_content()
        shot = page.save(f"failed-{step}")
        print(f"screenshot of the failing step: {shot}\n{airflow.logs()}")
        raise


def test_a_config_error_ends_its_task_log_in_one_line(airflow):
    """A missing weights file fails check_config at once: the log's last error is the reason, once,
    with no traceback, and the task is not retried."""
    token = _token(airflow)
    _rest(airflow, "PATCH", f"/api/v2/dags/{DAG}", token, {"is_paused": False})
    run = _rest(airflow, "POST", f"/api/v2/dags/{DAG}/dagRuns", token,
                {"logical_date": None, "conf": {"weights": "/nowhere/resnet50_notop.h5"}})
    run_id = run["dag_run_id"]
    Page(None, airflow).wait(lambda: _rest(airflow, "GET", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id)}",
                                           token)["state"] == "failed", 300, "the run to fail", every=2)
    logs = dict(_task_logs(airflow, token, run_id))
    lines = logs["check_config"]
    errors = [line for line in lines if line.get("level") == "error"]
    assert len(errors) == 1 and errors[0]["event"] == "Task exited", errors
    reason = str(errors[0]["exit_code"])
    assert reason.startswith("ConfigError: ") and "/nowhere/resnet50_notop.h5" in reason and "\n" not in reason
    assert not any("error_detail" in line for line in lines)  # no traceback
    assert sum("/nowhere/resnet50_notop.h5" in json.dumps(line) for line in lines) == 1  # said once
    ti = _rest(airflow, "GET", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id)}/taskInstances/check_config", token)
    assert ti["state"] == "failed" and ti["try_number"] == 1
