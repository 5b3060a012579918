-- Statements used by painting_ml.promotion (the promotion gate).

-- name: lock
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: run_info
SELECT r.id, r.status, r.dataset_version_id AS version_id, v.artists
FROM runs r JOIN dataset_versions v ON v.id = r.dataset_version_id WHERE r.id = %(id)s;

-- name: run_f1
SELECT macro_f1 FROM runs WHERE id = %(id)s;

-- name: artist_recall
SELECT label AS artist, recall FROM class_metrics WHERE run_id = %(id)s AND target = 'artist';

-- name: decision_of_run
SELECT run_id, promoted, reasons, candidate_f1, champion_f1, champion_run_id FROM promotions WHERE run_id = %(id)s;

-- name: insert_decision
INSERT INTO promotions (run_id, dataset_version_id, champion_run_id, candidate_f1, champion_f1, promoted, reasons)
VALUES (%(run)s, %(version)s, %(champion)s, %(cf1)s, %(hf1)s, %(promoted)s, %(reasons)s);

-- name: set_champion
INSERT INTO champion (singleton, run_id) VALUES (true, %(run)s)
ON CONFLICT (singleton) DO UPDATE SET run_id = EXCLUDED.run_id, promoted_at = now();
