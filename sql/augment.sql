-- Statements used by painting_ml.augmentation.

-- name: existing
SELECT source_filename, transform, path FROM augmented_images
WHERE version_id = %(id)s ORDER BY source_filename, transform;

-- name: upsert
INSERT INTO augmented_images (version_id, source_filename, transform, path)
VALUES (%(id)s, %(src)s, %(t)s, %(path)s)
ON CONFLICT (version_id, source_filename, transform) DO UPDATE SET path = EXCLUDED.path;

-- name: count
SELECT count(*) AS n FROM augmented_images WHERE version_id = %(id)s;
