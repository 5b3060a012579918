"""The serving export of a run: a self-contained TensorFlow SavedModel that other tools load with
``tf.saved_model.load`` (TF Serving, a notebook, another service) without this package.

Its endpoint ``serve`` takes a batch of encoded image files as bytes (``tf.string``, shape
``[None]``: JPEG, PNG, GIF's first frame or BMP) and decodes, resizes and centre-crops (or pads)
them inside, exactly as training's input path does, then returns ``{target: probabilities}`` for
every target the run predicts and ``embedding``. ``assets.extra/painting_ml.json`` names the
classes (the order of the probability columns), the image size and the run.

The export is written to ``<run_dir>/serving/`` and each of its files is recorded in the artifact
store with its sha256.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from painting_ml.core import db
from painting_ml.core.artifacts import fetch_run_files, record_artifact, run_folder

log = logging.getLogger(__name__)

SERVING_DIR = "serving"
SERVING_KIND = "serving_export"
METADATA_FILE = "assets.extra/painting_ml.json"


def serving_dir(run_dir_key: str) -> Path:
    """This host's folder of the serving export of the run whose folder key is ``run_dir_key``."""
    return run_folder(run_dir_key) / SERVING_DIR


def export_serving_model(run_id: int, url: str | None = None, *, force: bool = False) -> dict[str, Any]:
    """Write run ``run_id``'s serving SavedModel (unless it is there already) and record its files.

    Idempotent: an existing complete export is kept (``force`` rewrites it). The export is written
    to a temporary folder and renamed into place, so a crash never leaves a half-written one.

    Returns:
        ``{"run_id", "path", "files", "written"}`` — ``written`` is False when the export existed.
    """
    import keras
    import tensorflow as tf

    from painting_ml.data.inputs import decode_bytes_and_resize
    from painting_ml.learn.inference import load_run_model

    with db.connect(url) as conn:
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id})
    if run is None:
        from painting_ml.core.errors import PaintingMLError

        raise PaintingMLError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")
    target = serving_dir(run["run_dir"])
    if not force:  # made before, maybe on another host: bring the recorded files here
        fetch_run_files(run_id, url, kinds=(SERVING_KIND,))
    written = force or not (target / "saved_model.pb").is_file() or not (target / METADATA_FILE).is_file()
    if written:
        rm = load_run_model(run_id, url)
        size, mode = int(rm.config["image_size"]), rm.config.get("resize_mode", "crop")
        model = rm.model

        def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
            pixels = tf.map_fn(lambda raw: decode_bytes_and_resize(raw, size, mode), images,
                               fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8))
            out = model(tf.cast(pixels, tf.float32), training=False)
            return {name: tf.identity(value, name=name) for name, value in out.items()}

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec((None,), tf.string, name="images")])
        tmp = target.with_name(SERVING_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        archive.write_out(str(tmp), verbose=False)
        meta = {"run_id": rm.run_id, "classes": rm.classes, "image_size": size, "resize_mode": mode,
                "endpoint": "serve", "input": "images: tf.string [batch] of encoded image files",
                "outputs": [*rm.classes, "embedding"]}
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        log.info("run %d: serving export written to %s", run_id, target)
    files = sorted(p for p in target.rglob("*") if p.is_file())
    with db.connect(url) as conn:
        for path in files:
            record_artifact(conn, run_id, SERVING_KIND, path)
    return {"run_id": run_id, "path": str(target), "files": len(files), "written": written}
