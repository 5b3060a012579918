"""Evidence a curator can judge, for each painting a label audit flagged: the painting, the
paintings of its catalog artist and of the suggested artist that look most like it, and where the
model looked when it scored each of the two artists.

* **Exemplars** are the nearest paintings in the audit's embedding space (cosine of the
  out-of-fold unit embeddings in ``audit_predictions``) whose audited label is that artist — not
  random ones: a curator compares like with like. The painting itself, its duplicate group
  (``painting_groups``: a copy is no independent witness) and every other flagged painting (a
  suspect label is no example) are never exemplars.
* **Heatmaps** are Grad-CAM maps (:mod:`painting_ml.learn.gradcam`) for both artists from the fold
  model that held the painting out, on the image-cache copy the model saw, at its input size. Each
  fold model is loaded once.

Files go to the artifact store under ``audits/<audit id>/evidence/`` (keys, not host paths), are
listed in ``audit_artifacts``, and each flagged painting's ``label_issues.evidence`` records them::

    {"painting": key, "fold": 2, "run_id": 17,
     "catalog":   {"artist": ..., "probability": 0.03, "heatmap": key,
                   "exemplars": [{"filename": ..., "key": ..., "similarity": 0.91}, ...]},
     "suggested": {...}}

Rendering again replaces the set (same keys; files no longer named are deleted afterwards).
:func:`render_audit_report` writes ``audits/<audit id>/report.html`` beside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from painting_ml.core import db
from painting_ml.core.errors import PaintingMLError

if TYPE_CHECKING:
    from PIL import Image

    from painting_ml.data.versions import DatasetItem
    from painting_ml.learn.metrics import FloatArray

log = logging.getLogger(__name__)

#: Exemplars shown per artist.
EXEMPLARS = 5
#: Longest side (px) of the painting's thumbnail and of its heatmap overlays, and of an exemplar's.
PAINTING_PX, EXEMPLAR_PX = 224, 128
EVIDENCE_KINDS = ("evidence_painting", "evidence_exemplar", "evidence_heatmap")
REPORT_KIND = "audit_report"
SIDES = ("catalog", "suggested")


def audit_prefix(audit_id: int) -> str:
    """The store folder of an audit's files."""
    return f"audits/{int(audit_id)}"


@dataclass(frozen=True)
class Candidate:
    """An audited painting that may stand as an exemplar of its label."""

    data_root: str
    filename: str
    group_key: str | None


def nearest_exemplars(query: Sequence[float] | FloatArray, embeddings: FloatArray, candidates: Sequence[Candidate],
                      n: int, painting: tuple[str, str], group_key: str | None = None) -> list[tuple[Candidate, float]]:
    """The ``n`` candidates nearest to ``query`` (cosine similarity, highest first; ties in the
    candidates' order), never ``painting`` itself nor a member of its duplicate group.

    Args:
        query: the flagged painting's embedding.
        embeddings: one row per candidate.
        candidates: the candidates, in the rows' order.
        painting: the flagged painting's ``(data_root, filename)``.
        group_key: its duplicate group (``painting_groups.group_key``), or None.
    """
    from painting_ml.results.attribution import unit_rows

    if not len(candidates):
        return []
    q = unit_rows(np.asarray([query], dtype=np.float64))[0]
    sims = unit_rows(np.asarray(embeddings, dtype=np.float64)) @ q
    out: list[tuple[Candidate, float]] = []
    for j in np.argsort(-sims, kind="stable"):
        c = candidates[int(j)]
        if (c.data_root, c.filename) == painting or (
                group_key is not None and c.group_key == group_key and c.data_root == painting[0]):
            continue
        out.append((c, float(sims[j])))
        if len(out) == n:
            break
    return out


def painting_slug(data_root: str, filename: str) -> str:
    """A file-name-safe, collision-free name for a painting's evidence files."""
    from painting_ml.results.mosaics import slugify

    digest = hashlib.sha1(f"{data_root}/{filename}".encode()).hexdigest()[:10]
    return f"{slugify(Path(filename).stem)[:40]}-{digest}"


class _Writer:
    """Writes PNGs to the store under an audit's prefix and remembers what it wrote."""

    def __init__(self) -> None:
        from painting_ml.core.store import get_store

        self.store = get_store()
        self.written: dict[str, str] = {}  # key -> kind

    def save(self, img: Image.Image, key: str, kind: str) -> str:
        from painting_ml.core.files import write_atomic

        if key not in self.written:
            path = self.store.local_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(img, path, format="PNG")
            self.store.put(key, path)
            self.written[key] = kind
        return key


def _model_pixels(paths: Sequence[str], config: dict[str, Any]) -> FloatArray:
    """The images a run's model sees for ``paths`` (its input size and resize mode), as inference."""
    from painting_ml.data.inputs import make_dataset

    size = int(config["image_size"])
    ds = make_dataset(list(paths), None, image_size=size, batch_size=32, shuffle=False, seed=0, cache="none",
                      resize_mode=config.get("resize_mode", "crop"))
    batches = list(ds.as_numpy_iterator())
    return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.uint8)


def _image_paths(version_id: int, filenames: set[str], long_side: int, url: str | None) -> dict[str, str]:
    """``{filename: local path}`` of the paintings' image-cache copies (the original file where a
    painting has no copy)."""
    from painting_ml.core.store import get_store
    from painting_ml.data.derived import cached_keys
    from painting_ml.data.versions import load_items

    _, items = load_items(version_id, url, history=True)
    wanted: list[DatasetItem] = [i for i in items if i.filename in filenames]
    keys = cached_keys(wanted, long_side, url)
    fetched = dict(zip(keys, get_store().fetch_many(keys.values()), strict=True))
    return {i.filename: str(fetched[i.filename]) if i.filename in fetched else i.path for i in wanted}


def _load_audit(conn: db.Connection, audit_id: int) -> dict[str, Any]:
    audit = db.fetch_one(conn, db.sql("evidence", "audit"), {"audit": audit_id})
    if audit is None:
        raise PaintingMLError(f"audit {audit_id} does not exist; `painting-ml audit` runs one "
                              "(SELECT id FROM audits lists them)")
    return audit


def render_evidence(audit_id: int, limit: int = 24, url: str | None = None) -> dict[str, Any]:
    """Render the evidence of audit ``audit_id``'s ``limit`` top-ranked flagged paintings.

    Args:
        audit_id: the audit (``audits.id``), whose ``label_issues`` are ranked.
        limit: flagged paintings to render, by rank.
        url: the painting database (default: the settings').

    Returns:
        ``{"audit_id", "issues", "exemplars", "heatmaps", "files", "prefix"}``: counts, and the
        store folder the files are under.

    Raises:
        PaintingMLError: no such audit, or a fold's model is gone (its run was deleted).
    """
    from psycopg.types.json import Jsonb

    from painting_ml.data.derived import long_side_for
    from painting_ml.results.mosaics import thumbnail

    with db.connect(url) as conn:
        audit = _load_audit(conn, audit_id)
        flagged = db.fetch_dicts(conn, db.sql("evidence", "flagged"), {"audit": audit_id, "limit": limit})
        candidates: dict[str, tuple[list[Candidate], FloatArray]] = {}
        for artist in sorted({f[f"{s}_artist"] for f in flagged for s in SIDES}):
            rows = db.fetch_dicts(conn, db.sql("evidence", "exemplar_candidates"),
                                  {"audit": audit_id, "artist": artist})
            candidates[artist] = ([Candidate(r["data_root"], r["filename"], r["group_key"]) for r in rows],
                                  np.asarray([r["embedding"] for r in rows], dtype=np.float64))
    prefix = f"{audit_prefix(audit_id)}/evidence"
    evidence: dict[tuple[str, str], dict[str, Any]] = {}
    for f in flagged:
        painting = (f["data_root"], f["filename"])
        entry: dict[str, Any] = {"fold": f["fold"], "run_id": f["run_id"]}
        for side in SIDES:
            found, matrix = candidates[f[f"{side}_artist"]]
            near = nearest_exemplars(f["embedding"], matrix, found, EXEMPLARS, painting, f["group_key"])
            entry[side] = {"artist": f[f"{side}_artist"], "probability": f[f"{side}_probability"],
                           "exemplars": [{"data_root": c.data_root, "filename": c.filename, "similarity": round(s, 4)}
                                         for c, s in near]}
        evidence[painting] = entry

    long_side = long_side_for(int(audit["config"]["image_size"]))
    names = {f["filename"] for f in flagged} | {e["filename"] for v in evidence.values() for s in SIDES
                                                for e in v[s]["exemplars"]}
    paths = _image_paths(int(audit["dataset_version_id"]), names, long_side, url)
    writer = _Writer()
    for f in flagged:
        entry = evidence[(f["data_root"], f["filename"])]
        slug = painting_slug(f["data_root"], f["filename"])
        entry["painting"] = writer.save(thumbnail(paths.get(f["filename"], ""), PAINTING_PX),
                                        f"{prefix}/{slug}/painting.png", "evidence_painting")
        for side in SIDES:
            for e in entry[side]["exemplars"]:
                key = f"{prefix}/exemplars/{painting_slug(e.pop('data_root'), e['filename'])}.png"
                e["key"] = writer.save(thumbnail(paths.get(e["filename"], ""), EXEMPLAR_PX), key, "evidence_exemplar")
    heatmaps = _render_heatmaps(flagged, evidence, paths, prefix, writer, audit_id, url)

    with db.connect(url) as conn:
        conn.execute(db.sql("evidence", "clear_evidence"), {"audit": audit_id})
        for (data_root, filename), entry in evidence.items():
            conn.execute(db.sql("evidence", "set_evidence"), {"audit": audit_id, "data_root": data_root,
                                                               "filename": filename, "evidence": Jsonb(entry)})
        _record(conn, audit_id, writer, EVIDENCE_KINDS)
    stale = [k for k in writer.store.list(prefix) if k not in writer.written]
    writer.store.delete(stale)
    exemplars = sum(len(v[s]["exemplars"]) for v in evidence.values() for s in SIDES)
    log.info("audit %d: evidence for %d flagged paintings (%d exemplars, %d heatmaps) under %s",
             audit_id, len(flagged), exemplars, heatmaps, prefix)
    return {"audit_id": audit_id, "issues": len(flagged), "exemplars": exemplars, "heatmaps": heatmaps,
            "files": len(writer.written), "prefix": prefix}


def _render_heatmaps(flagged: list[dict[str, Any]], evidence: dict[tuple[str, str], dict[str, Any]],
                     paths: dict[str, str], prefix: str, writer: _Writer, audit_id: int, url: str | None) -> int:
    """Grad-CAM overlays of both artists for every flagged painting, fold model by fold model."""
    from painting_ml.learn.gradcam import grad_cam, overlay, split_model
    from painting_ml.learn.inference import load_run_model

    by_run: dict[int, list[dict[str, Any]]] = {}
    for f in flagged:
        if f["run_id"] is None:
            raise PaintingMLError(f"fold {f['fold']} of audit {audit_id} has no training run (it was deleted); "
                                  "run the audit again for out-of-fold heatmaps")
        by_run.setdefault(int(f["run_id"]), []).append(f)
    done = 0
    for run_id, rows in sorted(by_run.items()):
        readable = [f for f in rows if Path(paths.get(f["filename"], "")).is_file()]
        for f in rows:
            if f not in readable:  # left its folder and has no cached copy: exemplars only
                log.warning("audit %d: no image of %s to compute its heatmaps on", audit_id, f["filename"])
                for side in SIDES:
                    evidence[(f["data_root"], f["filename"])][side]["heatmap"] = None
        if not readable:
            continue
        rm = load_run_model(run_id, url)
        names = rm.classes["artist"]
        missing = sorted({f[f"{s}_artist"] for f in readable for s in SIDES} - set(names))
        if missing:
            raise PaintingMLError(f"fold run {run_id} of audit {audit_id} has no class {missing[0]!r}; the audit's "
                                  "rows and its fold models disagree: run the audit again")
        rows = readable
        pixels = _model_pixels([paths[f["filename"]] for f in rows], rm.config)
        ids = [[names.index(f[f"{s}_artist"]) for s in SIDES] for f in rows]
        maps = grad_cam(split_model(rm.model, "artist"), pixels, ids)
        for f, image, heat in zip(rows, pixels, maps, strict=True):
            slug = painting_slug(f["data_root"], f["filename"])
            entry = evidence[(f["data_root"], f["filename"])]
            for k, side in enumerate(SIDES):
                entry[side]["heatmap"] = writer.save(overlay(image, heat[k], size=PAINTING_PX),
                                                     f"{prefix}/{slug}/{side}_heatmap.png", "evidence_heatmap")
                done += 1
        del rm
    return done


def _record(conn: db.Connection, audit_id: int, writer: _Writer, kinds: Sequence[str]) -> None:
    """List the files ``writer`` wrote in ``audit_artifacts`` (replacing the rows of ``kinds``)."""
    from painting_ml.core.artifacts import file_sha256

    conn.execute(db.sql("evidence", "delete_artifacts"), {"audit": audit_id, "kinds": list(kinds)})
    for key, kind in writer.written.items():
        size, sha = file_sha256(writer.store.local_path(key))
        conn.execute(db.sql("evidence", "upsert_artifact"),
                     {"audit": audit_id, "kind": kind, "path": key, "bytes": size, "sha": sha})


def render_audit_report(audit_id: int, url: str | None = None) -> str:
    """Write the audit's self-contained HTML report (summary, then every flagged painting by rank
    with its evidence, as relative links to the PNGs beside it) and list it in ``audit_artifacts``.

    Returns:
        The store key ``audits/<audit_id>/report.html``.
    """
    from painting_ml.core.artifacts import file_sha256
    from painting_ml.core.files import atomic_path
    from painting_ml.core.store import get_store
    from painting_ml.results.report import _environment

    with db.connect(url) as conn:
        audit = _load_audit(conn, audit_id)
        flagged = db.fetch_dicts(conn, db.sql("evidence", "flagged"), {"audit": audit_id, "limit": None})
    base = audit_prefix(audit_id) + "/"
    for f in flagged:
        f["evidence"] = _relative(f["evidence"], base)
    facts = [("audit key", audit["audit_key"]), ("status", audit["status"]), ("folds", audit["folds"]),
             ("recipe", audit["recipe"]), ("dataset version", audit["dataset_version_id"]),
             ("paintings audited", audit["audited"]), ("flagged", audit["flagged"]),
             ("artists", len(audit["artists"] or [])), ("started", audit["started_at"]),
             ("finished", audit["finished_at"])]
    summary = [(k, v if isinstance(v, (int, float, str)) or v is None else json.dumps(v, default=str))
               for k, v in sorted((audit["summary"] or {}).items())]
    page = _environment().get_template("audit_report.html.j2").render(
        audit=audit, facts=facts, summary=summary, issues=flagged,
        rendered=sum(1 for f in flagged if f["evidence"]))
    store = get_store()
    key = f"{base}report.html"
    path = store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    store.put(key, path)
    size, sha = file_sha256(path)
    with db.connect(url) as conn:
        conn.execute(db.sql("evidence", "upsert_artifact"),
                     {"audit": audit_id, "kind": REPORT_KIND, "path": key, "bytes": size, "sha": sha})
    return key


def _relative(evidence: dict[str, Any] | None, base: str) -> dict[str, Any] | None:
    """``evidence`` with its store keys made relative to the audit's folder (where the report is)."""
    if not evidence:
        return None

    def rel(key: str | None) -> str | None:
        return key[len(base):] if key and key.startswith(base) else key

    out = {**evidence, "painting": rel(evidence.get("painting"))}
    for side in SIDES:
        part = dict(evidence.get(side) or {})
        part["heatmap"] = rel(part.get("heatmap"))
        part["exemplars"] = [{**e, "key": rel(e.get("key"))} for e in part.get("exemplars") or []]
        out[side] = part
    return out


def audit_files(audit_id: int, url: str | None = None) -> list[dict[str, Any]]:
    """The files an audit made (``audit_artifacts``: kind, key, bytes, sha256), by key."""
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("evidence", "artifacts_of_audit"), {"audit": audit_id})
