"""The Airflow UI as people use it, in headless Chromium: log in, open painting_retrain's trigger
form, see the config schema's sections, fill in a few Params, have an invalid value refused, trigger,
wait for success, then open the run's Results tab (the painting_results plugin) and click through
to report.html with its images.

Airflow is the one ``make airflow`` starts (painting_ml.orchestration.local_server: api-server,
scheduler, dag-processor, triggerer, LocalExecutor) on a fresh metadata database. Screenshots and
the page source go to ``$PAINTING_TEST_ARTIFACTS`` (default ``var/test-artifacts``) when a step
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
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("PAINTING_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))
DAG = "painting_retrain"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("PAINTING_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium/chromedriver missing: apt-get install chromium chromium-driver")
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


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, server_url, db_url, painting_home):
    """`make airflow`'s Airflow on a metadata database of its own, stopped and dropped afterwards."""
    from painting_ml.core import db
    from painting_ml.core.settings import get_settings
    from painting_ml.orchestration.local_server import LocalAirflow, free_port

    meta = db.create_database(server_url, "pm_airflow")
    # Two gpu slots: the two trainings of the sweep run side by side (the test is about the UI).
    local = LocalAirflow(get_settings(), db_url, meta, port=free_port(), gpu_slots=2,
                         home=tmp_path_factory.mktemp("airflow_ui") / "airflow",
                         extra_env={"AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                                    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
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


def test_trigger_form_runs_the_dag_and_the_report_opens_from_the_ui(browser, airflow, tiny_data, db_url):
    from selenium.webdriver.common.by import By

    from painting_ml.core.config import Section

    page = Page(browser, airflow)
    step = "login"
    try:
        # --- log in with the simple auth manager's generated password --------------------------
        browser.get(f"{airflow.base_url}/auth/login?next={quote('/dags/' + DAG)}")
        page.css("input[name='username']").send_keys("admin")
        page.css("input[name='password']").send_keys(airflow.password())
        page.click(page.button("Sign in"))

        # --- the DAG page and its trigger form, with the config schema's sections ---------------
        step = "trigger-form"
        page.click(page.button("Trigger Dag", timeout=120))  # waits for the dag-processor to parse it
        for section in Section:
            page.button(section.value)
        # The sections form an accordion with one section open at a time.
        page.section(Section.DATA)
        page.fill("data_dir", str(tiny_data))
        page.fill("n_artists", "3")
        page.section(Section.QUALITY)
        page.fill("min_split_paintings", "1")  # the tiny set has 1-3 paintings per artist in val/test
        page.section(Section.MODEL)
        page.choose("backbone", "resnet18")
        page.choose("fine_tune", "all")
        page.fill("weights", "")
        page.fill("head_units", "32")
        page.section(Section.OPTIMISATION)
        page.fill("epochs", "1")
        page.fill("batch_size", "8")
        page.fill("optimizers", "adam\nsgd")

        # --- invalid values are refused ----------------------------------------------------------
        step = "invalid-value"
        page.section(Section.MODEL)
        page.fill("image_size", "8")  # below the schema's minimum: the number field clamps it
        assert page.css("[name='element_image_size']").get_attribute("value") == "32"
        page.section(Section.OPTIMISATION)
        page.fill("optimizers", "adam\nlbfgs")  # not one of the schema's optimizers
        token = _token(airflow)
        before = {r["dag_run_id"] for r in _manual_runs(airflow, token)}
        trigger = page.button("Trigger", within="//*[@role='dialog']")
        page.click(trigger)
        refusal = page.wait(lambda: next((e.text for e in browser.find_elements(
            By.XPATH, "//*[@role='dialog']//*[contains(., 'lbfgs') and not(self::textarea)][not(*)]")
            if e.is_displayed()), None), 20, "the form to refuse optimizers=[adam, lbfgs]")
        assert "lbfgs" in refusal
        assert {r["dag_run_id"] for r in _manual_runs(airflow, token)} == before, "no run was created"
        page.fill("optimizers", "adam\nsgd")

        # --- trigger and wait for the run to succeed -------------------------------------------
        step = "run"
        started = time.monotonic()
        page.click(trigger)
        run = page.wait(lambda: next((r for r in _manual_runs(airflow, token) if r["dag_run_id"] not in before), None),
                        30, "the triggered run to appear")
        run_id = run["dag_run_id"]
        assert run["conf"]["optimizers"] == ["adam", "sgd"] and run["conf"]["image_size"] == 32
        assert run["conf"]["backbone"] == "resnet18" and run["conf"]["data_dir"] == str(tiny_data)
        state = page.wait(lambda: (s := _rest(airflow, "GET", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id)}",
                                               token)["state"]) in ("success", "failed") and s,
                          # ~3 min on 2 idle cores; twice that when other work shares them.
                          600, f"run {run_id} to finish", every=3)
        assert state == "success", airflow.logs()
        print(f"run {run_id} succeeded in {time.monotonic() - started:.0f} s")

        # --- the Results tab of the DAG run: headline figures and the report link --------------
        step = "results-tab"
        browser.get(f"{airflow.base_url}/dags/{DAG}/runs/{quote(run_id)}")
        page.click(page.css("a[href$='/plugin/painting-results']"))
        frame = page.css("iframe[title='Results']")
        docs_shot = page.save("airflow-ui")
        browser.switch_to.frame(frame)
        rows = page.wait(lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-run-id]"), 30, "result rows")
        assert len(rows) == 2
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
        images = page.wait(lambda: (imgs := browser.find_elements(By.TAG_NAME, "img")) and browser.execute_script(
            "return document.readyState") == "complete" and imgs, 30, "the report's images")
        sizes = {i.get_attribute("src").rsplit("/", 2)[-2] + "/" + i.get_attribute("src").rsplit("/", 1)[-1]:
                 browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images}
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
        if os.environ.get("PAINTING_UPDATE_DOCS") == "1":
            shutil.copyfile(docs_shot, REPO / "docs" / "airflow-ui.png")
    except Exception:
        browser.switch_to.default_content()
        shot = page.save(f"failed-{step}")
        print(f"screenshot of the failing step: {shot}\n{airflow.logs()}")
        raise
