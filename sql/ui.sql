-- Statements used by the Airflow UI plugin (painting_ml.orchestration.results_plugin).
-- Run keys are "<dag_id>:<airflow run_id>:<config fingerprint>", so a DAG run's training runs
-- are the runs whose key starts with "<dag_id>:<run_id>:".

-- name: runs_of_dag_run
SELECT v.*, EXISTS (SELECT 1 FROM artifacts a WHERE a.run_id = v.id AND a.kind = 'report') AS has_report
FROM run_verdicts v WHERE starts_with(v.run_key, %(prefix)s) ORDER BY v.id;

-- name: recent_runs
SELECT v.*, EXISTS (SELECT 1 FROM artifacts a WHERE a.run_id = v.id AND a.kind = 'report') AS has_report
FROM run_verdicts v ORDER BY v.id DESC LIMIT %(limit)s;

-- name: run_folder
SELECT run_key, run_dir FROM runs WHERE id = %(id)s;
