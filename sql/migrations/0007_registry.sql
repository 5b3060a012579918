-- Migration 0007: the model registry's audit trail.
--
-- Every change of the champion pointer — a promotion by the gate, a champion set by hand
-- (`painting-ml champion --set`), a rollback (`painting-ml rollback`) — is one row here, written
-- in the same transaction as the pointer under the promotion lock, with who made it and why.
-- Rollback walks this table: it returns to the previous_run_id of the change that made the
-- current champion. (The view champion_history, in views.sql, lists the gate's decisions; this
-- table lists the pointer's moves.)
CREATE TABLE IF NOT EXISTS champion_changes (
    id              serial PRIMARY KEY,
    run_id          integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,   -- the new champion
    previous_run_id integer REFERENCES runs (id) ON DELETE SET NULL,           -- NULL: there was none
    action          text NOT NULL CHECK (action IN ('promote', 'set', 'rollback')),
    who             text NOT NULL,
    why             text NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS champion_changes_run_idx ON champion_changes (run_id, id);

-- A database from before this migration: its past promotions become the first rows, in order,
-- so that a rollback works right away.
INSERT INTO champion_changes (run_id, previous_run_id, action, who, why, changed_at)
SELECT p.run_id,
       (SELECT r.id FROM runs r WHERE r.id = p.champion_run_id),
       'promote', 'promotion gate',
       coalesce((SELECT string_agg(reason, '; ') FROM jsonb_array_elements_text(p.reasons) reason), ''),
       p.decided_at
FROM promotions p
WHERE p.promoted AND p.run_id <> coalesce(p.champion_run_id, -1)
ORDER BY p.id;

-- A champion pointer written without the gate (by hand, in SQL) gets a row of its own.
INSERT INTO champion_changes (run_id, previous_run_id, action, who, why, changed_at)
SELECT c.run_id,
       (SELECT h.run_id FROM champion_changes h ORDER BY h.id DESC LIMIT 1),
       'set', 'migration 0007', 'champion found without a recorded promotion', c.promoted_at
FROM champion c
WHERE c.run_id IS DISTINCT FROM (SELECT h.run_id FROM champion_changes h ORDER BY h.id DESC LIMIT 1);
