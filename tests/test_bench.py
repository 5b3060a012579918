"""The benchmarks keep working as the library changes: the GPU training benchmark at smoke size
(same model builder, compile and accelerator plan as training)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent


def test_gpu_train_benchmark_runs_at_smoke_size():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_train.py"), "--size", "32", "--batch", "4",
                          "--steps", "1", "--repeats", "1", "--warmup", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RATIO input path / in-memory:" in out.stdout


def test_label_noise_benchmark_runs_at_smoke_size(tmp_path):
    """Generate, run, promote, attribute, audit (2 folds), relabel and retrain on 3 artists x 12 at 32 px."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "label_noise.py"), "--smoke",
                          "--save-probs", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| 10% uniform |" in out.stdout
    assert "out-of-fold cleanlab (k=2), the library's list (neighbour votes)" in out.stdout
    assert "out-of-fold probabilities, cleanlab filter_by=confident_learning" in out.stdout
    assert "RATIO" in out.stdout and "not run" not in out.stdout
    saved = json.loads((tmp_path / "uniform-0.1-seed0.json").read_text())
    assert len(saved["artists"]) == 3 and saved["paintings"]
    assert all(len(p["probabilities"]) == len(p["neighbour_votes"]) == 3 for p in saved["paintings"])
    views = np.load(tmp_path / "uniform-0.1-seed0-folds.npz")  # each fold model's view of its whole version
    assert {"f0_splits", "f1_emb"} <= set(views.files)
    assert set(views["f0_splits"]) >= {"train", "test"} and len(views["f1_emb"]) == len(views["f1_files"])
    assert any(p["true_artist"] for p in saved["paintings"]), "the planted wrong labels carry their true artist"
