-- Statements used by painting_ml.selection and painting_ml.datasets.

-- Selection reads only the run's data root, and never a painting that left the folder. A painting's
-- artist is the curators' label override when one is in force (the label_overrides view), else the
-- CSV's: paintings.artist stays the source of record. overridden: the artist came from an override.

-- name: artist_counts
SELECT COALESCE(o.artist, p.artist) AS artist, count(*) AS n
FROM paintings p LEFT JOIN label_overrides o ON o.data_root = p.data_root AND o.filename = p.filename
WHERE p.data_root = %(root)s AND p.gone_at IS NULL GROUP BY 1;

-- name: files_of_artists
SELECT p.filename, COALESCE(o.artist, p.artist) AS artist, o.artist IS NOT NULL AS overridden
FROM paintings p LEFT JOIN label_overrides o ON o.data_root = p.data_root AND o.filename = p.filename
WHERE p.data_root = %(root)s AND p.gone_at IS NULL AND COALESCE(o.artist, p.artist) = ANY(%(artists)s)
ORDER BY p.filename;

-- name: files_of_other_artists
SELECT p.filename, COALESCE(o.artist, p.artist) AS artist, o.artist IS NOT NULL AS overridden
FROM paintings p LEFT JOIN label_overrides o ON o.data_root = p.data_root AND o.filename = p.filename
WHERE p.data_root = %(root)s AND p.gone_at IS NULL AND COALESCE(o.artist, p.artist) <> ALL(%(artists)s)
ORDER BY p.filename;

-- name: lock
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: versions_of_identity
-- The versions with this train/val/test identity (content hash, or hash:<n> for a later unseen
-- sample), newest first, and whether any of their paintings left the folder since.
SELECT v.id,
       EXISTS (SELECT 1 FROM dataset_items i JOIN paintings p ON p.data_root = i.data_root AND p.filename = i.filename
               WHERE i.version_id = v.id AND p.gone_at IS NOT NULL) AS uses_gone
FROM dataset_versions v
WHERE v.content_hash = %(hash)s OR v.content_hash LIKE %(prefix)s
ORDER BY v.id DESC;

-- name: insert_version
INSERT INTO dataset_versions (content_hash, config, artists, artist_counts, data_root, overrides_applied)
VALUES (%(hash)s, %(config)s, %(artists)s, %(counts)s, %(root)s, %(overrides)s)
RETURNING id;

-- name: copy_items
COPY dataset_items (version_id, data_root, filename, artist, label, split) FROM STDIN;

-- name: get_version
SELECT artists, config, artist_counts, data_root FROM dataset_versions WHERE id = %(id)s;

-- name: items
-- gone: the painting left its folder after the version was made (the version stays readable).
SELECT i.filename, i.artist, i.label, i.split, COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path,
       NULLIF(btrim(p.style), '') AS style, NULLIF(btrim(p.genre), '') AS genre, p.gone_at IS NOT NULL AS gone,
       p.data_root, p.rel_path
FROM dataset_items i JOIN paintings p ON p.data_root = i.data_root AND p.filename = i.filename
WHERE i.version_id = %(id)s
ORDER BY i.split, i.label, i.filename;
