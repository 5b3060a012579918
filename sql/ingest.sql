-- Statements used by painting_ml.catalog.ingest, one transaction per ingest.

-- name: create_staging
CREATE TEMP TABLE staging_paintings (LIKE paintings INCLUDING DEFAULTS) ON COMMIT DROP;

-- name: copy_staging
COPY staging_paintings (filename, artist, title, style, genre, date, source, artist_group, in_train,
                        meta_width, meta_height, size_bytes, data_root, rel_path, width, height, mode, source_csv,
                        reduced_path)
FROM STDIN;

-- name: upsert_paintings
-- Only rows whose content changed are rewritten, so a rerun leaves the table untouched.
INSERT INTO paintings AS p (filename, artist, title, style, genre, date, source, artist_group,
                            in_train, meta_width, meta_height, size_bytes, data_root, rel_path, width,
                            height, mode, source_csv, reduced_path)
SELECT filename, artist, title, style, genre, date, source, artist_group, in_train, meta_width,
       meta_height, size_bytes, data_root, rel_path, width, height, mode, source_csv, reduced_path
FROM staging_paintings
ON CONFLICT (filename) DO UPDATE SET
    artist = EXCLUDED.artist, title = EXCLUDED.title, style = EXCLUDED.style,
    genre = EXCLUDED.genre, date = EXCLUDED.date, source = EXCLUDED.source,
    artist_group = EXCLUDED.artist_group, in_train = EXCLUDED.in_train,
    meta_width = EXCLUDED.meta_width, meta_height = EXCLUDED.meta_height,
    size_bytes = EXCLUDED.size_bytes, data_root = EXCLUDED.data_root, rel_path = EXCLUDED.rel_path, width = EXCLUDED.width,
    height = EXCLUDED.height, mode = EXCLUDED.mode, source_csv = EXCLUDED.source_csv,
    reduced_path = EXCLUDED.reduced_path,
    ingested_at = now()
WHERE (p.artist, p.title, p.style, p.genre, p.date, p.data_root, p.rel_path, p.width, p.height, p.mode)
      IS DISTINCT FROM
      (EXCLUDED.artist, EXCLUDED.title, EXCLUDED.style, EXCLUDED.genre, EXCLUDED.date,
       EXCLUDED.data_root, EXCLUDED.rel_path, EXCLUDED.width, EXCLUDED.height, EXCLUDED.mode);

-- name: delete_rejects
DELETE FROM rejects WHERE source_csv = %(source_csv)s;

-- name: copy_rejects
COPY rejects (source_csv, line_no, filename, reason, detail) FROM STDIN;

-- name: counts
SELECT (SELECT count(*) FROM paintings), (SELECT count(*) FROM rejects);
