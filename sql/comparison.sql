-- Statements used by painting_ml.comparison.

-- name: runs
SELECT r.id AS run_id, r.run_dir, r.config ->> 'optimizer' AS optimizer, r.test_accuracy, r.macro_f1,
       max(e.val_accuracy) AS best_val_accuracy, min(e.val_loss) AS best_val_loss
FROM runs r LEFT JOIN epochs e ON e.run_id = r.id
WHERE r.id = ANY(%(ids)s)
GROUP BY r.id ORDER BY r.id;
