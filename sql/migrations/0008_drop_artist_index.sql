-- Migration 0008: drop paintings_artist_idx.
--
-- Every query that looks paintings up by artist also names the data root and wants live rows, which
-- paintings_live_artist_idx (data_root, artist) WHERE gone_at IS NULL serves; the plain index on
-- artist was only upkeep: ~0.6-0.9 s of every 100k-row ingest (bench/ingest.py).
DROP INDEX IF EXISTS paintings_artist_idx;
