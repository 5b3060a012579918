-- Statements used by the Airflow UI plugin (painting_ml.orchestration.results_plugin).
-- Run keys are "<dag_id>:<airflow run_id>:<config fingerprint>", so a DAG run's training runs
-- are the runs whose key starts with "<dag_id>:<run_id>:".

-- name: runs_of_dag_run
SELECT * FROM run_verdicts WHERE starts_with(run_key, %(prefix)s) ORDER BY id;

-- name: recent_runs
SELECT * FROM run_verdicts ORDER BY id DESC LIMIT %(limit)s;

-- name: run_folder
SELECT run_key, run_dir FROM runs WHERE id = %(id)s;
