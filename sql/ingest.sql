-- Statements used by painting_ml.data.ingest, one transaction per ingest.
-- Placeholders in braces are column lists that painting_ml.data.ingest.load composes from the
-- record types of painting_ml.data.ingest.records (identifiers only; values are always bound):
-- {columns} the record's columns and {staged} the same as s.<column>; {updated} the columns outside
-- the table's key, {staged_updated} those as s.<column> and {current} those of the row being
-- updated (p.<column>, f.<column>).

-- name: create_staging
CREATE TEMP TABLE staging_paintings (LIKE paintings INCLUDING DEFAULTS) ON COMMIT DROP;

-- name: copy_staging
COPY staging_paintings ({columns}) FROM STDIN (FORMAT BINARY);

-- name: copy_paintings
-- A root's first load: no row of it exists to update or mark gone, so the rows go straight in.
COPY paintings ({columns}) FROM STDIN (FORMAT BINARY);

-- name: column_types
-- The type of each named column of a table, in the order named: a binary COPY sends values typed.
SELECT a.atttypid::int AS oid
FROM unnest(%(columns)s::text[]) WITH ORDINALITY AS c(name, n)
JOIN pg_attribute AS a ON a.attrelid = %(table)s::regclass AND a.attname = c.name
ORDER BY c.n;

-- name: root_has_rows
-- Whether the root has any catalog row, live or gone: a root without one (a first ingest) needs
-- no update, no gone-marking and no counting, only the insert.
SELECT EXISTS (SELECT 1 FROM paintings WHERE data_root = %(root)s) AS has_rows;

-- name: lock_ingest
-- One ingest at a time: the update + insert pair below is then race-free.
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: analyze_staging
-- Statistics of the join keys only: that is all the planner needs here, at a quarter of the cost
-- of analysing all 19 columns.
ANALYZE staging_paintings (data_root, filename);

-- name: update_paintings
-- Only rows whose content changed are rewritten (every written column is compared, and a gone row
-- that is back is revived), so a rerun leaves the table untouched. Rows match within one data root.
UPDATE paintings AS p SET ({updated}) = ({staged_updated}), gone_at = NULL, ingested_at = now()
FROM staging_paintings AS s
WHERE p.data_root = s.data_root AND p.filename = s.filename
  AND ({current}, p.gone_at) IS DISTINCT FROM ({staged_updated}, NULL::timestamptz);

-- name: insert_new_paintings
-- A plain insert of the new rows (an anti-join) avoids ON CONFLICT's per-row speculative insertion.
INSERT INTO paintings ({columns})
SELECT {staged} FROM staging_paintings AS s
WHERE NOT EXISTS (SELECT 1 FROM paintings AS p WHERE p.data_root = s.data_root AND p.filename = s.filename);

-- name: mark_gone
-- The root's rows that this ingest did not load (CSV line removed, file deleted, now a reject).
-- EXCEPT (a hashed or sorted set difference) stays linear even when the statistics of the rows
-- just inserted are stale, where an anti-join would be planned as a nested loop.
UPDATE paintings AS p SET gone_at = now()
FROM (SELECT filename FROM paintings WHERE data_root = %(root)s AND gone_at IS NULL
      EXCEPT
      SELECT filename FROM staging_paintings) AS g
WHERE p.data_root = %(root)s AND p.filename = g.filename;

-- name: delete_unreferenced_gone
-- Gone rows are kept only as the history of dataset versions that used them.
DELETE FROM paintings AS p
WHERE p.data_root = %(root)s AND p.gone_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM dataset_items AS i WHERE i.data_root = p.data_root AND i.filename = p.filename);

-- name: delete_rejects
DELETE FROM rejects WHERE data_root = %(root)s;

-- name: copy_rejects
COPY rejects ({columns}) FROM STDIN (FORMAT BINARY);

-- name: counts
SELECT (SELECT count(*) FROM paintings WHERE data_root = %(root)s AND gone_at IS NULL) AS paintings_total,
       (SELECT count(*) FROM rejects WHERE data_root = %(root)s) AS rejects_total;

-- name: get_state
-- The stored fingerprint counts only while the folder's paintings are still in the table.
SELECT s.fingerprint FROM ingest_state s
WHERE s.data_root = %(root)s
  AND EXISTS (SELECT 1 FROM paintings p WHERE p.data_root = s.data_root AND p.gone_at IS NULL);

-- name: set_state
INSERT INTO ingest_state (data_root, fingerprint, files) VALUES (%(root)s, %(fp)s, %(files)s)
ON CONFLICT (data_root) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, files = EXCLUDED.files, ingested_at = now();

-- name: manifest
-- The per-file manifest of a root (what each file's last probe found), read before probing. It
-- counts only while the root has catalog rows, so an emptied catalog is probed afresh. The EXISTS
-- tests name the root, not f.data_root: uncorrelated, each runs once (a one-time filter) instead of
-- once per manifest row (0.6 s of the server's time at 100k rows).
SELECT {columns}
FROM ingest_files f
WHERE f.data_root = %(root)s
  AND (EXISTS (SELECT 1 FROM paintings p WHERE p.data_root = %(root)s)
       OR EXISTS (SELECT 1 FROM rejects r WHERE r.data_root = %(root)s));

-- name: create_staging_files
CREATE TEMP TABLE staging_files (LIKE ingest_files INCLUDING DEFAULTS) ON COMMIT DROP;

-- name: copy_staging_files
COPY staging_files ({columns}) FROM STDIN (FORMAT BINARY);

-- name: update_files
-- The manifest mirrors this ingest's files: changed entries rewritten, new ones inserted, entries
-- of files no CSV row leads to any more removed.
UPDATE ingest_files AS f SET ({updated}) = ({staged_updated}), probed_at = now()
FROM staging_files AS s
WHERE f.data_root = s.data_root AND f.rel_path = s.rel_path
  AND ({current}) IS DISTINCT FROM ({staged_updated});

-- name: insert_new_files
INSERT INTO ingest_files ({columns})
SELECT {staged} FROM staging_files AS s
WHERE NOT EXISTS (SELECT 1 FROM ingest_files AS f WHERE f.data_root = s.data_root AND f.rel_path = s.rel_path);

-- name: delete_old_files
DELETE FROM ingest_files AS f
USING (SELECT rel_path FROM ingest_files WHERE data_root = %(root)s
       EXCEPT
       SELECT rel_path FROM staging_files) AS g
WHERE f.data_root = %(root)s AND f.rel_path = g.rel_path;

-- name: delete_files
DELETE FROM ingest_files WHERE data_root = %(root)s AND rel_path = ANY(%(paths)s);

-- name: mark_gone_names
-- An incremental ingest names the rows that are no longer good (their CSV line or file went away,
-- or they became rejects).
UPDATE paintings SET gone_at = now()
WHERE data_root = %(root)s AND gone_at IS NULL AND filename = ANY(%(names)s);

-- name: state_stamp
-- When the folder was last ingested: an incremental load checks, under the ingest lock, that no
-- other ingest committed since it read the manifest.
SELECT ingested_at FROM ingest_state WHERE data_root = %(root)s;
