"""Plots, mosaics and the HTML run report — opened in headless Chromium to prove it renders."""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import psycopg
import pytest
from conftest import stored
from PIL import Image

from painting_ml import pipeline
from painting_ml.core.config import RunConfig
from painting_ml.results.mosaics import artist_slugs, mosaic_tiles
from painting_ml.results.plots import confusion_matrix_from_rows

pytestmark = pytest.mark.train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def reported_run(evaluated_run, model_db):
    return evaluated_run


def test_mosaic_tiles_predicted_and_real():
    preds = [{"path": "a1", "true_artist": "A", "predicted_artist": "A"},
             {"path": "b1", "true_artist": "B", "predicted_artist": "A"},
             {"path": "a2", "true_artist": "A", "predicted_artist": "B"}]
    tiles, title = mosaic_tiles(preds, "A", "predicted", 10)
    assert [t["path"] for t in tiles] == ["a1", "b1"] and [t["correct"] for t in tiles] == [True, False]
    assert tiles[1]["caption"] == "really B" and "Predicted as A" in title and "50% correct" in title
    tiles, title = mosaic_tiles(preds, "A", "real", 10)
    assert [t["path"] for t in tiles] == ["a1", "a2"] and tiles[1]["caption"] == "as B"
    assert "Real paintings by A" in title and "accuracy 50%" in title
    assert len(mosaic_tiles(preds, "A", "real", 1)[0]) == 1


def test_slugs_stay_unique():
    slugs = artist_slugs(["Zoë Kovač", "Zoe Kovac", "Ελληνικός"])
    assert len(set(slugs.values())) == 3 and slugs["Zoë Kovač"] == "zoe-kovac"


def test_confusion_matrix_from_rows():
    m = confusion_matrix_from_rows(["a", "b"], [{"true_label": "a", "predicted_label": "b", "count": 2},
                                                 {"true_label": "b", "predicted_label": "b", "count": 3}])
    assert m.tolist() == [[0, 2], [0, 3]]


def test_artifacts_are_registered_once_with_their_hash(model_db, reported_run):
    run_id = reported_run["run_id"]
    with psycopg.connect(model_db) as conn:
        rows = conn.execute("SELECT kind, path, bytes, sha256 FROM artifacts WHERE run_id = %s", (run_id,)).fetchall()
    kinds = [r[0] for r in rows]
    assert kinds.count("mosaic_predicted") == kinds.count("mosaic_real") == 3
    assert kinds.count("report") == 1 and kinds.count("plot") == 4  # curves, 2 confusions, F1 bars
    import hashlib

    for _, path, size, sha in rows:
        data = stored(path).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    pipeline.mosaics_step(RunConfig(data_dir="-", mosaic_thumb=48), run_id)
    pipeline.report_step(run_id)
    with psycopg.connect(model_db) as conn:
        again = conn.execute("SELECT count(*) FROM artifacts WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert again == len(rows)


def test_mosaic_images_have_the_title_and_borders(reported_run):
    folder = Path(reported_run["mosaics"])
    files = sorted(p.name for p in folder.glob("*.png"))
    assert len(files) == 6 and sum(f.startswith("real_") for f in files) == 3
    img = np.asarray(Image.open(folder / files[0]).convert("RGB"))
    green = np.all(img == (46, 160, 67), axis=-1).sum()
    red = np.all(img == (210, 40, 40), axis=-1).sum()
    assert green + red > 100  # every thumbnail is framed


def test_report_renders_in_headless_chromium(reported_run, tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    report = Path(reported_run["report"])
    html = report.read_text()
    assert "Promotion" in html and "Per-class test metrics" in html and "style" in html
    # The data-quality gate's figures of the run's dataset version (CPU_DEMO's loose thresholds: it passed).
    assert "Data-quality gate" in html and "usable paintings" in html and ("passed" in html)
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
                "--window-size=1280,2000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        title = driver.title
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
    assert title == f"painting_ml run {reported_run['run_id']}"
    assert len(images) == 4 + 6  # plots + two mosaics per artist
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert broken == []
    pixels = np.asarray(shot)
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # not a blank page
