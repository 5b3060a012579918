-- Statements of the migration runner (painting_ml.core.db.migrate).

-- name: lock
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: create_table
-- Version 0 is the repeatable views.sql: its row holds the sha256 last applied.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version, name, sha256 FROM schema_migrations ORDER BY version;

-- name: record
INSERT INTO schema_migrations (version, name, sha256) VALUES (%(version)s, %(name)s, %(sha)s);

-- name: record_views
INSERT INTO schema_migrations (version, name, sha256) VALUES (0, 'views', %(sha)s)
ON CONFLICT (version) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now();

-- name: version
SELECT max(version) AS version FROM schema_migrations WHERE version > 0;
