"""The ingest DAG's quiet-period check: a folder still being copied is not ingested."""

import os
import time

import pytest

from painting_ml.data.settle import folder_settled, scan

pytestmark = pytest.mark.unit


def _old(path, seconds=3600):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_a_folder_untouched_for_the_quiet_period_is_settled_at_once(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "1.jpg").write_bytes(b"x" * 10)
    slept = []
    # ctime cannot be set back, so "now" is moved forward instead.
    settled, why = folder_settled(tmp_path, 60, now=lambda: time.time() + 120, sleep=slept.append)
    assert settled and slept == [] and "nothing under" in why


def test_a_folder_written_during_the_quiet_period_is_not_settled(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "all_data_info.csv").write_text("artist,new_filename\n")
    _old(tmp_path / "all_data_info.csv")

    def copy_goes_on(seconds):  # what another process does while we wait
        (tmp_path / "train" / "2.jpg").write_bytes(b"y" * 5)
        with open(tmp_path / "all_data_info.csv", "a") as f:
            f.write("A,2.jpg\n")

    settled, why = folder_settled(tmp_path, 30, sleep=copy_goes_on)
    assert not settled
    assert "still being written: 2 files changed within 30 s (all_data_info.csv, train/2.jpg)" in why


def test_a_recent_but_finished_copy_settles_after_one_quiet_period(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"z")
    slept = []
    settled, why = folder_settled(tmp_path, 30, sleep=slept.append)
    assert settled and slept == [30] and "1 files under" in why and "unchanged over 30 s" in why


def test_off_and_missing(tmp_path):
    assert folder_settled(tmp_path, 0)[0] is True
    assert folder_settled(tmp_path / "nope", 60) == (True, f"{tmp_path / 'nope'} does not exist")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"12")
    assert scan(tmp_path)["d/x"].size == 2
