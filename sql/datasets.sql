-- Statements used by painting_ml.selection and painting_ml.datasets.

-- name: artist_counts
SELECT artist, count(*) FROM paintings GROUP BY artist;

-- name: files_of_artists
SELECT filename, artist FROM paintings WHERE artist = ANY(%(artists)s) ORDER BY filename;

-- name: files_of_other_artists
SELECT filename, artist FROM paintings WHERE artist <> ALL(%(artists)s) ORDER BY filename;

-- name: find_version
SELECT id FROM dataset_versions WHERE content_hash = %(hash)s;

-- name: insert_version
INSERT INTO dataset_versions (content_hash, config, artists, artist_counts)
VALUES (%(hash)s, %(config)s, %(artists)s, %(counts)s)
RETURNING id;

-- name: copy_items
COPY dataset_items (version_id, filename, artist, label, split) FROM STDIN;

-- name: get_version
SELECT artists, config, artist_counts FROM dataset_versions WHERE id = %(id)s;

-- name: items
SELECT i.filename, i.artist, i.label, i.split, COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path),
       NULLIF(btrim(p.style), ''), NULLIF(btrim(p.genre), '')
FROM dataset_items i JOIN paintings p USING (filename)
WHERE i.version_id = %(id)s
ORDER BY i.split, i.label, i.filename;
