"""Label-noise benchmark: how many deliberately wrong labels of a generated catalog each method
finds, side by side, and what relabelling the top-ranked ones does to a retrain.

For each noise setting (a share of the labels flipped, ``uniform``: to any other selected artist,
or ``confusable``: to the painter's look-alike partner) a catalog is generated with
``painting_ml.data.synth.generate(mislabel=…)``, whose ``mislabelled.csv`` holds the truth, into a
throw-away database, and then:

a. **In-sample** (what a new user gets today): ``run`` (a config trained until it fits its
   training set; its accuracy on its own training split is printed), ``promote``, ``attribute``
   (the champion scores the whole catalog), and the ``possible_misattributions`` rule on those
   scores: catalog artist's probability < p and a rival's > q (the query's defaults 0.2 and 0.6).
b. **Out-of-fold**: ``pipeline.audit_all`` (k folds, recipe ``full``: the same training config)
   and cleanlab's ranking in ``label_issues`` (judged on the fold models' nearest-neighbour votes),
   beside cleanlab's filters on the same fold models' probabilities.

Both are scored on the paintings of the in-sample run's dataset version (what both were asked
about): precision, recall and F1 over every planted flip there, and recall over the flips in the
in-sample run's **training split** (where a wrong label does harm: the next retrain learns it
again). Each list is also cut to the other's length, so they are compared at the same length.

c. **Relabel and retrain**: the out-of-fold flagged list (``--relabel same``: only its top N, N
   the in-sample list's length) is relabelled to the suggested artists automatically
   (``label_reviews``, as a curator accepting every suggestion would), the next ``run`` uses the
   overrides, and the retrain's test accuracy is compared with the first run's — against the
   *true* labels, on each run's test split.

    .venv/bin/python bench/label_noise.py                     # 5 % uniform, demo-sized
    .venv/bin/python bench/label_noise.py --noise 0.02,0.05,0.10 --kinds uniform,confusable
    .venv/bin/python bench/label_noise.py --large             # 20 artists x 80 paintings
    .venv/bin/python bench/label_noise.py --smoke             # seconds-sized: the code path only

Prints one table; ``--skip-audit`` runs (a) only (the in-sample baseline).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_MODE", "disabled")
from _common import machine, scratch_database  # noqa: E402 - imported after the environment above is set

SIZES = {
    "demo": {"artists": 8, "per_artist": 40, "image_size": 64, "epochs": 25},
    "large": {"artists": 20, "per_artist": 80, "image_size": 64, "epochs": 25},
    "smoke": {"artists": 3, "per_artist": 12, "image_size": 32, "epochs": 1},
}


@dataclass
class Scores:
    """One list of flagged paintings scored against the planted flips."""

    method: str
    listed: int
    precision: float
    recall: float
    f1: float
    train_recall: float


def score(method: str, listed: list[str], flips: set[str], train_flips: set[str]) -> Scores:
    """Precision, recall and F1 of ``listed`` against ``flips``; recall on ``train_flips``."""
    hits = len(set(listed) & flips)
    precision = hits / len(listed) if listed else 0.0
    recall = hits / len(flips) if flips else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    train = len(set(listed) & train_flips) / len(train_flips) if train_flips else 0.0
    return Scores(method, len(listed), precision, recall, f1, train)


def audit_rows(audit_id: int, url: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The audit's artists (the probabilities' column order) and its ``audit_predictions`` rows
    (filename, catalog artist, out-of-fold probabilities), ordered by filename."""
    from painting_ml.core import db
    from painting_ml.learn.audit import audit_info

    with db.connect(url) as conn:
        rows = conn.execute("SELECT filename, artist, probabilities, neighbour_votes FROM audit_predictions "
                            "WHERE audit_id = %s ORDER BY filename", (audit_id,)).fetchall()
    return audit_info(audit_id, url)["artists"], rows


def other_filters(artists: list[str], rows: list[dict[str, Any]], judged: dict[str, str]) -> dict[str, list[str]]:
    """The same out-of-fold evidence (:func:`audit_rows`: the probabilities, and the neighbour
    votes with the probabilities breaking ties) through each of cleanlab's filters, plain
    disagreement (``predicted_neq_given``: the top artist is not the catalog's) included, each
    ranked by self-confidence: what the library's choice of evidence and filter costs or gains."""
    import numpy as np
    from cleanlab.filter import find_label_issues

    index = {a: i for i, a in enumerate(artists)}
    names = [r["filename"] for r in rows]
    labels = np.asarray([index[r["artist"]] for r in rows], dtype=np.int64)
    probs = np.asarray([r["probabilities"] for r in rows], dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    evidence = {"probabilities": probs}
    if all(r["neighbour_votes"] is not None for r in rows):
        votes = np.asarray([r["neighbour_votes"] for r in rows], dtype=np.float64) + 1e-3 * probs  # ties: probs
        evidence["neighbour votes"] = votes / votes.sum(axis=1, keepdims=True)
    out = {}
    for name, values in evidence.items():
        for filter_by in ("confident_learning", "prune_by_noise_rate", "both", "predicted_neq_given",
                          "low_self_confidence", "low_normalized_margin"):
            ranked = find_label_issues(labels, values, filter_by=filter_by,
                                       return_indices_ranked_by="self_confidence", n_jobs=1)
            out[f"out-of-fold {name}, cleanlab filter_by={filter_by}"] = [names[i] for i in ranked
                                                                          if names[i] in judged]
    return out


def save_probabilities(path: Path, artists: list[str], rows: list[dict[str, Any]], judged: dict[str, str],
                       planted: dict[str, str]) -> None:
    """The audit's out-of-fold probabilities (:func:`audit_rows`) with the catalog and true artists
    and each painting's split, as JSON: filters and ensembles can then be compared offline, without
    training again."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "artists": artists,
        "paintings": [{"filename": r["filename"], "artist": r["artist"], "true_artist": planted.get(r["filename"]),
                       "split": judged.get(r["filename"]), "probabilities": list(r["probabilities"]),
                       "neighbour_votes": r["neighbour_votes"]}
                      for r in rows]}))


def save_fold_views(path: Path, audit_id: int, url: str, planted: dict[str, str]) -> None:
    """Every fold model's probabilities and embeddings for *all* paintings of its fold version
    (train, val and held-out), of the paintings as they are and of their grey views, and which
    are colourless, as ``.npz``: scores that use a fold model's view of the paintings it trained
    on (a nearest-neighbour vote among them, say) can then be compared offline."""
    import numpy as np

    from painting_ml.data.derived import cached_paths, long_side_for
    from painting_ml.data.images import colourless
    from painting_ml.data.versions import load_items
    from painting_ml.learn.audit import audit_info
    from painting_ml.learn.inference import infer, load_run_model

    info = audit_info(audit_id, url)
    out: dict[str, Any] = {"artists": np.asarray(info["artists"])}
    for row in info["fold_rows"]:
        fold = int(row["fold"])
        rm = load_run_model(int(row["run_id"]), url)
        _, items = load_items(int(row["dataset_version_id"]), url)
        paths = cached_paths(items, long_side_for(int(rm.config["image_size"])), url)
        res = infer(rm, paths)
        out[f"f{fold}_files"] = np.asarray([i.filename for i in items])
        out[f"f{fold}_labels"] = np.asarray([i.artist for i in items])
        out[f"f{fold}_true"] = np.asarray([planted.get(i.filename, i.artist) for i in items])
        out[f"f{fold}_splits"] = np.asarray([i.split for i in items])
        out[f"f{fold}_probs"] = np.asarray(res["artist"], dtype=np.float32)
        out[f"f{fold}_emb"] = np.asarray(res["embedding"], dtype=np.float32)
        res = infer(rm, paths, grey=True)
        out[f"f{fold}_grey"] = np.asarray([colourless(p) for p in paths])
        out[f"f{fold}_probs_grey"] = np.asarray(res["artist"], dtype=np.float32)
        out[f"f{fold}_emb_grey"] = np.asarray(res["embedding"], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)


def run_config(args: argparse.Namespace, data: Path) -> Any:
    """The training config of every run and fold: the ``cpu`` preset (ResNet18 from scratch at
    learning rate 3e-4) without augmentation, ``epochs`` epochs without early stopping and with a
    patient learning-rate schedule, so that it fits its training set (the regime in which
    in-sample flags miss wrong labels: the production recipe trains to convergence)."""
    from painting_ml.core.config import PRESETS, RunConfig

    smoke = {"head_units": 16, "batch_size": 16} if args.smoke else {}
    return RunConfig(**{**PRESETS["cpu"], "data_dir": str(data), "n_artists": args.artists, "epochs": args.epochs,
                        "image_size": args.image_size, "early_stopping_patience": 0, "lr_patience": args.lr_patience,
                        "online_augment": False, "augment": (), "optimizers": ["adam"], "min_macro_f1": 0.0,
                        "wandb": False, **smoke})


def version_items(conn: Any, version_id: int) -> dict[str, str]:
    """``{filename: split}`` of a dataset version's labelled paintings."""
    rows = conn.execute("SELECT filename, split FROM dataset_items WHERE version_id = %s AND split <> 'unseen'",
                        (version_id,)).fetchall()
    return {r["filename"]: r["split"] for r in rows}


def in_sample(run_id: int, judged: dict[str, str], url: str, p: float, q: float) -> tuple[list[str], list[str], float]:
    """From the champion's scores of the catalog: the ``possible_misattributions`` list (label
    probability < p and a rival > q, most doubtful first), every judged painting ranked by the
    probability of its label (lowest first), and the accuracy on the run's own training split."""
    from painting_ml.core import db

    with db.connect(url) as conn:
        rows = conn.execute("SELECT filename, catalog_artist, catalog_artist_probability AS label_p, "
                            "attributed_artist, top_artists, top_probabilities FROM attributions "
                            "WHERE run_id = %s AND catalog_artist_in_model", (run_id,)).fetchall()
    for r in rows:  # the most probable other artist, as attribution_rivals reads it
        r["rival_p"] = next(p for a, p in zip(r["top_artists"], r["top_probabilities"], strict=True)
                            if a != r["catalog_artist"])
    rows = [r for r in rows if r["filename"] in judged]
    flagged = sorted((r for r in rows if r["label_p"] < p and r["rival_p"] > q),
                     key=lambda r: (r["label_p"] - r["rival_p"], r["filename"]))
    ranked = sorted(rows, key=lambda r: (r["label_p"], r["filename"]))
    train = [r for r in rows if judged[r["filename"]] == "train"]
    fit = sum(r["attributed_artist"] == r["catalog_artist"] for r in train) / max(1, len(train))
    return [r["filename"] for r in flagged], [r["filename"] for r in ranked], fit


def true_accuracy(run_id: int, truth: dict[str, str], url: str) -> tuple[float, float, int]:
    """A run's test accuracy against the catalog labels it was given and against the true ones."""
    from painting_ml.core import db

    with db.connect(url) as conn:
        rows = conn.execute("SELECT pr.filename, pr.true_artist, pr.predicted_artist, p.artist AS csv_artist "
                            "FROM predictions pr JOIN paintings p ON p.filename = pr.filename "
                            "WHERE pr.run_id = %s", (run_id,)).fetchall()
    given = sum(r["predicted_artist"] == r["true_artist"] for r in rows) / max(1, len(rows))
    true = sum(r["predicted_artist"] == truth.get(r["filename"], r["csv_artist"]) for r in rows) / max(1, len(rows))
    return given, true, len(rows)


def relabel(audit_id: int, top: int, url: str) -> dict[str, str]:
    """Relabel the audit's ``top`` best-ranked flagged paintings to the suggested artist, as a
    curator accepting every suggestion would; ``{filename: new artist}``."""
    from painting_ml.core import db
    from painting_ml.results.reviews import review

    with db.connect(url) as conn:
        issues = conn.execute("SELECT data_root, filename, suggested_artist FROM label_issues WHERE audit_id = %s "
                              "AND is_issue AND suggested_artist <> catalog_artist ORDER BY rank LIMIT %s",
                              (audit_id, top)).fetchall()
    for i in issues:
        review(i["data_root"], i["filename"], "relabel", "bench", new_artist=i["suggested_artist"],
               audit_id=audit_id, url=url)
    return {i["filename"]: i["suggested_artist"] for i in issues}


def one_setting(args: argparse.Namespace, share: float, kind: str, tmp: Path) -> dict[str, Any]:
    """Generate a catalog with ``share`` of its labels flipped (``kind``) and measure it in a
    scratch database (the server's ``PAINTING_DB_URL`` is restored after)."""
    from painting_ml.core.settings import reload_settings
    from painting_ml.data.synth import generate, read_mislabelled

    home = tmp / f"{kind}-{share}"
    os.environ["PAINTING_HOME"] = str(home)
    reload_settings()
    data = home / "data"
    generate(data, artists=args.artists, per_artist=args.per_artist, size=max(args.image_size, 48) * 3 // 2,
             seed=args.seed, mislabel=share, mislabel_kind=kind)
    planted = {f: t["true_artist"] for f, t in read_mislabelled(data).items()}
    out: dict[str, Any] = {"share": share, "kind": kind, "planted": len(planted), "times": {}}
    with scratch_database() as url:
        measure(args, run_config(args, data), planted, url, out)
    return out


def measure(args: argparse.Namespace, cfg: Any, planted: dict[str, str], url: str, out: dict[str, Any]) -> None:
    """Run, promote, attribute (a); audit (b); relabel and retrain (c). ``planted``: the flipped
    paintings' true artists. Results go into ``out``."""
    from painting_ml.core import db
    from painting_ml.pipeline import promote_step, run_all
    from painting_ml.results.attribution import attribute_catalog

    t = time.perf_counter()
    first = run_all(cfg)
    run_id = first["run_id"]
    promote_step(cfg, run_id)
    attribute_catalog(run_id, url=url)
    out["times"]["run+attribute"] = time.perf_counter() - t
    with db.connect(url) as conn:
        judged = version_items(conn, first["dataset_version_id"])
    flips = set(planted) & set(judged)
    train_flips = {f for f in flips if judged[f] == "train"}
    listed, ranked, fit = in_sample(run_id, judged, url, args.p, args.q)
    given, true, n_test = true_accuracy(run_id, planted, url)
    out.update(judged=len(judged), flips=len(flips), train_flips=len(train_flips), train_fit=fit,
               before={"given": given, "true": true, "n": n_test})
    rows = [score(f"in-sample: possible_misattributions (p<{args.p:g}, q>{args.q:g})", listed, flips, train_flips)]
    out["rows"] = rows
    if args.skip_audit:
        return
    from painting_ml.pipeline import audit_all

    t = time.perf_counter()
    audit_cfg = cfg
    if args.audit_augment:  # the folds train with the schema's augmentation (the in-sample run has none)
        from painting_ml.core.config import RunConfig

        fields = RunConfig.model_fields
        audit_cfg = RunConfig(**{**cfg.model_dump(), **{k: fields[k].get_default(call_default_factory=True)
                                                        for k in ("online_augment", "augment")}})
    audit = audit_all(audit_cfg, args.folds, "full")
    out["times"]["audit"] = time.perf_counter() - t
    with db.connect(url) as conn:
        oof = [r["filename"] for r in conn.execute(
            "SELECT filename FROM label_issues WHERE audit_id = %s AND is_issue ORDER BY rank",
            (audit["audit_id"],)).fetchall()]
    oof = [f for f in oof if f in judged]
    rows.append(score(f"in-sample: lowest label probability, top {len(oof)}", ranked[:len(oof)], flips, train_flips))
    rows.append(score(f"out-of-fold cleanlab (k={args.folds}), top {len(listed)}", oof[:len(listed)], flips,
                      train_flips))
    rows.append(score(f"out-of-fold cleanlab (k={args.folds}), the library's list (neighbour votes)", oof, flips,
                      train_flips))
    artists, predictions = audit_rows(audit["audit_id"], url)
    for method, listed_other in other_filters(artists, predictions, judged).items():
        rows.append(score(method, listed_other, flips, train_flips))
    if args.save_probs:
        save_probabilities(Path(args.save_probs) / f"{out['kind']}-{out['share']:g}-seed{args.seed}.json",
                           artists, predictions, judged, planted)
        save_fold_views(Path(args.save_probs) / f"{out['kind']}-{out['share']:g}-seed{args.seed}-folds.npz",
                        audit["audit_id"], url, planted)
    if args.skip_retrain:
        return
    top = len(listed) if args.relabel == "same" else len(oof)
    relabelled = relabel(audit["audit_id"], top, url)
    out["relabelled"] = len(relabelled)
    out["relabelled_right"] = sum(planted.get(f) == artist for f, artist in relabelled.items())
    t = time.perf_counter()
    after = run_all(cfg)
    out["times"]["retrain"] = time.perf_counter() - t
    given, true, n_test = true_accuracy(after["run_id"], planted, url)
    out["after"] = {"given": given, "true": true, "n": n_test}


def print_results(args: argparse.Namespace, results: list[dict[str, Any]], wall: float) -> None:
    print(f"\n# label noise: {args.artists} generated artists x {args.per_artist}+ paintings at {args.image_size} px, "
          f"ResNet18 from scratch, {args.epochs} epochs (no early stopping), k={args.folds}; {machine()}; "
          f"{wall / 60:.1f} min")
    print("| noise | flips in version (train split) | train-split fit | method | listed | precision | recall | F1 | "
          "recall, train-split flips |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for s in r["rows"]:
            print(f"| {r['share']:.0%} {r['kind']} | {r['flips']} ({r['train_flips']}) | {r['train_fit']:.2f} | "
                  f"{s.method} | {s.listed} | {s.precision:.2f} | {s.recall:.2f} | {s.f1:.2f} | {s.train_recall:.2f} |")
    print("\n| noise | relabelled (to the true artist) | test acc. before: given labels / true labels | "
          "after: given / true | RATIO true acc. after/before | minutes: run+attribute, audit, retrain |")
    print("|---|---|---|---|---|---|")
    for r in results:
        b, a = r["before"], r.get("after")
        times = ", ".join(f"{r['times'].get(k, 0) / 60:.1f}" for k in ("run+attribute", "audit", "retrain"))
        if a is None:
            print(f"| {r['share']:.0%} {r['kind']} | not run | {b['given']:.3f} / {b['true']:.3f} | not run | – | "
                  f"{times} |")
            continue
        print(f"| {r['share']:.0%} {r['kind']} | {r['relabelled']} ({r['relabelled_right']}) | {b['given']:.3f} / "
              f"{b['true']:.3f} | {a['given']:.3f} / {a['true']:.3f} | {a['true'] / max(b['true'], 1e-9):.3f} | "
              f"{times} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--large", action="store_true", help="20 artists x 80 paintings instead of 8 x 40")
    size.add_argument("--smoke", action="store_true", help="3 artists x 12 at 32 px, 1 epoch, 2 folds: the code path")
    ap.add_argument("--noise", default=None, help="shares of labels flipped, comma-separated (default 0.05)")
    ap.add_argument("--kinds", default="uniform", help="uniform, confusable or both, comma-separated")
    ap.add_argument("--artists", type=int)
    ap.add_argument("--per-artist", type=int)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr-patience", type=int, default=5, help="epochs without val-loss progress before LR x 0.1")
    ap.add_argument("--folds", type=int, default=None, help="audit folds (default 5; 2 with --smoke)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p", type=float, default=0.2, help="possible_misattributions: label probability below")
    ap.add_argument("--q", type=float, default=0.6, help="possible_misattributions: rival probability above")
    ap.add_argument("--relabel", choices=["same", "flagged"], default="flagged",
                    help="relabel the out-of-fold top N (N = the in-sample list's length) or its whole flagged list")
    ap.add_argument("--skip-audit", action="store_true", help="the in-sample figures only")
    ap.add_argument("--audit-augment", action="store_true",
                    help="the audit's folds train with the schema's augmentation (the in-sample run never does)")
    ap.add_argument("--skip-retrain", action="store_true", help="no relabel-and-retrain step")
    ap.add_argument("--save-probs", metavar="DIR", help="write each audit's out-of-fold probabilities there (JSON)")
    args = ap.parse_args()
    preset = SIZES["large" if args.large else "smoke" if args.smoke else "demo"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.folds = args.folds or (2 if args.smoke else 5)
    shares = [float(s) for s in (args.noise or ("0.1" if args.smoke else "0.05")).split(",")]
    kinds = [k.strip() for k in args.kinds.split(",")]
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for share in shares:
                print(f"[label_noise] {share:.0%} {kind} ...", flush=True)
                results.append(one_setting(args, share, kind, Path(tmp)))
                print(f"[label_noise] {share:.0%} {kind}: {results[-1]['times']}", flush=True)
    print_results(args, results, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
