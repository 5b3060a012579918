"""Every PostgreSQL advisory lock the project takes, in one place, so two never share an id.

The single-key ones are transaction-scoped (``pg_advisory_xact_lock``): released on commit or
rollback, never leaked by a crashed worker. ``RUN`` is the class id of the two-key, session-scoped
lock ``(RUN, hashtext(run_key))`` a training holds for its whole life on a connection of its own;
the server frees it when that connection ends, so a killed worker never leaks it either.
"""

INGEST = 7060            # one ingest at a time: its update + insert pair is then race-free
MIGRATE = 7061           # concurrent migrations do not race
DATASET_VERSION = 7062   # one creator per dataset-version content hash at a time
PROMOTION = 7063         # one promotion decision (and champion pointer write) at a time
RUN = 7064               # one live attempt per run key (two-key form: RUN, hashtext(run_key))
REVIEW = 7065            # one verdict at a time per painting (two-key form: REVIEW, hashtext(root/filename))
