-- Migration 0009: a run's lifecycle states and its heartbeat.
--
-- A training beats (heartbeat_at = now()) about every minute and at each epoch while its process
-- lives. A stop signal ends it 'interrupted' (the signal named in error); a process that vanished
-- without a word (SIGKILL, out of memory, host lost) is found by the sweep: a 'running' row whose
-- heartbeat is older than PAINTING_LOST_AFTER_MINUTES and whose run key no live session holds
-- becomes 'lost'. Every state but 'evaluated' and 'trained' resumes with the same run key.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz;
UPDATE runs SET heartbeat_at = started_at WHERE heartbeat_at IS NULL AND status = 'running';

ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'trained', 'evaluated', 'failed', 'interrupted', 'lost'));
CREATE INDEX IF NOT EXISTS runs_running_idx ON runs (heartbeat_at) WHERE status = 'running';
