-- Statements used by painting_ml.training and painting_ml.evaluation.

-- name: insert_run
-- A retried task (same run_key) gets its existing row back.
INSERT INTO runs (run_key, dataset_version_id, config, run_dir)
VALUES (%(key)s, %(version)s, %(config)s, '')
ON CONFLICT (run_key) DO UPDATE SET status = 'running'
RETURNING id, run_dir;

-- name: set_run_dir
UPDATE runs SET run_dir = %(dir)s WHERE id = %(id)s AND run_dir = '';

-- name: upsert_epoch
INSERT INTO epochs (run_id, epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds)
VALUES (%(run)s, %(epoch)s, %(loss)s, %(accuracy)s, %(val_loss)s, %(val_accuracy)s, %(lr)s, %(seconds)s)
ON CONFLICT (run_id, epoch) DO UPDATE SET
    loss = EXCLUDED.loss, accuracy = EXCLUDED.accuracy, val_loss = EXCLUDED.val_loss,
    val_accuracy = EXCLUDED.val_accuracy, learning_rate = EXCLUDED.learning_rate,
    seconds = EXCLUDED.seconds;

-- name: finish_training
UPDATE runs SET status = 'trained', model_path = %(model)s WHERE id = %(id)s;

-- name: get_run
SELECT id, run_key, dataset_version_id, config, status, run_dir, model_path FROM runs WHERE id = %(id)s;

-- name: delete_metrics
DELETE FROM artist_metrics WHERE run_id = %(id)s;

-- name: insert_metric
INSERT INTO artist_metrics (run_id, artist, precision, recall, f1, support, accuracy)
VALUES (%(run)s, %(artist)s, %(precision)s, %(recall)s, %(f1)s, %(support)s, %(accuracy)s);

-- name: delete_predictions
DELETE FROM predictions WHERE run_id = %(id)s;

-- name: copy_predictions
COPY predictions (run_id, filename, true_artist, predicted_artist, confidence) FROM STDIN;

-- name: finish_evaluation
UPDATE runs SET status = 'evaluated', test_accuracy = %(acc)s, macro_f1 = %(f1)s, finished_at = now()
WHERE id = %(id)s;

-- name: artist_metrics
SELECT artist, precision, recall, f1, support, accuracy FROM artist_metrics
WHERE run_id = %(id)s ORDER BY artist;

-- name: predictions_with_paths
SELECT pr.filename, pr.true_artist, pr.predicted_artist, pr.confidence,
       COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path
FROM predictions pr JOIN paintings p USING (filename)
WHERE pr.run_id = %(id)s ORDER BY pr.predicted_artist, pr.confidence DESC, pr.filename;

-- name: upsert_artifact
INSERT INTO artifacts (run_id, kind, path, bytes, sha256) VALUES (%(run)s, %(kind)s, %(path)s, %(bytes)s, %(sha)s)
ON CONFLICT (run_id, path) DO UPDATE SET kind = EXCLUDED.kind, bytes = EXCLUDED.bytes,
    sha256 = EXCLUDED.sha256, created_at = now();

-- name: latest_run
SELECT id FROM runs WHERE status = 'evaluated' ORDER BY finished_at DESC, id DESC LIMIT 1;

-- name: run_summary
SELECT id, test_accuracy, macro_f1, run_dir FROM runs WHERE id = %(id)s;
