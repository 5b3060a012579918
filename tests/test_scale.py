"""bench/scale.py keeps working: PbN's long-tail shape, and one end-to-end run at smoke size."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


def test_long_tail_is_pbn_shaped():
    from scale import long_tail

    counts = long_tail(100_000, 2_300)
    assert sum(counts) == 100_000 and len(counts) == 2_300
    assert max(counts) == 500 and min(counts) >= 1
    assert sorted(counts)[len(counts) // 2] < 40 < sum(c >= 100 for c in counts)  # a long tail


def test_scale_benchmark_runs_at_smoke_size(db_url, tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--rows", "120", "--artists", "12",
                          "--out", str(tmp_path / "set"), "--in-process", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout
    assert "unchanged re-ingest" in lines and "skipped (fingerprint)" in lines
    assert "one file changed" in lines and "1 decoded" in lines
    assert "RATIO ingest pool" in lines
