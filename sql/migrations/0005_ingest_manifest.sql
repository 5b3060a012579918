-- Migration 0005: the per-file ingest manifest, so an ingest decodes only new or changed files.
--
-- One row per image file a CSV row of the data root led to: the file's relative path, size and
-- modification time when it was probed, the hash of the CSV row that referenced it, and what
-- probing it found (size and mode, or the reject reason). An ingest that finds the same path with
-- the same size and mtime, probed by the same recipe, reuses the outcome instead of decoding the
-- file again. Rows of files that left the folder are removed by the next ingest.

CREATE TABLE IF NOT EXISTS ingest_files (
    data_root    text NOT NULL,
    rel_path     text NOT NULL,
    size_bytes   bigint NOT NULL,
    mtime_ns     bigint NOT NULL,
    row_hash     text NOT NULL,     -- sha256 of the CSV row's fields, to count changed rows
    recipe       text NOT NULL,     -- what probing depended on (copy recipe, pixel limit)
    width        integer,
    height       integer,
    mode         text,
    reason       text,              -- non-NULL: the file is rejected for this reason
    detail       text,
    reduced_path text,
    probed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (data_root, rel_path)
);
