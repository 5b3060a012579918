-- Statements used by painting_ml.results.promotion (the promotion gate) and
-- painting_ml.results.registry (champion history, set, rollback).

-- name: lock
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: run_info
SELECT r.id, r.status, r.dataset_version_id AS version_id, v.artists, r.files_pruned_at
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

-- name: record_change
INSERT INTO champion_changes (run_id, previous_run_id, action, who, why)
VALUES (%(run)s, %(previous)s, %(action)s, %(who)s, %(why)s)
RETURNING id, run_id, previous_run_id, action, who, why, changed_at;

-- name: change_that_made
-- The latest promotion or set that made the given run champion: a rollback returns to its previous
-- run (rollbacks themselves are skipped, so successive rollbacks walk back like a stack).
SELECT previous_run_id FROM champion_changes
WHERE run_id = %(run)s AND action <> 'rollback'
ORDER BY id DESC LIMIT 1;

-- name: champion_changes
SELECT id, run_id, previous_run_id, action, who, why, changed_at
FROM champion_changes ORDER BY id DESC LIMIT %(limit)s;

-- name: champion_info
SELECT c.run_id, c.promoted_at AS since, r.macro_f1, r.test_accuracy, r.dataset_version_id,
       (SELECT h.action FROM champion_changes h WHERE h.run_id = c.run_id ORDER BY h.id DESC LIMIT 1) AS how
FROM champion c JOIN runs r ON r.id = c.run_id;
