-- Statements used by painting_ml.report (the per-run HTML report).

-- name: run_detail
SELECT r.id, r.run_key, r.status, r.config, r.classes, r.summary, r.run_dir, r.model_path,
       r.test_accuracy, r.macro_f1, r.top3_accuracy, r.open_set_auroc, r.started_at, r.finished_at,
       v.id AS version_id, v.content_hash, v.artist_counts, v.created_at AS version_created_at
FROM runs r JOIN dataset_versions v ON v.id = r.dataset_version_id
WHERE r.id = %(id)s;

-- name: class_metrics
SELECT target, label, precision, recall, f1, support, accuracy
FROM class_metrics WHERE run_id = %(id)s ORDER BY target, label;

-- name: confusion
SELECT target, true_label, predicted_label, count FROM confusion WHERE run_id = %(id)s;

-- name: verification
SELECT subset, score, auc, n_pairs, n_positive FROM verification WHERE run_id = %(id)s ORDER BY subset, score;

-- name: promotions
SELECT id, champion_run_id, candidate_f1, champion_f1, promoted, reasons, decided_at
FROM promotions WHERE run_id = %(id)s ORDER BY decided_at DESC, id DESC;
