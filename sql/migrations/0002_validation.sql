-- Migration 0002: the data-quality gate's figures per dataset version, and why a run failed.

-- One row per validate task: what the gate measured on a dataset version, against the previous
-- accepted version of the same selection in the same data folder, and what it concluded.
CREATE TABLE IF NOT EXISTS dataset_validations (
    id                  serial PRIMARY KEY,
    version_id          integer NOT NULL REFERENCES dataset_versions (id) ON DELETE CASCADE,
    data_root           text NOT NULL,            -- absolute data folder of the run
    selection_hash      text NOT NULL,            -- RunConfig.selection_hash(): same selection, same hash
    previous_version_id integer,                  -- the version it was compared with (NULL: none yet)
    status              text NOT NULL CHECK (status IN ('ok', 'warning', 'failed')),
    figures             jsonb NOT NULL,           -- reject rate, per-artist split counts, image sides, drift
    findings            jsonb NOT NULL,           -- [{"level": "warning"|"failure", "check": ..., "message": ...}]
    thresholds          jsonb NOT NULL,           -- the config's gate fields the figures were held against
    validated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dataset_validations_selection_idx
    ON dataset_validations (selection_hash, data_root, validated_at DESC);
CREATE INDEX IF NOT EXISTS dataset_validations_version_idx ON dataset_validations (version_id, validated_at DESC);

-- A run whose training raised (or whose task timed out) is marked 'failed' with the error's last
-- line; a retry of the same run_key sets it back to 'running' and resumes from its checkpoint.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS error text;
