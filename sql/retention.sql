-- Statements used by painting_ml.results.retention (gc: what files are kept, what is removed).

-- name: lock
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: runs_with_reasons
-- Every run with why its files are kept (an empty list: they may go). "newest" counts every
-- retrain run, pruned or not, so the newest keep_runs runs are the same whatever gc did before; an
-- audit's fold runs never count there (k of them per audit would push the retrains out). A fold run
-- stays 'trained' for good (it is evidence, never evaluated): it is kept while its audit is in
-- flight or is its data folder's latest ranked audit (its models make the evidence's heatmaps),
-- and otherwise goes like any old run.
WITH newest AS (SELECT id FROM runs WHERE purpose = 'retrain' ORDER BY started_at DESC, id DESC LIMIT %(keep)s),
     decided AS (SELECT run_id AS id FROM promotions
                 UNION SELECT champion_run_id FROM promotions
                 UNION SELECT run_id FROM champion_changes
                 UNION SELECT previous_run_id FROM champion_changes),
     audit_kept AS (SELECT f.run_id AS id FROM audit_folds f JOIN audits a ON a.id = f.audit_id
                    WHERE a.status IN ('running', 'predicted')
                       OR a.id IN (SELECT DISTINCT ON (data_root) id FROM audits WHERE status = 'ranked'
                                   ORDER BY data_root, id DESC))
SELECT r.id, r.run_dir, r.status, r.files_pruned_at,
       array_remove(ARRAY[
           CASE WHEN EXISTS (SELECT 1 FROM champion c WHERE c.run_id = r.id) THEN 'champion' END,
           CASE WHEN r.id IN (SELECT id FROM newest) THEN 'newest' END,
           CASE WHEN r.id IN (SELECT id FROM decided) THEN 'promotion' END,
           CASE WHEN r.id IN (SELECT id FROM audit_kept) THEN 'audit' END,
           CASE WHEN r.status = 'running' OR (r.status = 'trained' AND r.purpose = 'retrain') THEN 'in_flight' END,
           CASE WHEN coalesce(r.finished_at, r.started_at) > now() - %(grace)s THEN 'recent' END
       ], NULL) AS reasons
FROM runs r
ORDER BY r.id;

-- name: lock_run_to_prune
-- Re-checked under the promotion lock with the row locked: a promotion, a rollback or a retry of
-- the run (insert_run waits on the row lock) that came after the plan keeps the files; so does an
-- audit that started using the fold run meanwhile.
SELECT r.id, r.run_dir FROM runs r
WHERE r.id = %(id)s AND r.files_pruned_at IS NULL AND r.run_dir <> ''
  AND r.status <> 'running' AND NOT (r.status = 'trained' AND r.purpose = 'retrain')
  AND NOT EXISTS (SELECT 1 FROM champion c WHERE c.run_id = r.id)
  AND NOT EXISTS (SELECT 1 FROM promotions p WHERE r.id IN (p.run_id, p.champion_run_id))
  AND NOT EXISTS (SELECT 1 FROM champion_changes h WHERE r.id IN (h.run_id, h.previous_run_id))
  AND NOT EXISTS (SELECT 1 FROM audit_folds f JOIN audits a ON a.id = f.audit_id
                  WHERE f.run_id = r.id AND a.status IN ('running', 'predicted'))
FOR UPDATE;

-- name: keys_kept_by_other_runs
-- Files under a run's folder that another run's rows name (never deleted with the folder).
SELECT path AS key FROM artifacts WHERE run_id <> %(id)s AND starts_with(path, %(prefix)s)
UNION SELECT model_path FROM runs WHERE id <> %(id)s AND starts_with(model_path, %(prefix)s);

-- name: mark_pruned
UPDATE runs SET files_pruned_at = now() WHERE id = %(id)s;

-- name: delete_run_artifacts
DELETE FROM artifacts WHERE run_id = %(id)s;

-- name: run_dirs
SELECT run_dir FROM runs WHERE run_dir <> '';

-- name: live_versions
-- A dataset version is live while a run whose files are kept (not pruned, not being pruned by this
-- gc) or a run in flight used it, or for live_for after it was made (it may be being augmented or
-- waiting for its training). Read after the runs were pruned, so a run retried meanwhile counts.
SELECT v.id FROM dataset_versions v
WHERE v.created_at > now() - %(live_for)s
   OR EXISTS (SELECT 1 FROM runs r WHERE r.dataset_version_id = v.id
              AND ((r.files_pruned_at IS NULL AND r.id <> ALL(%(pruned)s))
                   OR r.status = 'running' OR (r.status = 'trained' AND r.purpose = 'retrain')))
ORDER BY v.id;

-- name: augmented_rows
SELECT version_id, path FROM augmented_images;

-- name: delete_augmented_rows
DELETE FROM augmented_images WHERE version_id = ANY(%(versions)s);

-- name: image_cache_rows
-- Each derived copy with whether a painting of a live version uses it; "old" rows are past grace.
SELECT c.data_root, c.rel_path, c.long_side, c.key, c.made_at <= now() - %(grace)s AS old,
       EXISTS (SELECT 1 FROM paintings p
               JOIN dataset_items i ON i.data_root = p.data_root AND i.filename = p.filename
               WHERE p.data_root = c.data_root AND p.rel_path = c.rel_path
                 AND i.version_id = ANY(%(live)s)) AS live
FROM image_cache c;

-- name: delete_image_cache_rows
DELETE FROM image_cache c
USING unnest(%(roots)s::text[], %(rels)s::text[], %(sides)s::int[]) AS d (data_root, rel_path, long_side)
WHERE c.data_root = d.data_root AND c.rel_path = d.rel_path AND c.long_side = d.long_side;

-- name: image_cache_keys
SELECT DISTINCT key FROM image_cache;

-- name: reduced_paths
-- Every converted copy the catalog or the ingest manifest names (host paths).
SELECT reduced_path AS path FROM paintings WHERE reduced_path IS NOT NULL
UNION SELECT reduced_path FROM ingest_files WHERE reduced_path IS NOT NULL;
