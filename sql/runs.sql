-- Statements used by painting_ml.training and painting_ml.evaluation.

-- name: insert_run
-- A retried task (same run_key) gets its existing row back.
-- A finished training (it has its model) keeps its status: the caller returns it as it is.
INSERT INTO runs (run_key, dataset_version_id, config, run_dir, heartbeat_at)
VALUES (%(key)s, %(version)s, %(config)s, '', now())
ON CONFLICT (run_key) DO UPDATE
    SET status = CASE WHEN runs.model_path IS NULL THEN 'running' ELSE runs.status END,
        error = CASE WHEN runs.model_path IS NULL THEN NULL ELSE runs.error END,
        finished_at = CASE WHEN runs.model_path IS NULL THEN NULL ELSE runs.finished_at END,
        heartbeat_at = now(),
        files_pruned_at = CASE WHEN runs.model_path IS NULL THEN NULL ELSE runs.files_pruned_at END
RETURNING id, run_dir, model_path, wandb_id, dataset_version_id;

-- name: set_run_dir
-- Set once; whoever comes second (a concurrent retry) gets the stored folder back.
UPDATE runs SET run_dir = CASE WHEN run_dir = '' THEN %(dir)s ELSE run_dir END WHERE id = %(id)s
RETURNING run_dir;

-- name: set_lineage
-- What trained the run; the wandb id is set once (a retry logs into the same wandb run).
UPDATE runs SET code_version = %(version)s, code_commit = %(commit)s,
    data_fingerprint = (SELECT fingerprint FROM ingest_state WHERE data_root = %(root)s),
    wandb_id = COALESCE(wandb_id, %(wandb_id)s)
WHERE id = %(id)s
RETURNING wandb_id;

-- name: upsert_epoch
INSERT INTO epochs (run_id, epoch, phase, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds, metrics)
VALUES (%(run)s, %(epoch)s, %(phase)s, %(loss)s, %(accuracy)s, %(val_loss)s, %(val_accuracy)s, %(lr)s,
        %(seconds)s, %(metrics)s)
ON CONFLICT (run_id, epoch) DO UPDATE SET
    phase = EXCLUDED.phase, loss = EXCLUDED.loss, accuracy = EXCLUDED.accuracy, val_loss = EXCLUDED.val_loss,
    val_accuracy = EXCLUDED.val_accuracy, learning_rate = EXCLUDED.learning_rate,
    seconds = EXCLUDED.seconds, metrics = EXCLUDED.metrics;

-- name: best_val_accuracy
SELECT max(val_accuracy) AS best FROM epochs WHERE run_id = %(id)s;

-- name: epochs_of_run
SELECT epoch, phase, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds
FROM epochs WHERE run_id = %(id)s ORDER BY epoch;

-- name: set_classes
UPDATE runs SET classes = %(classes)s WHERE id = %(id)s;

-- name: stop_run
-- The training ended without its model: 'failed' (it raised, or its task died) or 'interrupted' (a
-- stop signal). Only while no live attempt holds the run key: an attempt refused or killed beside
-- a running one never overwrites that one's state. A retry sets the row back to 'running'.
UPDATE runs r SET status = %(status)s, error = %(error)s, finished_at = now()
WHERE r.run_key = %(key)s AND r.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = %(lock)s AND l.objid = hashtext(r.run_key)::oid)
RETURNING r.id;

-- name: mark_lost
-- The sweep: 'running' rows with no heartbeat for %(minutes)s minutes whose run key no session
-- holds (the server frees a dead process's lock) were left by a process that vanished.
UPDATE runs r SET status = 'lost', error = %(error)s, finished_at = now()
WHERE r.status = 'running'
  AND coalesce(r.heartbeat_at, r.started_at) < now() - %(minutes)s * interval '1 minute'
  AND NOT EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = %(lock)s AND l.objid = hashtext(r.run_key)::oid)
RETURNING r.id, r.run_key, r.heartbeat_at;

-- name: take_run_key
-- Session-scoped, on the training's own connection: held until released or the session ends.
SELECT pg_try_advisory_lock(%(lock)s, hashtext(%(key)s)) AS taken;

-- name: release_run_key
SELECT pg_advisory_unlock(%(lock)s, hashtext(%(key)s)) AS released;

-- name: run_key_holder
-- Who holds a run key (for the one line that refuses a second attempt).
SELECT a.application_name, a.client_addr, a.backend_start,
       (SELECT r.id FROM runs r WHERE r.run_key = %(key)s) AS run_id,
       (SELECT r.heartbeat_at FROM runs r WHERE r.run_key = %(key)s) AS heartbeat_at
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(lock)s AND l.objid = hashtext(%(key)s)::oid;

-- name: beat
UPDATE runs SET heartbeat_at = now() WHERE id = %(id)s AND status = 'running';

-- name: run_by_key
SELECT id, status, error, model_path FROM runs WHERE run_key = %(key)s;

-- name: finish_training
UPDATE runs SET status = 'trained', model_path = %(model)s WHERE id = %(id)s;

-- name: get_run
SELECT id, run_key, dataset_version_id, config, status, run_dir, model_path, classes FROM runs WHERE id = %(id)s;

-- name: delete_metrics
DELETE FROM class_metrics WHERE run_id = %(id)s;

-- name: insert_metric
INSERT INTO class_metrics (run_id, target, label, precision, recall, f1, support, accuracy)
VALUES (%(run)s, %(target)s, %(label)s, %(precision)s, %(recall)s, %(f1)s, %(support)s, %(accuracy)s);

-- name: delete_confusion
DELETE FROM confusion WHERE run_id = %(id)s;

-- name: insert_confusion
INSERT INTO confusion (run_id, target, true_label, predicted_label, count)
VALUES (%(run)s, %(target)s, %(true)s, %(pred)s, %(count)s);

-- name: delete_verification
DELETE FROM verification WHERE run_id = %(id)s;

-- name: insert_verification
INSERT INTO verification (run_id, subset, score, auc, n_pairs, n_positive)
VALUES (%(run)s, %(subset)s, %(score)s, %(auc)s, %(n_pairs)s, %(n_positive)s);

-- name: delete_predictions
DELETE FROM predictions WHERE run_id = %(id)s;

-- name: copy_predictions
COPY predictions (run_id, filename, true_artist, predicted_artist, confidence, top3, other_targets) FROM STDIN;

-- name: finish_evaluation
UPDATE runs SET status = 'evaluated', test_accuracy = %(acc)s, macro_f1 = %(f1)s, top3_accuracy = %(top3)s,
    open_set_auroc = %(auroc)s, summary = %(summary)s, finished_at = now()
WHERE id = %(id)s;

-- name: artist_metrics
SELECT artist, precision, recall, f1, support, accuracy FROM artist_metrics
WHERE run_id = %(id)s ORDER BY artist;

-- name: predictions_with_paths
SELECT pr.filename, pr.true_artist, pr.predicted_artist, pr.confidence,
       COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path
FROM predictions pr
JOIN runs r ON r.id = pr.run_id
JOIN dataset_items i ON i.version_id = r.dataset_version_id AND i.filename = pr.filename
JOIN paintings p ON p.data_root = i.data_root AND p.filename = i.filename
WHERE pr.run_id = %(id)s ORDER BY pr.predicted_artist, pr.confidence DESC, pr.filename;

-- name: upsert_artifact
INSERT INTO artifacts (run_id, kind, path, bytes, sha256) VALUES (%(run)s, %(kind)s, %(path)s, %(bytes)s, %(sha)s)
ON CONFLICT (run_id, path) DO UPDATE SET kind = EXCLUDED.kind, bytes = EXCLUDED.bytes,
    sha256 = EXCLUDED.sha256, created_at = now();

-- name: artifacts_of_run
SELECT kind, path, bytes, sha256 FROM artifacts WHERE run_id = %(id)s ORDER BY path;

-- name: latest_run
-- A label audit's fold runs (purpose 'audit') are evidence about labels, never the model in use.
SELECT id AS run_id FROM runs WHERE status = 'evaluated' AND purpose = 'retrain'
ORDER BY finished_at DESC, id DESC LIMIT 1;

-- name: run_summary
SELECT id, test_accuracy, macro_f1, run_dir, summary FROM runs WHERE id = %(id)s;

-- name: current_champion
SELECT run_id FROM champion;

-- name: latest_decision
SELECT run_id, promoted, reasons FROM promotions ORDER BY decided_at DESC, id DESC LIMIT 1;

-- name: sweep_of_run
-- The runs trained in the same Airflow dag run as the given run: run keys are
-- "<dag_id>:<airflow run_id>:<config fingerprint>", so the same key without its last part.
SELECT r.id, r.config ->> 'optimizer' AS optimizer, r.test_accuracy, r.macro_f1,
       (SELECT max(e.val_accuracy) FROM epochs e WHERE e.run_id = r.id) AS best_val_accuracy
FROM runs r
WHERE regexp_replace(r.run_key, ':[^:]*$', '')
    = (SELECT regexp_replace(run_key, ':[^:]*$', '') FROM runs WHERE id = %(id)s)
ORDER BY r.id;

-- name: lineage_of_runs
-- What made each listed run (`painting-ml runs --json`): the run_lineage view's columns.
SELECT run_id, code_version, code_commit, data_fingerprint, dataset_version_id, dataset_hash, config,
       model_key, model_sha256, wandb_id, run_dir, files_pruned_at
FROM run_lineage WHERE run_id = ANY(%(ids)s);
