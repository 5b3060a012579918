-- Statements used by painting_ml.data.validation (the data-quality gate) and the report.

-- name: reject_counts
-- The data folder's CSV rows its latest ingest rejected, and its paintings still in use.
SELECT (SELECT count(*) FROM rejects WHERE data_root = %(root)s) AS rejected,
       (SELECT count(*) FROM paintings WHERE data_root = %(root)s AND gone_at IS NULL) AS usable;

-- name: version_counts
SELECT artists, artist_counts FROM dataset_versions WHERE id = %(id)s;

-- name: image_sides
-- The short side of the version's selected paintings (decoded size), as a distribution.
SELECT count(*) AS n,
       percentile_cont(0.1) WITHIN GROUP (ORDER BY least(p.width, p.height)) AS p10,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY least(p.width, p.height)) AS median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY least(p.width, p.height)) AS p90
FROM dataset_items i JOIN paintings p ON p.data_root = i.data_root AND p.filename = i.filename
WHERE i.version_id = %(id)s AND i.split <> 'unseen';

-- name: previous_accepted
-- The latest accepted validation of another version of the same selection in the same folder.
SELECT version_id, figures FROM dataset_validations
WHERE selection_hash = %(selection)s AND data_root = %(root)s AND version_id <> %(id)s AND status <> 'failed'
ORDER BY validated_at DESC, id DESC
LIMIT 1;

-- name: insert_validation
INSERT INTO dataset_validations (version_id, data_root, selection_hash, previous_version_id, status, figures,
                                 findings, thresholds)
VALUES (%(version)s, %(root)s, %(selection)s, %(previous)s, %(status)s, %(figures)s, %(findings)s, %(thresholds)s)
RETURNING id;

-- name: latest_of_version
SELECT id, status, previous_version_id, figures, findings, thresholds, validated_at
FROM dataset_validations WHERE version_id = %(id)s
ORDER BY validated_at DESC, id DESC
LIMIT 1;
