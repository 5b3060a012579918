-- Migration 0006: the artifact store, lineage and the image cache.
--
-- 1. Paths become store keys. runs.run_dir, runs.model_path, augmented_images.path and
--    artifacts.path held absolute paths of the host that wrote them; they now hold keys relative
--    to the artifact store (PAINTING_ARTIFACTS_URL), e.g. runs/run_7_1a2b3c4d/model.keras, that
--    every host resolves the same way. Rows written before this migration under the default
--    layout ($PAINTING_HOME/artifacts/...) are rewritten to their key.
UPDATE runs SET run_dir = regexp_replace(run_dir, '^.*/artifacts/', '') WHERE run_dir ~ '^/.*/artifacts/';
UPDATE runs SET model_path = regexp_replace(model_path, '^.*/artifacts/', '') WHERE model_path ~ '^/.*/artifacts/';
UPDATE augmented_images SET path = regexp_replace(path, '^.*/artifacts/', '') WHERE path ~ '^/.*/artifacts/';
UPDATE artifacts SET path = regexp_replace(path, '^.*/artifacts/', '') WHERE path ~ '^/.*/artifacts/';
COMMENT ON COLUMN augmented_images.path IS 'artifact store key of the augmented image';
COMMENT ON COLUMN runs.run_dir IS 'artifact store key (folder) of the run''s files';
COMMENT ON COLUMN runs.model_path IS 'artifact store key of the kept model (no optimizer state)';

-- 2. Lineage: what trained the run (code, data, config are in runs.config; the model's sha256 is
--    in artifacts, kind 'model').
ALTER TABLE runs ADD COLUMN IF NOT EXISTS code_version text;        -- package version
ALTER TABLE runs ADD COLUMN IF NOT EXISTS code_commit text;         -- git commit, or image digest
ALTER TABLE runs ADD COLUMN IF NOT EXISTS data_fingerprint text;    -- ingest_state.fingerprint at training
ALTER TABLE runs ADD COLUMN IF NOT EXISTS wandb_id text;            -- unique across database resets
ALTER TABLE runs ADD COLUMN IF NOT EXISTS files_pruned_at timestamptz; -- gc removed the run's files

-- 3. The training-resolution image cache: one derived copy per (source bytes, working size),
--    shared by every dataset version and run. The source's sha256 is remembered with the file's
--    size and mtime, so an unchanged file is never hashed again.
CREATE TABLE IF NOT EXISTS image_cache (
    data_root  text NOT NULL,
    rel_path   text NOT NULL,
    size_bytes bigint NOT NULL,
    mtime_ns   bigint NOT NULL,
    sha256     text NOT NULL,
    long_side  integer NOT NULL,
    key        text NOT NULL,           -- artifact store key of the derived JPEG
    made_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (data_root, rel_path, long_side)
);
