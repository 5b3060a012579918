"""The CLI error contract: every user error is one line on stderr and exit status 2 — never a
traceback, never a usage block, never a silent exit 0 with a wrong answer."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from painting_ml.cli import main

pytestmark = pytest.mark.db

BIG = "99999999999999999999"  # 20 digits: past any database integer

HOSTILE = [
    # (id, argv; "{tmp}" is a temp folder, "{img}" a real image, "{list}" a JSON file holding a list)
    ("no command", []),
    ("unknown command", ["frobnicate"]),
    ("unknown flag", ["runs", "--bogus"]),
    ("runs negative limit", ["runs", "--limit", "-1"]),
    ("runs zero limit", ["runs", "--limit", "0"]),
    ("runs 20-digit limit", ["runs", "--limit", BIG]),
    ("runs text limit", ["runs", "--limit", "ten"]),
    ("runs fractional limit", ["runs", "--limit", "1.5"]),
    ("report unknown run", ["report", "--run-id", "999999"]),
    ("report without run id", ["report"]),
    ("report negative run id", ["report", "--run-id", "-3"]),
    ("report 20-digit run id", ["report", "--run-id", BIG]),
    ("evaluate unknown run", ["evaluate", "--run-id", "999999"]),
    ("promote unknown run", ["promote", "--run-id", "999999"]),
    ("promote NaN recall drop", ["promote", "--run-id", "1", "--max-recall-drop", "nan"]),
    ("promote negative recall drop", ["promote", "--run-id", "1", "--max-recall-drop", "-5"]),
    ("metrics unknown run", ["metrics", "--run-id", "999999"]),
    ("metrics with no run yet", ["metrics"]),
    ("predict top-k 0", ["predict", "{img}", "--top-k", "0"]),
    ("predict missing image", ["predict", "{tmp}/missing.jpg"]),
    ("predict unknown run", ["predict", "{img}", "--run-id", "999999"]),
    ("predict a text file", ["predict", "{tmp}/notes.jpg"]),
    ("verify one image", ["verify", "{img}"]),
    ("sql negative limit", ["sql", "compare_runs", "--param", "limit=-1"]),
    ("sql 20-digit limit", ["sql", "compare_runs", "--param", f"limit={BIG}"]),
    ("sql text limit", ["sql", "compare_runs", "--param", "limit=many"]),
    ("sql param without value", ["sql", "compare_runs", "--param", "limit"]),
    ("sql unknown query", ["sql", "nosuchquery"]),
    ("sql unknown param", ["sql", "compare_runs", "--param", "nope=1"]),
    ("sql unknown run", ["sql", "epochs", "--param", "run_id=999999"]),
    ("sql csv and json", ["sql", "compare_runs", "--csv", "--json"]),
    ("set artists as numbers", ["train", "--data-dir", "{tmp}", "--set", "artists=[1,2]"]),
    ("set number as boolean", ["train", "--data-dir", "{tmp}", "--set", "learning_rate=true"]),
    ("set boolean as number", ["train", "--data-dir", "{tmp}", "--set", "class_weights=1"]),
    ("set unknown key", ["train", "--data-dir", "{tmp}", "--set", "nokey=1"]),
    ("set without key", ["train", "--data-dir", "{tmp}", "--set", "=3"]),
    ("config file holding a list", ["train", "--data-dir", "{tmp}", "--config", "{list}"]),
    ("config file missing", ["train", "--data-dir", "{tmp}", "--config", "{tmp}/none.json"]),
    ("epochs zero", ["train", "--data-dir", "{tmp}", "--epochs", "0"]),
    ("boolean flag with a value", ["train", "--data-dir", "{tmp}", "--class-weights", "maybe"]),
    ("train without data dir", ["train"]),
    ("ingest missing folder", ["ingest", "--data-dir", "{tmp}/nowhere"]),
    ("synth zero artists", ["synth", "--out", "{tmp}/s", "--artists", "0"]),
    ("synth without out", ["synth"]),
    ("demo negative epochs", ["demo", "--epochs", "-1"]),
    ("attributions huge limit", ["attributions", "--limit", "99999999999999999999"]),
    ("attributions zero limit", ["attributions", "--limit", "0"]),
    ("attributions unknown run", ["attributions", "--run-id", "999999"]),
    ("misattributed p nan", ["attributions", "--misattributed", "-p", "nan"]),
    ("misattributed q above one", ["attributions", "--misattributed", "-q", "1.5"]),
    ("attribute unknown run", ["attribute", "--run-id", "999999"]),
    ("similar zero k", ["similar", "{img}", "-k", "0"]),
    ("export unknown run", ["export", "--run-id", "999999"]),
    ("sql k overflow", ["sql", "similar_paintings", "--param", "filename=x", "--param", "k=99999999999999999999"]),
    ("sql negative k", ["sql", "artist_neighbours", "--param", "k=-5"]),
    ("sql p not finite", ["sql", "possible_misattributions", "--param", "p=inf"]),
    ("config not utf-8", ["train", "--data-dir", "{tmp}", "--config", "{tmp}/latin1.json"]),
    ("airflow port out of range", ["airflow", "--port", "99999"]),
    ("airflow port zero", ["airflow", "--port", "0"]),
]


@pytest.mark.parametrize("argv", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_invocations_are_one_line_and_exit_2(clean_db, tmp_path, capsys, argv):
    img = tmp_path / "painting.jpg"
    Image.new("RGB", (32, 32), "red").save(img)
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "list.json").write_text(json.dumps([{"epochs": 1}]))
    (tmp_path / "latin1.json").write_bytes('{"data_dir": "Zoë"}'.encode("latin-1"))
    argv = [a.format(tmp=tmp_path, img=img, list=tmp_path / "list.json") for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("painting-ml") and ": error: " in lines[0]
    assert "Traceback" not in err and "usage:" not in err and out == ""


def test_there_are_at_least_thirty_hostile_cases():
    assert len(HOSTILE) >= 30


def test_an_unmigrated_database_is_one_line_not_a_traceback(server_url, capsys, monkeypatch):
    from painting_ml.core import db
    from painting_ml.core.settings import reload_settings

    url = db.create_database(server_url, "pm_empty")
    monkeypatch.setenv("PAINTING_DB_URL", url)
    reload_settings()
    try:
        for argv in (["runs"], ["metrics"], ["attributions"]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert len(err.splitlines()) == 1 and "painting-ml migrate" in err, err
    finally:
        monkeypatch.undo()
        reload_settings()
        db.drop_database(server_url, url)


@pytest.mark.e2e
def test_a_bad_run_id_is_one_line_before_tensorflow_loads(clean_db):
    """In a real process TensorFlow prints notices when it loads; a bad run id is refused first."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PAINTING_DB_URL=clean_db)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for argv in (["predict", "x.jpg", "--run-id", "999999"], ["similar", "x.jpg"]):
        out = subprocess.run([sys.executable, "-m", "painting_ml.cli", *argv], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_help_still_works(capsys):
    with pytest.raises(SystemExit) as done:
        main(["runs", "--help"])
    assert done.value.code == 0 and "--limit" in capsys.readouterr().out
