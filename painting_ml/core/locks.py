"""Every PostgreSQL advisory lock the project takes, in one place, so two never share an id.

All are transaction-scoped (``pg_advisory_xact_lock``): released on commit or rollback, never
leaked by a crashed worker.
"""

INGEST = 7060            # one ingest at a time: its update + insert pair is then race-free
MIGRATE = 7061           # concurrent migrations do not race
DATASET_VERSION = 7062   # one creator per dataset-version content hash at a time
PROMOTION = 7063         # one promotion decision (and champion pointer write) at a time
