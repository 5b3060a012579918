#!/usr/bin/env bash
# The GPU throughput check of bench/gpu_train.py (ResNet50, 224 px, batch 256, bf16, XLA, JAX backend)
# on a lent GPU machine that has Python 3.12 with JAX (CUDA) but no TensorFlow, no keras, no network.
#
#   device run:  command "bash bench/gpu_check.sh", carry [".whl"]
#
# .whl/ (git-ignored) holds the cp312 wheels the benchmark needs and that machine lacks: keras and its
# missing needs (namex, optree), pydantic and its (pydantic-core, annotated-types, typing-inspection,
# typing-extensions >= 4.16), pydantic-settings and python-dotenv. They are installed into /tmp/site
# with --no-deps, exactly as the device README says. Extra arguments go to bench/gpu_train.py.
# The log is written to $OUT/gpu_train.log; the last line starting RESULT is the figure.
#
# Local dry run (no GPU):  PYTHON=/path/to/py312-with-jax GPU_CHECK_ALLOW_CPU=1 \
#     bash bench/gpu_check.sh --size 32 --batch 4 --steps 1 --repeats 1 --warmup 1
set -uo pipefail
cd "$(dirname "$0")/.." || exit 3
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"

# The interpreter that has JAX: plain python3 there (/opt/torch/.venv/bin/python3).
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for c in python3 /opt/torch/.venv/bin/python3 /opt/*/.venv/bin/python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import jax' >/dev/null 2>&1; then PY=$c; break; fi
    done
fi
[ -n "$PY" ] || { echo "gpu_check: no python3 that imports jax found" >&2; exit 3; }
compgen -G ".whl/*.whl" >/dev/null || { echo "gpu_check: no wheels in .whl/ (carry [\".whl\"])" >&2; exit 3; }

"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: installing the carried wheels failed" >&2; exit 4; }
export PYTHONPATH=/tmp/site
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# JAX's default: take 75% of the GPU up front (fastest allocator path); the benchmark reports the
# real peak from the allocator's own statistics either way.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-true}

{
    echo "== $(date -u +%FT%TZ) $(hostname) python: $(command -v "$PY")"
    nvidia-smi -L 2>&1
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1
    # Preflight (a few seconds): versions, keras really from the wheels, the GPU seen by JAX, the import path.
    "$PY" - <<'EOF'
import os, sys
import jax, jaxlib, keras, numpy, pydantic
print("python", sys.version.split()[0], "| jax", jax.__version__, "jaxlib", jaxlib.__version__, "| keras",
      keras.__version__, "from", os.path.dirname(keras.__file__), "| pydantic", pydantic.__version__,
      "| numpy", numpy.__version__)
print("devices:", jax.devices())
from painting_ml.learn.accelerator import plan  # noqa: E402  (the benchmark's own import path)
from painting_ml.learn.models import create_model  # noqa: E402,F401
if jax.devices()[0].platform != "gpu" and not os.environ.get("GPU_CHECK_ALLOW_CPU"):
    sys.exit("gpu_check: JAX sees no GPU; not running a 224 px ResNet50 on the CPU")
print("preflight ok:", plan())
EOF
} 2>&1 | tee "$OUT/gpu_train.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu_check: preflight failed (${SECONDS}s)" >&2; exit 5; }

req=--require-gpu
[ -n "${GPU_CHECK_ALLOW_CPU:-}" ] && req=
# The whole benchmark (two XLA compiles of ResNet50, 3 figures x 3 repeats x 50 timed steps) takes a few minutes;
# BENCH_TIMEOUT stops it first, so the log comes back even from a run that hangs.
timeout -s INT -k 15 "${BENCH_TIMEOUT:-420}" "$PY" bench/gpu_train.py $req "$@" 2>&1 | tee -a "$OUT/gpu_train.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ] && ! grep -q '^RESULT' "$OUT/gpu_train.log"; then rc=6; fi
echo "gpu_check: exit $rc after ${SECONDS}s" | tee -a "$OUT/gpu_train.log"
exit "$rc"
