"""DAG parse cost: each DAG file imported in a fresh interpreter, median of several runs, minus a
bare ``import airflow.sdk`` measured the same way; and a check that TensorFlow (and Keras) are not
in ``sys.modules`` after the import.

    .venv/bin/python bench/dag_parse.py [--runs 7]

Target: < 0.3 s of each file's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, runpy, sys, time
t = time.perf_counter()
import airflow.sdk
{body}
print(json.dumps({{"s": time.perf_counter() - t,
                   "heavy": [m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules]}}))
"""


def measure(body: str, runs: int) -> tuple[float, list[str]]:
    env = dict(os.environ, AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW_HOME=str(REPO / "var" / "bench_airflow"))
    times, heavy = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], env=env, capture_output=True,
                             text=True, check=True, cwd=REPO)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(result["s"])
        heavy = result["heavy"]
    return statistics.median(times), heavy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    base, _ = measure("", args.runs)
    print(f"bare import airflow.sdk: {base:.3f} s (median of {args.runs} fresh interpreters)")
    worst = 0.0
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        total, heavy = measure(f"runpy.run_path({str(dag_file)!r})", args.runs)
        own = total - base
        worst = max(worst, own)
        print(f"{dag_file.name}: {total:.3f} s total, {own:.3f} s own; heavy modules after import: {heavy or 'none'}")
        if heavy:
            raise SystemExit(f"{dag_file.name} imports {heavy} at parse time")
    print(f"RATIO worst own cost / target: {worst:.3f} s / 0.300 s = {worst / 0.3:.2f} (target < 1)")


if __name__ == "__main__":
    main()
