-- Migration 0013: what a run and a dataset version are for.
--
-- A label audit's fold trainings are ordinary runs on dataset versions of their own (see
-- painting_ml.learn.audit). They are evidence about labels, not candidate models: whatever picks
-- "the latest run" or "the latest version" (named queries, the UI) skips them by purpose. Both
-- columns are derived from what the rows already say, so no writer has to remember to set them:
-- a fold run's key starts with "audit:", an audit's version has an "audit" entry in its config.

ALTER TABLE runs ADD COLUMN IF NOT EXISTS purpose text
    GENERATED ALWAYS AS (CASE WHEN starts_with(run_key, 'audit:') THEN 'audit' ELSE 'retrain' END) STORED;

ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS purpose text
    GENERATED ALWAYS AS (CASE WHEN config ? 'audit' THEN 'audit' ELSE 'retrain' END) STORED;
