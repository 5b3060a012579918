"""The benchmarks keep working as the library changes: the GPU training benchmark at smoke size
(same model builder, compile and accelerator plan as training)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_train_benchmark_runs_at_smoke_size():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_train.py"), "--size", "32", "--batch", "4",
                          "--steps", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RATIO input path / in-memory:" in out.stdout
