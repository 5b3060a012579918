-- The training-resolution image cache (painting_ml.data.derived).

-- name: known
SELECT data_root, rel_path, size_bytes, mtime_ns, sha256, key FROM image_cache
WHERE long_side = %(side)s AND data_root = ANY(%(roots)s);

-- name: upsert
INSERT INTO image_cache (data_root, rel_path, size_bytes, mtime_ns, sha256, long_side, key)
VALUES (%(root)s, %(rel)s, %(size)s, %(mtime)s, %(sha)s, %(side)s, %(key)s)
ON CONFLICT (data_root, rel_path, long_side) DO UPDATE
    SET size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, sha256 = EXCLUDED.sha256,
        key = EXCLUDED.key, made_at = now();
