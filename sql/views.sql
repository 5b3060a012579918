-- Views over results, for people who query the painting database with SQL.
-- Applied by `painting-ml migrate` (and every run) after schema.sql; dropped and re-created, so
-- changing a view never needs a manual step.

DROP VIEW IF EXISTS latest_artist_metrics, run_comparison, confused_pairs, champion_history, reject_summary,
    run_verdicts, run_lineage, conflicting_duplicates, duplicate_groups, review_queue, label_overrides,
    active_reviews;

-- The per-artist test metrics of the most recently evaluated run.
CREATE VIEW latest_artist_metrics AS
SELECT r.id AS run_id, r.finished_at, m.artist, m.precision, m.recall, m.f1, m.support, m.accuracy
FROM artist_metrics m
JOIN runs r ON r.id = m.run_id
WHERE r.id = (SELECT id FROM runs WHERE status = 'evaluated' ORDER BY finished_at DESC, id DESC LIMIT 1);

-- One row per run with what people compare runs by: config, data, headline metrics, champion.
CREATE VIEW run_comparison AS
SELECT r.id AS run_id, r.run_key, r.status, r.dataset_version_id,
       r.config ->> 'backbone' AS backbone, r.config ->> 'optimizer' AS optimizer,
       (r.config ->> 'learning_rate')::double precision AS learning_rate,
       r.config ->> 'fine_tune' AS fine_tune,
       (SELECT string_agg(t, '+') FROM jsonb_array_elements_text(r.config -> 'targets') t) AS targets,
       (r.config ->> 'image_size')::int AS image_size,
       (SELECT count(*) FROM epochs e WHERE e.run_id = r.id) AS epochs_run,
       (SELECT max(e.val_accuracy) FROM epochs e WHERE e.run_id = r.id) AS best_val_accuracy,
       r.test_accuracy, r.top3_accuracy, r.macro_f1, r.open_set_auroc,
       (SELECT v.auc FROM verification v WHERE v.run_id = r.id AND v.subset = 'seen'
        AND v.score = 'embedding_cosine') AS verification_auc_seen,
       (SELECT v.auc FROM verification v WHERE v.run_id = r.id AND v.subset = 'unseen'
        AND v.score = 'embedding_cosine') AS verification_auc_unseen,
       EXISTS (SELECT 1 FROM champion c WHERE c.run_id = r.id) AS is_champion,
       r.started_at, r.finished_at
FROM runs r;

-- Artist pairs the model mixes up: test paintings of true_artist predicted as predicted_artist.
-- share_of_true is the share of all of true_artist's test paintings (the diagonal included).
CREATE VIEW confused_pairs AS
SELECT run_id, true_artist, predicted_artist, count, share_of_true
FROM (SELECT c.run_id, c.true_label AS true_artist, c.predicted_label AS predicted_artist, c.count,
             c.count::double precision
                 / NULLIF(sum(c.count) OVER (PARTITION BY c.run_id, c.true_label), 0) AS share_of_true
      FROM confusion c WHERE c.target = 'artist') all_cells
WHERE true_artist <> predicted_artist;

-- Every promotion decision, newest first, with the champion it was measured against.
CREATE VIEW champion_history AS
SELECT p.id AS decision_id, p.decided_at, p.run_id, p.promoted, p.candidate_f1, p.champion_run_id,
       p.champion_f1, p.dataset_version_id, p.reasons,
       (SELECT c.run_id FROM champion c) = p.run_id AS is_current_champion
FROM promotions p;

-- Rejected CSV rows by file and reason.
CREATE VIEW reject_summary AS
SELECT data_root, source_csv, reason, count(*) AS n_rows, min(line_no) AS first_line, max(line_no) AS last_line
FROM rejects GROUP BY data_root, source_csv, reason;

-- Each run with its headline figures and the gate's latest verdict (the Airflow UI's results view).
CREATE VIEW run_verdicts AS
SELECT r.id, r.run_key, r.status, r.config ->> 'optimizer' AS optimizer, r.config ->> 'backbone' AS backbone,
       r.test_accuracy, r.macro_f1, r.run_dir, r.finished_at,
       p.promoted, p.reasons,
       EXISTS (SELECT 1 FROM champion c WHERE c.run_id = r.id) AS is_champion
FROM runs r
LEFT JOIN LATERAL (SELECT promoted, reasons FROM promotions
                   WHERE run_id = r.id ORDER BY decided_at DESC, id DESC LIMIT 1) p ON true;

-- What made each run: code, data, configuration, and the model it left (store key and sha256,
-- NULL once gc removed the run's files: files_pruned_at says when).
CREATE VIEW run_lineage AS
SELECT r.id AS run_id, r.run_key, r.status, r.code_version, r.code_commit, r.data_fingerprint,
       r.dataset_version_id, v.content_hash AS dataset_hash, r.config, r.model_path AS model_key,
       (SELECT a.sha256 FROM artifacts a WHERE a.run_id = r.id AND a.kind = 'model'
        ORDER BY a.path = r.model_path DESC, a.created_at DESC LIMIT 1) AS model_sha256,
       r.wandb_id, r.run_dir, r.files_pruned_at, r.started_at, r.finished_at
FROM runs r
LEFT JOIN dataset_versions v ON v.id = r.dataset_version_id;

-- Each group of copies of one picture (exact copies and near copies, see painting_ml.data.identity):
-- its members, their artists, the number of distinct artists and the pairs' largest distance.
CREATE VIEW duplicate_groups AS
SELECT g.data_root, g.group_key, count(*) AS n_members,
       array_agg(g.filename ORDER BY g.filename) AS members,
       array_agg(p.artist ORDER BY g.filename) AS artists,
       count(DISTINCT p.artist) AS n_artists,
       (SELECT max(d.distance) FROM duplicate_pairs d JOIN painting_groups h
          ON h.data_root = d.data_root AND h.filename = d.a
        WHERE d.data_root = g.data_root AND h.group_key = g.group_key) AS max_distance,
       bool_and(p.gone_at IS NULL) AS all_live
FROM painting_groups g
JOIN paintings p ON p.data_root = g.data_root AND p.filename = g.filename
GROUP BY g.data_root, g.group_key;

-- Groups whose members carry different artists: one picture, two labels. Excluded from training
-- unless the run sets exclude_conflicting_duplicates=false.
CREATE VIEW conflicting_duplicates AS
SELECT * FROM duplicate_groups WHERE n_artists > 1;

-- Every canonical artist name of each data root with its spellings as the CSV wrote them, how
-- many live paintings use each, and the canonical name's total (see painting_ml.data.names).
DROP VIEW IF EXISTS artist_spellings;
CREATE VIEW artist_spellings AS
SELECT data_root, canonical AS artist, spelling, paintings, spelling = canonical AS is_canonical,
       sum(paintings) OVER (PARTITION BY data_root, canonical) AS artist_paintings,
       count(*) OVER (PARTITION BY data_root, canonical) AS spellings
FROM name_spellings
WHERE kind = 'artist';

-- Each painting's standing verdict: its latest review not undone. current: the painting is in its
-- folder with the file that was judged (a changed file reopens it); orphaned: it left the folder.
CREATE VIEW active_reviews AS
SELECT r.*, p.filename IS NULL OR p.gone_at IS NOT NULL AS orphaned,
       p.filename IS NOT NULL AND p.gone_at IS NULL AND r.sha256 IS NOT DISTINCT FROM p.sha256 AS current
FROM (SELECT DISTINCT ON (data_root, filename) * FROM label_reviews WHERE undone_at IS NULL
      ORDER BY data_root, filename, reviewed_at DESC, id DESC) r
LEFT JOIN paintings p ON p.data_root = r.data_root AND p.filename = r.filename;

-- The label overrides in force: a current 'relabel' verdict. Selection and dataset versions read
-- the artist from here before the CSV's.
CREATE VIEW label_overrides AS
SELECT data_root, filename, catalog_artist, new_artist AS artist, id AS review_id, reviewer, reviewed_at
FROM active_reviews WHERE decision = 'relabel' AND current;

-- The curators' queue: the flagged paintings of each data root's latest ranked audit, by rank,
-- without those a current keep or relabel verdict settled ('unsure' stays in the queue).
CREATE VIEW review_queue AS
SELECT i.audit_id, i.rank, i.data_root, i.filename, i.catalog_artist, i.suggested_artist, i.quality, i.evidence,
       p.title, p.gone_at IS NOT NULL OR p.filename IS NULL AS orphaned, r.decision AS last_decision
FROM label_issues i
JOIN audits a ON a.id = i.audit_id
LEFT JOIN paintings p ON p.data_root = i.data_root AND p.filename = i.filename
LEFT JOIN active_reviews r ON r.data_root = i.data_root AND r.filename = i.filename
WHERE i.is_issue
  AND a.id = (SELECT max(b.id) FROM audits b WHERE b.data_root = a.data_root AND b.status = 'ranked')
  AND NOT (r.decision IS NOT NULL AND r.decision IN ('keep', 'relabel') AND r.current);
