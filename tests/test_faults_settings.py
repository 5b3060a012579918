"""Misconfiguration and bad input end in one line, before any work, each reproduced as a user meets it:
every file a setting names (the run defaults, the artist aliases, the data home, the weights) through
the real CLI and the DAG import, a weights file of another architecture caught before ingest, a 1 MB
CSV value (one reject, every other row loads), and the champion's commands with no champion."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("painting-ml"))
TINY = ["--preset", "cpu", "--backbone", "resnet18", "--image-size", "32", "--epochs", "1", "--no-wandb",
        "--set", "head_units=16"]


def painting_ml(args: list[str], url: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("PAINTING_RUN_DEFAULTS", "PAINTING_ARTIST_ALIASES", "PAINTING_WEIGHTS")}
    full.update(PAINTING_DB_URL=url, PAINTING_HOME=str(home), PAINTING_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="2", **env)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=full, timeout=300)


def one_line(out: subprocess.CompletedProcess, command: str) -> str:
    """The error line a failed command ends with: exit 2, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    line = [x for x in out.stderr.splitlines() if x.strip()][-1]
    assert line.startswith(f"painting-ml {command}: error: "), line
    return line


def counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return (conn.execute("SELECT count(*) FROM paintings").fetchone()[0],
                conn.execute("SELECT count(*) FROM dataset_versions").fetchone()[0])


def bad_files(tmp_path: Path, good: str) -> dict[str, tuple[Path, str]]:
    """A setting file in each bad state, with what the error line says about it."""
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("# Zoë\n".encode("latin-1") + good.encode())
    return {"missing": (tmp_path / "missing.yaml", "no such file; fix the path or unset"),
            "folder": (folder, "is a folder; point it at"),
            "not utf-8": (latin, "is not UTF-8 (line 1, byte 4: invalid continuation byte); save it as UTF-8")}


@pytest.mark.parametrize("variable", ["PAINTING_RUN_DEFAULTS", "PAINTING_ARTIST_ALIASES"])
def test_a_bad_settings_file_is_one_line_before_any_work(clean_db, tmp_path, tiny_data, variable):
    good = "epochs: 1\n" if variable == "PAINTING_RUN_DEFAULTS" else "Rembrandt: [Rembrandt van Rijn]\n"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("epoch: 1\n" if variable == "PAINTING_RUN_DEFAULTS" else "Rembrandt: {x: 1}\n")
    cases = {**bad_files(tmp_path, good),
             "wrong content": (wrong, "unknown config key 'epoch'" if variable == "PAINTING_RUN_DEFAULTS"
                               else "'Rembrandt' must be a name mapped to a list of names")}
    for case, (path, needle) in cases.items():
        out = painting_ml(["run", "--data-dir", str(tiny_data), *TINY], clean_db, tmp_path / "home",
                          **{variable: str(path)})
        line = one_line(out, "run")
        assert f"{variable}={path}" in line and needle in line, (case, line)
    assert counts(clean_db) == (0, 0)  # nothing ingested, no dataset version


def test_an_unreadable_settings_file_is_one_line(tmp_path, monkeypatch):
    """(As root every file is readable: the refusal is simulated where the file is opened.)"""
    from painting_ml.core.config import read_defaults_file
    from painting_ml.core.errors import ConfigError
    from painting_ml.data.names import read_aliases

    path = tmp_path / "locked.yaml"
    path.write_text("epochs: 1\n")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    for read, variable in ((read_defaults_file, "PAINTING_RUN_DEFAULTS"), (read_aliases, "PAINTING_ARTIST_ALIASES")):
        with pytest.raises(ConfigError) as err:
            read(path)
        assert str(err.value) == (f"{variable}={path}: cannot read the file (Permission denied); fix its permissions "
                                  f"or the path, or unset {variable}")


def test_a_bad_aliases_file_fails_the_dag_import_naming_it(tmp_path):
    from test_run_defaults import parse_dags

    files = bad_files(tmp_path, "Rembrandt: [Rembrandt van Rijn]\n")
    got = parse_dags(tmp_path, {case: {"PAINTING_ARTIST_ALIASES": str(path)} for case, (path, _) in files.items()})
    for case, (path, needle) in files.items():
        errors = got[case]["errors"]
        assert "painting_retrain.py" in errors, (case, errors)
        assert f"PAINTING_ARTIST_ALIASES={path}" in errors["painting_retrain.py"], errors
        assert needle in errors["painting_retrain.py"], errors


def test_a_home_that_is_a_file_is_one_line(clean_db, tmp_path, tiny_data):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    for args in (["gc", "--dry-run"], ["run", "--data-dir", str(tiny_data), *TINY], ["ingest", "--data-dir", "x"]):
        line = one_line(painting_ml(args, clean_db, home), args[0])
        assert line.endswith(f"PAINTING_HOME='{home}' is a file, not a folder; point PAINTING_HOME at a folder "
                             "(created when missing)"), line


def test_weights_of_another_architecture_are_one_short_line_before_ingest(clean_db, tmp_path, tiny_data):
    from painting_ml.core.config import RunConfig
    from painting_ml.learn.models import create_backbone

    r18 = tmp_path / "resnet18_notop.weights.h5"
    create_backbone(RunConfig(data_dir="-", backbone="resnet18", image_size=32, weights=None)).save_weights(r18)
    args = ["run", "--data-dir", str(tiny_data), "--preset", "cpu", "--backbone", "resnet50", "--image-size", "32",
            "--no-wandb"]
    out = painting_ml([*args, "--weights", str(r18)], clean_db, tmp_path / "home")
    line = one_line(out, "run")
    assert line == (f"painting-ml run: error: weights file {r18} does not fit backbone resnet50 (101 layers differ; "
                    "details in the log): use resnet50 weights saved without the top, or the backbone the file was "
                    "saved from"), line
    assert len(line) - len(str(r18)) <= 300 and out.stderr.count("does not fit") == 1
    assert counts(clean_db) == (0, 0)  # caught before ingest: no painting, no dataset version

    out = painting_ml([*args, "--weights", str(tmp_path)], clean_db, tmp_path / "home")
    line = one_line(out, "run")
    assert f"weights file {tmp_path} is a directory, not a file" in line and "not found" not in line, line
    garbage = tmp_path / "notes.h5"
    garbage.write_text("not weights")
    assert "is not a Keras weights file" in one_line(painting_ml([*args, "--weights", str(garbage)], clean_db,
                                                                 tmp_path / "home"), "run")


@pytest.mark.db
def test_a_1_mb_csv_value_is_one_reject_and_every_other_row_loads(clean_db, tmp_path):
    from painting_ml.data import ingest as catalog
    from painting_ml.data.ingest.rows import MAX_FIELD_BYTES
    from painting_ml.data.synth import generate

    data = tmp_path / "data"
    generate(data, artists=3, per_artist=8, size=32, seed=3, test_only_artists=0, broken=0)
    path = data / "all_data_info.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows[5]["title"] = "x" * 1_000_000  # far past the csv module's own 128 KiB field limit
    rows[9]["title"] = "é" * (MAX_FIELD_BYTES // 2)  # exactly at the limit (2 bytes a character): loads
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        rejects = conn.execute("SELECT reason, line_no, filename, detail FROM rejects ORDER BY line_no").fetchall()
    # The generated set holds one CSV row whose file is missing on purpose; the long title is the other reject.
    assert [r[0] for r in rejects] == ["bad_value", "missing_file"] or \
        [r[0] for r in rejects] == ["missing_file", "bad_value"], rejects
    assert (summary.rows, summary.loaded, summary.rejected) == (len(rows), len(rows) - 2, 2), summary
    bad = next(r for r in rejects if r[0] == "bad_value")
    assert bad[1:] == (6, rows[5]["new_filename"], "file line 7: title is 1,000,000 bytes long, over the limit of "
                                                   "64 KB per value")


def test_the_champion_commands_with_no_champion_say_so(clean_db, tmp_path, tiny_data):
    images = sorted((tiny_data / "train").iterdir())[:2]
    for args in (["predict", str(images[0])], ["verify", str(images[0]), str(images[1])], ["similar", str(images[0])]):
        line = one_line(painting_ml(args, clean_db, tmp_path / "home"), args[0])
        assert "no champion yet, so no model to" in line and "painting-ml promote --run-id N" in line, line
        assert "pass --run-id N" in line, line
        # --run-id is the way round it: a run that does not exist is named as such, not as "no champion".
        line = one_line(painting_ml([*args, "--run-id", "7"], clean_db, tmp_path / "home"), args[0])
        assert line.endswith("run 7 does not exist; `painting-ml runs` lists the runs"), line
