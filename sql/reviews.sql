-- Statements used by painting_ml.results.reviews (the curators' verdicts on flagged paintings)
-- and the review page of the Airflow UI plugin (painting_ml.orchestration.review_page).

-- name: lock_painting
-- One verdict at a time per painting (two-key advisory lock: class locks.REVIEW, hash of root/file).
SELECT pg_advisory_xact_lock(%(lock)s, hashtext(%(root)s || '/' || %(filename)s));

-- name: painting
SELECT filename, artist, title, sha256, gone_at IS NOT NULL AS gone,
       COALESCE(reduced_path, data_root || '/' || rel_path) AS path
FROM paintings WHERE data_root = %(root)s AND filename = %(filename)s;

-- name: active_review
SELECT id, decision, catalog_artist, new_artist, reviewer, note, reviewed_at, sha256, orphaned, current
FROM active_reviews WHERE data_root = %(root)s AND filename = %(filename)s;

-- name: catalog_artists
-- The artists a painting may be relabelled to: the canonical artists of the root's live paintings.
SELECT DISTINCT artist FROM paintings WHERE data_root = %(root)s AND gone_at IS NULL ORDER BY artist;

-- name: artist_spellings
-- The spellings the root's CSVs wrote for its live artists (a relabel may use any of them).
SELECT s.spelling, s.canonical FROM name_spellings s
WHERE s.data_root = %(root)s AND s.kind = 'artist'
  AND EXISTS (SELECT 1 FROM paintings p WHERE p.data_root = s.data_root AND p.artist = s.canonical
              AND p.gone_at IS NULL);

-- name: latest_issue_audit
-- The latest ranked audit that judged this painting (the audit a verdict answers).
SELECT max(i.audit_id) AS audit_id FROM label_issues i JOIN audits a ON a.id = i.audit_id
WHERE i.data_root = %(root)s AND i.filename = %(filename)s AND a.status = 'ranked';

-- name: insert_review
INSERT INTO label_reviews (data_root, filename, decision, catalog_artist, new_artist, reviewer, note, audit_id, sha256)
VALUES (%(root)s, %(filename)s, %(decision)s, %(catalog_artist)s, %(new_artist)s, %(reviewer)s, %(note)s,
        %(audit_id)s, %(sha256)s)
RETURNING *;

-- name: review_by_id
SELECT * FROM label_reviews WHERE id = %(id)s;

-- name: undo_review
UPDATE label_reviews SET undone_at = now(), undone_by = %(who)s
WHERE id = %(id)s AND undone_at IS NULL
RETURNING *;

-- name: queue
-- The review queue by rank, with the standing verdict's id (the page's forms send it back, so a
-- verdict given meanwhile by someone else is not overwritten unseen).
SELECT q.audit_id, q.rank, q.data_root, q.filename, q.catalog_artist, q.suggested_artist, q.quality,
       q.evidence, q.title, q.orphaned, q.last_decision,
       r.id AS review_id, r.reviewer AS last_reviewer, r.reviewed_at AS last_reviewed_at, r.new_artist AS last_new_artist
FROM review_queue q
LEFT JOIN active_reviews r ON r.data_root = q.data_root AND r.filename = q.filename
WHERE %(root)s::text IS NULL OR q.data_root = %(root)s
ORDER BY q.data_root, q.rank, q.filename
LIMIT %(limit)s;

-- name: issue
-- One flagged painting of one audit, for its review page (also once settled: the page shows it).
SELECT i.audit_id, i.rank, i.data_root, i.filename, i.catalog_artist, i.suggested_artist, i.quality, i.is_issue,
       i.evidence, p.title, p.filename IS NULL OR p.gone_at IS NOT NULL AS orphaned,
       COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path
FROM label_issues i
LEFT JOIN paintings p ON p.data_root = i.data_root AND p.filename = i.filename
WHERE i.audit_id = %(audit_id)s AND i.filename = %(filename)s AND (%(root)s::text IS NULL OR i.data_root = %(root)s)
ORDER BY i.data_root LIMIT 1;

-- name: history
SELECT * FROM label_reviews WHERE data_root = %(root)s AND filename = %(filename)s
ORDER BY reviewed_at DESC, id DESC;

-- name: overrides_applied
SELECT overrides_applied FROM dataset_versions WHERE id = %(id)s;

-- name: painting_roots
-- The data folders whose catalog has this file name (an error's "pass --data-dir" hint).
SELECT DISTINCT data_root FROM paintings WHERE filename = %(filename)s AND gone_at IS NULL ORDER BY data_root;

-- name: catalog_files
-- A folder's file names (an error's "did you mean").
SELECT filename FROM paintings WHERE data_root = %(root)s;

-- name: copies_labelled_otherwise
-- The painting's live copies (its duplicate group) whose artist, curators' overrides applied, is
-- not %(artist)s: after this verdict the group holds one picture under two labels, a conflict that
-- dataset versions leave out until the copies agree.
SELECT q.filename, COALESCE(o.artist, q.artist) AS artist
FROM painting_groups g
JOIN painting_groups h ON h.data_root = g.data_root AND h.group_key = g.group_key AND h.filename <> g.filename
JOIN paintings q ON q.data_root = h.data_root AND q.filename = h.filename AND q.gone_at IS NULL
LEFT JOIN label_overrides o ON o.data_root = q.data_root AND o.filename = q.filename
WHERE g.data_root = %(root)s AND g.filename = %(filename)s AND COALESCE(o.artist, q.artist) <> %(artist)s
ORDER BY q.filename;
