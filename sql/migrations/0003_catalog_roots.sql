-- Migration 0003: the catalog is keyed by (data root, file), and rows that left their folder are
-- marked gone instead of lingering as usable paintings.
--
-- * paintings: primary key (data_root, filename) instead of filename, so two data folders in one
--   database never repoint or overwrite each other's rows; gone_at is set when a painting's CSV
--   line or file disappeared (selection skips such rows; they stay only while a dataset version
--   references them, as history).
-- * dataset_items and dataset_versions record the data root; items reference paintings by
--   (data_root, filename).
-- * rejects are replaced per data root (primary key (data_root, source_csv, line_no)).
-- Existing rows are carried over: every painting already names its data_root.

ALTER TABLE paintings ADD COLUMN IF NOT EXISTS gone_at timestamptz;

ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS data_root text;
UPDATE dataset_items i SET data_root = p.data_root
FROM paintings p WHERE p.filename = i.filename AND i.data_root IS NULL;
ALTER TABLE dataset_items DROP CONSTRAINT IF EXISTS dataset_items_filename_fkey;
ALTER TABLE paintings DROP CONSTRAINT IF EXISTS paintings_pkey;
ALTER TABLE paintings ADD CONSTRAINT paintings_pkey PRIMARY KEY (data_root, filename);
ALTER TABLE dataset_items ALTER COLUMN data_root SET NOT NULL;
ALTER TABLE dataset_items ADD CONSTRAINT dataset_items_painting_fkey
    FOREIGN KEY (data_root, filename) REFERENCES paintings (data_root, filename);
-- Which versions use a painting: ingest asks before it removes a gone row.
CREATE INDEX IF NOT EXISTS dataset_items_painting_idx ON dataset_items (data_root, filename);

ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS data_root text;
UPDATE dataset_versions v SET data_root = (SELECT min(i.data_root) FROM dataset_items i WHERE i.version_id = v.id)
WHERE v.data_root IS NULL;

-- Old rejects did not record their folder: give them the folder when the catalog holds only one.
ALTER TABLE rejects ADD COLUMN IF NOT EXISTS data_root text;
UPDATE rejects SET data_root = COALESCE(
    (SELECT min(data_root) FROM paintings HAVING count(DISTINCT data_root) = 1), '')
WHERE data_root IS NULL;
ALTER TABLE rejects ALTER COLUMN data_root SET NOT NULL;
ALTER TABLE rejects DROP CONSTRAINT IF EXISTS rejects_pkey;
ALTER TABLE rejects ADD CONSTRAINT rejects_pkey PRIMARY KEY (data_root, source_csv, line_no);

CREATE INDEX IF NOT EXISTS paintings_live_artist_idx ON paintings (data_root, artist) WHERE gone_at IS NULL;

-- The next painting_ingest re-reads every folder once, so gone rows and per-root rejects are
-- brought in line with what is on disk even when no file changed.
DELETE FROM ingest_state;
