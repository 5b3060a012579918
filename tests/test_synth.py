import csv
import hashlib
from pathlib import Path

import pytest
from PIL import Image

from painting_ml.core.errors import ConfigError
from painting_ml.data.synth import ALL_DATA_COLUMNS, TRAIN_INFO_COLUMNS, generate

pytestmark = pytest.mark.unit


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


def _truth(folder: Path) -> dict[str, dict]:
    return {r["filename"]: r for r in _rows(folder / "mislabelled.csv")}


@pytest.mark.parametrize("kind", ["uniform", "confusable"])
def test_mislabel_flips_an_exact_share_and_records_the_truth(tmp_path, kind):
    clean = tmp_path / "clean"
    generate(clean, artists=4, per_artist=10, size=24, seed=5, copies=3, mislabel_kind=kind)
    counts = generate(tmp_path / "noisy", artists=4, per_artist=10, size=24, seed=5, copies=3, mislabel=0.1,
                      mislabel_kind=kind)
    before = {r["new_filename"]: r for r in _rows(clean / "all_data_info.csv")}
    after = {r["new_filename"]: r for r in _rows(tmp_path / "noisy" / "all_data_info.csv")}
    selected = [r for r in before.values() if r["artist_group"] == "train_and_test" and "(copy)" not in r["title"]]
    # One row of the missing file duplicates a painting's; it is not a painting of its own.
    n = len({r["new_filename"] for r in selected}) - 1
    truth = _truth(tmp_path / "noisy")
    assert counts["mislabelled"] == len(truth) == round(0.1 * n)
    changed = {f for f in after if after[f]["artist"] != before[f]["artist"]}
    assert changed == set(truth)
    names = {r["artist"] for r in selected}
    for f, t in truth.items():
        assert before[f]["artist"] == t["true_artist"] != t["catalog_artist"] == after[f]["artist"]
        assert t["catalog_artist"] in names  # another selected artist, never a test-only one
    train_info = {r["filename"]: r["artist"] for r in _rows(tmp_path / "noisy" / "train_info.csv")}
    assert all(train_info[f] == truth[f]["catalog_artist"] for f in truth if f in train_info)
    # The images are the same bytes: only the CSVs lie.
    assert _digest(clean / "train") == _digest(tmp_path / "noisy" / "train")


def test_confusable_flips_go_to_the_partner(tmp_path):
    from painting_ml.data.synth import artist_names, partner

    generate(tmp_path, artists=5, per_artist=12, size=24, seed=2, mislabel=0.2, mislabel_kind="confusable")
    names = artist_names(5)
    truth = _truth(tmp_path)
    assert truth
    for t in truth.values():
        assert t["catalog_artist"] == names[partner(names.index(t["true_artist"]), 5)]
    assert [partner(i, 5) for i in range(5)] == [1, 0, 3, 2, 3]


def test_confusable_partners_paint_alike():
    import numpy as np

    from painting_ml.data.synth import make_styles

    plain = make_styles(6, np.random.default_rng(0))
    paired = make_styles(6, np.random.default_rng(0), paired=6)
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert paired[a].style == paired[b].style
        assert abs(paired[a].angle + 0.5 - paired[b].angle) < 1e-9
    assert [s.style for s in plain] != [s.style for s in paired]


def test_mislabel_is_deterministic_and_none_when_zero(tmp_path):
    generate(tmp_path / "a", artists=3, per_artist=8, size=24, seed=1, mislabel=0.15)
    generate(tmp_path / "b", artists=3, per_artist=8, size=24, seed=1, mislabel=0.15)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    counts = generate(tmp_path / "a", artists=3, per_artist=8, size=24, seed=1)  # again, without flips
    assert counts["mislabelled"] == 0
    assert not (tmp_path / "a" / "mislabelled.csv").exists()  # no stale truth left behind
    generate(tmp_path / "c", artists=3, per_artist=8, size=24, seed=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "c")


def test_mislabel_out_of_range_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--mislabel"):
        generate(tmp_path, artists=2, per_artist=3, mislabel=0.9)
    with pytest.raises(ConfigError, match="--mislabel-kind"):
        generate(tmp_path, artists=2, per_artist=3, mislabel=0.1, mislabel_kind="loud")  # type: ignore[arg-type]


def test_ingest_reads_the_wrong_labels_not_the_truth(tmp_path):
    from painting_ml.data.ingest.rows import read_metadata

    generate(tmp_path, artists=3, per_artist=10, size=24, seed=1, mislabel=0.1)
    rows, name = read_metadata(tmp_path)
    assert name == "all_data_info.csv"
    by_file = {r.fields["new_filename"]: r.fields["artist"] for r in rows if r.fields}
    assert all(by_file[f] == t["catalog_artist"] for f, t in _truth(tmp_path).items())


def test_cli_synth_mislabel(tmp_path, capsys):
    from painting_ml.cli import main

    assert main(["synth", "--out", str(tmp_path / "s"), "--artists", "3", "--per-artist", "10", "--size", "24",
                 "--mislabel", "0.1", "--mislabel-kind", "confusable"]) == 0
    assert "labels wrong on purpose (confusable)" in capsys.readouterr().out
    assert (tmp_path / "s" / "mislabelled.csv").is_file()
