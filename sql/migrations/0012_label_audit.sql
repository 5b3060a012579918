-- Migration 0012: the label audit (out-of-fold label-issue detection) and the curators' reviews.
--
-- An audit trains k models on k group-aware folds of one dataset version's labelled paintings; each
-- fold is a dataset version of its own (the fold as its test split) trained by the ordinary engine.
-- Every painting's class probabilities come from the one fold model that did not see it
-- (audit_predictions); cleanlab ranks label issues from them (label_issues). Curators' verdicts
-- are label_reviews rows; an active 'relabel' is a label override that selection and dataset
-- versions apply on top of the CSV (the CSV stays the source of record).

CREATE TABLE IF NOT EXISTS audits (
    id                 serial PRIMARY KEY,
    audit_key          text NOT NULL UNIQUE,      -- stable across retries (Airflow dag run, or cli:<uuid>)
    dataset_version_id integer NOT NULL REFERENCES dataset_versions (id),
    data_root          text NOT NULL,
    folds              integer NOT NULL CHECK (folds >= 2),
    recipe             text NOT NULL,             -- 'head' (frozen backbone + head) or 'full' (the recipe in force)
    config             jsonb NOT NULL,            -- the run config the folds trained with
    status             text NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'predicted', 'ranked', 'failed')),
    summary            jsonb,                     -- counts, timings, cleanlab settings
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);

-- Fold i of an audit: its dataset version (fold i = test split) and the training run on it.
CREATE TABLE IF NOT EXISTS audit_folds (
    audit_id           integer NOT NULL REFERENCES audits (id) ON DELETE CASCADE,
    fold               integer NOT NULL CHECK (fold >= 0),
    dataset_version_id integer NOT NULL REFERENCES dataset_versions (id),
    run_id             integer REFERENCES runs (id) ON DELETE SET NULL,
    predicted_at       timestamptz,
    PRIMARY KEY (audit_id, fold)
);
CREATE INDEX IF NOT EXISTS audit_folds_run_idx ON audit_folds (run_id);

-- Out-of-fold evidence: one row per audited painting, from the model of the fold that held it out.
-- probabilities are in the order of audits' dataset version artists (its class ids).
CREATE TABLE IF NOT EXISTS audit_predictions (
    audit_id      integer NOT NULL REFERENCES audits (id) ON DELETE CASCADE,
    data_root     text NOT NULL,
    filename      text NOT NULL,
    fold          integer NOT NULL,
    artist        text NOT NULL,                  -- the label the audit judged (CSV + overrides at the time)
    probabilities double precision[] NOT NULL,
    embedding     double precision[] NOT NULL,    -- unit-length penultimate features (exemplars)
    sha256        text,                           -- the file the model saw
    PRIMARY KEY (audit_id, data_root, filename)
);

-- cleanlab's verdict per audited painting: the label-quality score (low = suspicious), the rank
-- among the flagged ones (1 = most likely wrong; NULL when not flagged) and the suggested artist.
CREATE TABLE IF NOT EXISTS label_issues (
    audit_id         integer NOT NULL REFERENCES audits (id) ON DELETE CASCADE,
    data_root        text NOT NULL,
    filename         text NOT NULL,
    catalog_artist   text NOT NULL,
    suggested_artist text NOT NULL,
    quality          double precision NOT NULL,
    is_issue         boolean NOT NULL,
    rank             integer,
    evidence         jsonb,                       -- artifact keys of the curator's evidence (exemplars, heatmaps)
    PRIMARY KEY (audit_id, data_root, filename)
);
CREATE INDEX IF NOT EXISTS label_issues_rank_idx ON label_issues (audit_id, rank) WHERE is_issue;

-- A curator's verdict. No foreign key to paintings: a review of a painting that left the folder is
-- kept (shown as orphaned). An undone review keeps its row (undone_at/undone_by set).
CREATE TABLE IF NOT EXISTS label_reviews (
    id             serial PRIMARY KEY,
    data_root      text NOT NULL,
    filename       text NOT NULL,
    decision       text NOT NULL CHECK (decision IN ('keep', 'relabel', 'unsure')),
    catalog_artist text NOT NULL,                -- the CSV's artist when the verdict was given
    new_artist     text,                          -- relabel only
    reviewer       text NOT NULL,
    note           text,
    audit_id       integer REFERENCES audits (id) ON DELETE SET NULL,
    sha256         text,                          -- the file judged; a changed file reopens the painting
    reviewed_at    timestamptz NOT NULL DEFAULT now(),
    undone_at      timestamptz,
    undone_by      text,
    CHECK ((decision = 'relabel') = (new_artist IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS label_reviews_painting_idx ON label_reviews (data_root, filename, reviewed_at DESC);

-- How many label overrides a dataset version applied (the next retrain's report says so).
ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS overrides_applied integer NOT NULL DEFAULT 0;
