-- Statements used by the Airflow UI plugin (painting_ml.orchestration.results_plugin).
-- Run keys are "<dag_id>:<airflow run_id>:<config fingerprint>", so a DAG run's training runs
-- are the runs whose key starts with "<dag_id>:<run_id>:".

-- name: runs_of_dag_run
SELECT r.id, r.run_key, r.status, r.config ->> 'optimizer' AS optimizer, r.config ->> 'backbone' AS backbone,
       r.test_accuracy, r.macro_f1, r.run_dir, r.finished_at,
       p.promoted, p.reasons,
       EXISTS (SELECT 1 FROM champion c WHERE c.run_id = r.id) AS is_champion
FROM runs r
LEFT JOIN LATERAL (SELECT promoted, reasons FROM promotions
                   WHERE run_id = r.id ORDER BY decided_at DESC, id DESC LIMIT 1) p ON true
WHERE starts_with(r.run_key, %(prefix)s)
ORDER BY r.id;

-- name: recent_runs
SELECT r.id, r.run_key, r.status, r.config ->> 'optimizer' AS optimizer, r.config ->> 'backbone' AS backbone,
       r.test_accuracy, r.macro_f1, r.run_dir, r.finished_at,
       p.promoted, p.reasons,
       EXISTS (SELECT 1 FROM champion c WHERE c.run_id = r.id) AS is_champion
FROM runs r
LEFT JOIN LATERAL (SELECT promoted, reasons FROM promotions
                   WHERE run_id = r.id ORDER BY decided_at DESC, id DESC LIMIT 1) p ON true
ORDER BY r.id DESC
LIMIT %(limit)s;

-- name: run_folder
SELECT run_key, run_dir FROM runs WHERE id = %(id)s;
