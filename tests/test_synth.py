import csv
import hashlib
from pathlib import Path

import pytest
from PIL import Image

from painting_ml.core.errors import ConfigError
from painting_ml.data.synth import ALL_DATA_COLUMNS, TRAIN_INFO_COLUMNS, generate


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(tmp_path / "a", artists=3, per_artist=5, size=32, seed=3)
    b = generate(tmp_path / "b", artists=3, per_artist=5, size=32, seed=3)
    generate(tmp_path / "c", artists=3, per_artist=5, size=32, seed=4)
    assert a == b
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_kaggle_layout_columns_and_quirks(tiny_data):
    rows = _rows(tiny_data / "all_data_info.csv")
    assert list(rows[0].keys()) == ALL_DATA_COLUMNS
    assert list(_rows(tiny_data / "train_info.csv")[0].keys()) == TRAIN_INFO_COLUMNS
    # 3 artists with 12..(12 + extra) paintings, 1 test-only artist with 6, plus 1 row for a missing file.
    artists = {r["artist"] for r in rows}
    assert len(artists) == 4
    assert any(not a.isascii() for a in artists)
    test_only = {r["artist"] for r in rows if r["artist_group"] == "test_only"}
    assert len(test_only) == 1
    for r in rows:
        folder = "train" if r["in_train"] == "True" else "test"
        if r["artist"] in test_only:
            assert folder == "test"
        assert r["style"] and r["genre"]
    assert any("," in r["title"] and '"' in r["title"] for r in rows)


def test_broken_and_missing_files(tiny_data):
    rows = _rows(tiny_data / "all_data_info.csv")
    unreadable, missing, modes = 0, 0, set()
    for r in rows:
        path = tiny_data / ("train" if r["in_train"] == "True" else "test") / r["new_filename"]
        if not path.exists():
            missing += 1
            continue
        try:
            with Image.open(path) as im:
                im.load()
                modes.add(im.mode)
        except OSError:
            unreadable += 1
    assert (unreadable, missing) == (3, 1)
    assert {"RGB", "L"} <= modes


def test_invalid_arguments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--artists >= 2"):
        generate(tmp_path, artists=1)


def test_cli_synth(tmp_path, capsys):
    from painting_ml.cli import main

    assert main(["synth", "--out", str(tmp_path / "s"), "--artists", "2", "--per-artist", "3",
                 "--size", "24", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"images": ' in out
    assert (tmp_path / "s" / "all_data_info.csv").is_file()
