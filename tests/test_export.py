"""The serving export: a SavedModel that takes encoded image bytes, loaded in a fresh process that
never imports painting_ml, agrees with `painting-ml predict` on the same files."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from painting_ml.cli import main
from painting_ml.learn.export import METADATA_FILE, SERVING_KIND, export_serving_model

pytestmark = pytest.mark.train

# Runs in a clean interpreter: TensorFlow only, no painting_ml, no Keras custom objects.
LOADER = """
import json, sys
import tensorflow as tf
export, images = sys.argv[1], sys.argv[2:]
model = tf.saved_model.load(export)
meta = json.load(open(f"{export}/assets.extra/painting_ml.json"))
out = model.serve(tf.constant([open(p, "rb").read() for p in images]))
names = meta["classes"]["artist"]
probs = out["artist"].numpy()
print(json.dumps({"top1": [names[i] for i in probs.argmax(axis=1)], "p": probs.max(axis=1).tolist(),
                  "embedding": out["embedding"].shape.as_list(), "outputs": sorted(out),
                  "painting_ml_loaded": sorted(m for m in sys.modules if m.startswith("painting_ml"))}))
"""


@pytest.fixture(scope="module")
def trained_run(evaluated_run, model_db):
    return evaluated_run["run_id"]


@pytest.fixture(scope="module")
def images(model_db, trained_run, tmp_path_factory):
    """Catalog JPEGs plus the same paintings as a PNG and as a wide and a tall JPEG (crop paths)."""
    with psycopg.connect(model_db) as conn:
        paths = [r[0] for r in conn.execute("SELECT data_root || '/' || rel_path FROM paintings "
                                            "WHERE gone_at IS NULL ORDER BY filename LIMIT 6").fetchall()]
    folder = tmp_path_factory.mktemp("export_images")
    img = Image.open(paths[0]).convert("RGB")
    img.save(folder / "as.png")
    img.resize((150, 60)).save(folder / "wide.jpg", quality=92)
    Image.open(paths[1]).convert("RGB").resize((40, 130)).save(folder / "tall.jpg", quality=92)
    return paths + [str(folder / n) for n in ("as.png", "wide.jpg", "tall.jpg")]


def test_export_matches_predict_in_a_fresh_process(model_db, trained_run, images, capsys, tmp_path):
    out = export_serving_model(trained_run)
    export = Path(out["path"])
    assert out["written"] and (export / "saved_model.pb").is_file()
    meta = json.loads((export / METADATA_FILE).read_text())
    assert meta["run_id"] == trained_run and meta["image_size"] == 32 and set(meta["classes"]) == {"artist", "style"}

    assert main(["predict", *images, "--run-id", str(trained_run), "--top-k", "1", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)["predictions"]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAINTING_", "PYTHONPATH"))}
    served = subprocess.run([sys.executable, "-c", LOADER, str(export), *images], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr[-3000:]
    got = json.loads(served.stdout.strip().splitlines()[-1])
    assert got["painting_ml_loaded"] == []
    assert got["outputs"] == ["artist", "embedding", "style"] and got["embedding"] == [len(images), 16]
    assert got["top1"] == [p["artists"][0]["artist"] for p in predicted]
    assert got["p"] == pytest.approx([p["artists"][0]["probability"] for p in predicted], abs=1e-4)


def test_export_files_are_recorded_with_their_sha256_and_kept(model_db, trained_run):
    first = export_serving_model(trained_run)
    again = export_serving_model(trained_run)
    assert again["written"] is False and again["files"] == first["files"] >= 3
    with psycopg.connect(model_db) as conn:
        rows = conn.execute("SELECT path, sha256, bytes FROM artifacts WHERE run_id = %s AND kind = %s",
                            (trained_run, SERVING_KIND)).fetchall()
    assert len(rows) == first["files"]
    assert {Path(p).name for p, _, _ in rows} >= {"saved_model.pb", "painting_ml.json"}
    from painting_ml.core.store import get_store

    for key, sha, size in rows:  # store keys: relative, and the store holds each file
        assert not key.startswith("/")
        data = get_store().fetch(key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size
