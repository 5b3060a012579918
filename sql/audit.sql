-- Statements used by painting_ml.learn.audit (folds, trainings, out-of-fold predictions) and
-- painting_ml.results.label_issues (cleanlab's ranking).

-- name: upsert_audit
-- One row per audit key: a retried task (or a rerun of the same Airflow run) finds its audit again;
-- a failed one runs again (no longer finished: its end time and failure summary are cleared).
INSERT INTO audits (audit_key, dataset_version_id, data_root, folds, recipe, config)
VALUES (%(key)s, %(version)s, %(root)s, %(folds)s, %(recipe)s, %(config)s)
ON CONFLICT (audit_key) DO UPDATE
    SET status = CASE WHEN audits.status = 'failed' THEN 'running' ELSE audits.status END,
        finished_at = CASE WHEN audits.status = 'failed' THEN NULL ELSE audits.finished_at END,
        summary = CASE WHEN audits.status = 'failed' THEN NULL ELSE audits.summary END
RETURNING id, dataset_version_id, folds, status;

-- name: insert_fold
INSERT INTO audit_folds (audit_id, fold, dataset_version_id) VALUES (%(audit)s, %(fold)s, %(version)s)
ON CONFLICT (audit_id, fold) DO NOTHING;

-- name: get_audit
SELECT a.id, a.audit_key, a.dataset_version_id, a.data_root, a.folds, a.recipe, a.config, a.status, a.summary,
       a.started_at, a.finished_at, v.artists
FROM audits a JOIN dataset_versions v ON v.id = a.dataset_version_id
WHERE a.id = %(id)s;

-- name: folds_of_audit
SELECT fold, dataset_version_id, run_id, predicted_at FROM audit_folds WHERE audit_id = %(id)s ORDER BY fold;

-- name: set_fold_run
UPDATE audit_folds SET run_id = %(run)s WHERE audit_id = %(audit)s AND fold = %(fold)s;

-- name: run_of_fold
SELECT f.run_id, r.dataset_version_id, r.model_path, r.status
FROM audit_folds f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.audit_id = %(audit)s AND f.fold = %(fold)s;

-- name: painting_hashes
SELECT filename, sha256 FROM paintings WHERE data_root = %(root)s AND filename = ANY(%(files)s);

-- name: delete_fold_predictions
DELETE FROM audit_predictions WHERE audit_id = %(audit)s AND fold = %(fold)s;

-- name: copy_predictions
COPY audit_predictions (audit_id, data_root, filename, fold, artist, probabilities, neighbour_votes, embedding, sha256)
FROM STDIN;

-- name: fold_predicted
-- The audit is 'predicted' once every fold is (a ranked audit stays ranked when a fold is redone).
WITH f AS (UPDATE audit_folds SET predicted_at = now() WHERE audit_id = %(audit)s AND fold = %(fold)s)
UPDATE audits SET status = 'predicted'
WHERE id = %(audit)s AND status = 'running'
  AND NOT EXISTS (SELECT 1 FROM audit_folds g WHERE g.audit_id = %(audit)s AND g.fold <> %(fold)s
                  AND g.predicted_at IS NULL);

-- name: fail_audit
-- A ranked audit stays ranked (its ranking stands when the evidence after it fails).
UPDATE audits SET status = 'failed', summary = %(summary)s, finished_at = now()
WHERE id = %(id)s AND status <> 'ranked';

-- name: predictions_of_audit
SELECT data_root, filename, fold, artist, probabilities, neighbour_votes FROM audit_predictions
WHERE audit_id = %(id)s ORDER BY data_root, filename;

-- name: fold_figures
-- Per fold: its run, the seconds its epochs took (fit time), its epochs and its paintings.
SELECT f.fold, f.run_id, f.predicted_at IS NOT NULL AS predicted,
       (SELECT sum(e.seconds) FROM epochs e WHERE e.run_id = f.run_id) AS train_seconds,
       (SELECT count(*) FROM epochs e WHERE e.run_id = f.run_id) AS epochs,
       (SELECT count(*) FROM audit_predictions p WHERE p.audit_id = f.audit_id AND p.fold = f.fold) AS paintings
FROM audit_folds f WHERE f.audit_id = %(id)s ORDER BY f.fold;

-- name: upsert_issue
-- Re-ranking replaces the verdict; the evidence rendered for the painting stays.
INSERT INTO label_issues (audit_id, data_root, filename, catalog_artist, suggested_artist, quality, is_issue, rank)
VALUES (%(audit)s, %(root)s, %(file)s, %(artist)s, %(suggested)s, %(quality)s, %(issue)s, %(rank)s)
ON CONFLICT (audit_id, data_root, filename) DO UPDATE
    SET catalog_artist = EXCLUDED.catalog_artist, suggested_artist = EXCLUDED.suggested_artist,
        quality = EXCLUDED.quality, is_issue = EXCLUDED.is_issue, rank = EXCLUDED.rank;

-- name: delete_stale_issues
-- Rows of paintings the audit no longer predicts (a fold was redone without them).
DELETE FROM label_issues i WHERE i.audit_id = %(audit)s
  AND NOT EXISTS (SELECT 1 FROM audit_predictions p WHERE p.audit_id = i.audit_id
                  AND p.data_root = i.data_root AND p.filename = i.filename);

-- name: finish_ranking
UPDATE audits SET status = 'ranked', summary = %(summary)s, finished_at = now() WHERE id = %(id)s;

-- name: top_issues
-- The audit's flagged paintings by rank, with both artists' probabilities and neighbour votes
-- (the votes NULL for an audit from before migration 0016).
SELECT i.rank, i.filename, i.catalog_artist, i.suggested_artist, i.quality,
       p.probabilities[(SELECT n FROM jsonb_array_elements_text(v.artists) WITH ORDINALITY e(name, n)
                        WHERE e.name = i.catalog_artist)] AS catalog_probability,
       p.probabilities[(SELECT n FROM jsonb_array_elements_text(v.artists) WITH ORDINALITY e(name, n)
                        WHERE e.name = i.suggested_artist)] AS suggested_probability,
       p.neighbour_votes[(SELECT n FROM jsonb_array_elements_text(v.artists) WITH ORDINALITY e(name, n)
                          WHERE e.name = i.catalog_artist)] AS catalog_votes,
       p.neighbour_votes[(SELECT n FROM jsonb_array_elements_text(v.artists) WITH ORDINALITY e(name, n)
                          WHERE e.name = i.suggested_artist)] AS suggested_votes,
       i.data_root
FROM label_issues i
JOIN audits a ON a.id = i.audit_id
JOIN dataset_versions v ON v.id = a.dataset_version_id
JOIN audit_predictions p ON p.audit_id = i.audit_id AND p.data_root = i.data_root AND p.filename = i.filename
WHERE i.audit_id = %(id)s AND i.is_issue
ORDER BY i.rank
LIMIT %(limit)s;

-- name: recent_audits
SELECT id, audit_key, status, folds, recipe, data_root, (summary ->> 'audited')::int AS audited,
       (summary ->> 'flagged')::int AS flagged, started_at, finished_at
FROM audits ORDER BY id DESC LIMIT %(limit)s;

-- name: audit_by_key
SELECT id FROM audits WHERE audit_key = %(key)s;

-- name: audited_count
SELECT count(*) AS n FROM dataset_items WHERE version_id = %(id)s;
