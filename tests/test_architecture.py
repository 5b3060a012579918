"""The package layers and the "no TensorFlow in the config or DAG helpers" rules hold
(import-linter contracts in pyproject.toml), and the library has no import cycles."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
def test_import_linter_contracts_are_kept():
    out = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "3 kept" in out.stdout


def test_no_import_cycles_between_modules():
    import grimp

    graph = grimp.build_graph("painting_ml")
    modules = sorted(graph.modules)
    cycles = []
    for m in modules:
        for other in graph.find_modules_directly_imported_by(m):
            if other != m and graph.chain_exists(importer=other, imported=m):
                cycles.append((m, other))
    assert cycles == []
