-- Migration 0001: the schema as of the first release with versioned migrations.
-- Written with IF NOT EXISTS so that a database created before migrations existed (by the old
-- schema.sql) adopts it in place: applying it there changes nothing and records version 1.

-- One row per usable painting (image found, decoded, inside the data folder).
CREATE TABLE IF NOT EXISTS paintings (
    filename      text PRIMARY KEY,          -- Kaggle new_filename, e.g. 102257.jpg
    artist        text NOT NULL,
    title         text,
    style         text,
    genre         text,
    date          text,
    source        text,
    artist_group  text,                      -- train_only / test_only / train_and_test
    in_train      boolean,
    meta_width    integer,                   -- pixelsx/pixelsy as the CSV claims them
    meta_height   integer,
    size_bytes    bigint,
    data_root     text NOT NULL,             -- absolute data folder the row was ingested from
    rel_path      text NOT NULL,             -- path relative to data_root
    width         integer NOT NULL,          -- as decoded
    height        integer NOT NULL,
    mode          text NOT NULL,             -- PIL mode: RGB, L, CMYK, P, RGBA ...
    source_csv    text NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now()
);
-- Added after the first release; ALTER keeps existing databases in step.
ALTER TABLE paintings ADD COLUMN IF NOT EXISTS reduced_path text;  -- draft-mode copy of a huge JPEG
CREATE INDEX IF NOT EXISTS paintings_artist_idx ON paintings (artist);

-- Every CSV row that could not be used, with why. Replaced per source CSV on each ingest.
CREATE TABLE IF NOT EXISTS rejects (
    source_csv  text NOT NULL,
    line_no     integer NOT NULL,            -- 1-based data row number in the CSV
    filename    text,
    reason      text NOT NULL,               -- missing_file, undecodable, unsafe_path, ...
    detail      text,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_csv, line_no)
);

-- An immutable selection + split. Same config on the same data => same content_hash => same row.
CREATE TABLE IF NOT EXISTS dataset_versions (
    id            serial PRIMARY KEY,
    content_hash  text NOT NULL UNIQUE,
    config        jsonb NOT NULL,
    artists       jsonb NOT NULL,            -- ordered label list; index = class id
    artist_counts jsonb NOT NULL,            -- {artist: {"train": n, "val": n, "test": n}}
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dataset_items (
    version_id  integer NOT NULL REFERENCES dataset_versions (id) ON DELETE CASCADE,
    filename    text NOT NULL REFERENCES paintings (filename),
    artist      text NOT NULL,
    label       integer NOT NULL,
    split       text NOT NULL CHECK (split IN ('train', 'val', 'test', 'unseen')),
                                         -- unseen: artists outside the selection (open-set eval), label -1
    PRIMARY KEY (version_id, filename)
);

-- Offline augmentation of the train split, materialised once per dataset version.
CREATE TABLE IF NOT EXISTS augmented_images (
    version_id      integer NOT NULL REFERENCES dataset_versions (id) ON DELETE CASCADE,
    source_filename text NOT NULL,
    transform       text NOT NULL,
    path            text NOT NULL,           -- absolute path of the written image
    PRIMARY KEY (version_id, source_filename, transform)
);

-- One training run. run_key is stable across retries (Airflow dag run + config) so a retried
-- training finds its row and its checkpoint folder again.
CREATE TABLE IF NOT EXISTS runs (
    id                 serial PRIMARY KEY,
    run_key            text NOT NULL UNIQUE,
    dataset_version_id integer NOT NULL REFERENCES dataset_versions (id),
    config             jsonb NOT NULL,
    status             text NOT NULL DEFAULT 'running',
    run_dir            text NOT NULL,
    model_path         text,
    test_accuracy      double precision,
    macro_f1           double precision,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);

CREATE TABLE IF NOT EXISTS epochs (
    run_id        integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch         integer NOT NULL,          -- 1-based
    loss          double precision,
    accuracy      double precision,
    val_loss      double precision,
    val_accuracy  double precision,
    learning_rate double precision,
    seconds       double precision,
    PRIMARY KEY (run_id, epoch)
);

-- Per-class test metrics of a run, for every target it predicts (artist, style, genre).
CREATE TABLE IF NOT EXISTS class_metrics (
    run_id     integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target     text NOT NULL,               -- artist / style / genre
    label      text NOT NULL,               -- the artist (style, genre) name
    precision  double precision NOT NULL,
    recall     double precision NOT NULL,
    f1         double precision NOT NULL,
    support    integer NOT NULL,
    accuracy   double precision NOT NULL,   -- share of this class's test paintings named correctly
    PRIMARY KEY (run_id, target, label)
);

-- artist_metrics was a table in the first release; it is now the artist rows of class_metrics.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'artist_metrics' AND relkind = 'r'
               AND relnamespace = 'public'::regnamespace) THEN
        INSERT INTO class_metrics (run_id, target, label, precision, recall, f1, support, accuracy)
        SELECT run_id, 'artist', artist, precision, recall, f1, support, accuracy FROM artist_metrics
        ON CONFLICT DO NOTHING;
        DROP TABLE artist_metrics;
    END IF;
END $$;
CREATE OR REPLACE VIEW artist_metrics AS
SELECT run_id, label AS artist, precision, recall, f1, support, accuracy
FROM class_metrics WHERE target = 'artist';

-- The confusion matrix of each target: how many test paintings of true_label were predicted as predicted_label.
CREATE TABLE IF NOT EXISTS confusion (
    run_id          integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target          text NOT NULL,
    true_label      text NOT NULL,
    predicted_label text NOT NULL,
    count           integer NOT NULL,
    PRIMARY KEY (run_id, target, true_label, predicted_label)
);

-- Same-artist verification: pair AUC on held-out pairs, seen (test split) and unseen artists.
CREATE TABLE IF NOT EXISTS verification (
    run_id     integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    subset     text NOT NULL,               -- seen / unseen / all
    score      text NOT NULL,               -- prob_product (P same class) / embedding_cosine
    auc        double precision,            -- NULL when the subset has no negative or positive pair
    n_pairs    integer NOT NULL,
    n_positive integer NOT NULL,
    PRIMARY KEY (run_id, subset, score)
);

CREATE TABLE IF NOT EXISTS predictions (
    run_id          integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    filename        text NOT NULL,
    true_artist     text NOT NULL,
    predicted_artist text NOT NULL,
    confidence      double precision NOT NULL,
    PRIMARY KEY (run_id, filename)
);

-- Every file a run writes. Re-rendering replaces the row (same path), never duplicates it.
CREATE TABLE IF NOT EXISTS artifacts (
    run_id     integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    path       text NOT NULL,
    bytes      bigint NOT NULL,
    sha256     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, path)
);

-- Added with the training engine (multi-task, open-set, verification, resume).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS classes jsonb;             -- {target: [class names]}
ALTER TABLE runs ADD COLUMN IF NOT EXISTS top3_accuracy double precision;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS open_set_auroc double precision;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS summary jsonb;             -- every evaluation figure
ALTER TABLE epochs ADD COLUMN IF NOT EXISTS phase integer NOT NULL DEFAULT 1;
ALTER TABLE epochs ADD COLUMN IF NOT EXISTS metrics jsonb;           -- all Keras logs of the epoch
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS top3 jsonb;         -- [[artist, p], ...]
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS other_targets jsonb; -- {style: {true, predicted}, ...}

-- Promotion gate: every decision with its reasons; the champion pointer is one row, updated in
-- the same transaction as the decision that moves it.
CREATE TABLE IF NOT EXISTS promotions (
    id                 serial PRIMARY KEY,
    run_id             integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    dataset_version_id integer NOT NULL,
    champion_run_id    integer,                 -- the champion it was compared with (NULL: none yet)
    candidate_f1       double precision,
    champion_f1        double precision,
    promoted           boolean NOT NULL,
    reasons            jsonb NOT NULL,          -- ["macro-F1 0.91 >= 0.88", "recall of X fell 12 points > 5", ...]
    decided_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS promotions_run_idx ON promotions (run_id);  -- one decision per run
CREATE TABLE IF NOT EXISTS champion (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    run_id      integer NOT NULL REFERENCES runs (id),
    promoted_at timestamptz NOT NULL DEFAULT now()
);

-- What painting_ingest saw last time in each data folder (file names, sizes, mtimes hashed).
CREATE TABLE IF NOT EXISTS ingest_state (
    data_root   text PRIMARY KEY,
    fingerprint text NOT NULL,
    files       integer NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
);
