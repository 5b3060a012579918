-- Migration 0010: painting identity and duplicate groups.
--
-- Every usable painting carries the sha256 of its file's bytes and a 64-bit perceptual hash
-- (imagehash pHash, the bits stored as a signed bigint; Hamming distance = bit_count of the XOR).
-- The ingest manifest keeps both, so an unchanged file is never hashed again. Rows ingested before
-- have NULL hashes: the probe recipe now names the hashes, so the next ingest probes every file
-- again, and the stored folder fingerprints are cleared so that the next ingest runs at all.
ALTER TABLE paintings ADD COLUMN IF NOT EXISTS sha256 text;
ALTER TABLE paintings ADD COLUMN IF NOT EXISTS phash bigint;
ALTER TABLE ingest_files ADD COLUMN IF NOT EXISTS sha256 text;
ALTER TABLE ingest_files ADD COLUMN IF NOT EXISTS phash bigint;
UPDATE ingest_state SET fingerprint = '';

-- Pairs of one data root's paintings that are copies of one picture: 'exact' (same bytes) or
-- 'near' (perceptual distance at or under the threshold). a < b; no foreign key, so a painting
-- that left the folder keeps its pairs (and its group) as history.
CREATE TABLE IF NOT EXISTS duplicate_pairs (
    data_root text NOT NULL,
    a         text NOT NULL,
    b         text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('exact', 'near')),
    distance  smallint NOT NULL,
    found_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (data_root, a, b),
    CHECK (a < b)
);
CREATE INDEX IF NOT EXISTS duplicate_pairs_b_idx ON duplicate_pairs (data_root, b);

-- The connected components of duplicate_pairs: one row per painting in a group of two or more,
-- keyed by the group's smallest file name.
CREATE TABLE IF NOT EXISTS painting_groups (
    data_root text NOT NULL,
    filename  text NOT NULL,
    group_key text NOT NULL,
    PRIMARY KEY (data_root, filename)
);
CREATE INDEX IF NOT EXISTS painting_groups_key_idx ON painting_groups (data_root, group_key);
