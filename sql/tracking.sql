-- Statements used by painting_ml.learn.tracking (what a run's wandb run receives).

-- name: tracked_run
SELECT id, wandb_id, config, classes, summary, test_accuracy, macro_f1, top3_accuracy, open_set_auroc,
       dataset_version_id
FROM runs WHERE id = %(id)s;

-- name: tracked_class_metrics
SELECT target, label, precision, recall, f1, support, accuracy
FROM class_metrics WHERE run_id = %(id)s ORDER BY target, label;

-- name: tracked_confusion
SELECT target, true_label, predicted_label, count
FROM confusion WHERE run_id = %(id)s ORDER BY target, true_label, predicted_label;

-- name: tracked_verification
SELECT subset, score, auc, n_pairs, n_positive
FROM verification WHERE run_id = %(id)s ORDER BY subset, score;
