"""How tasks fail: errors no retry can fix end the task at once in one line; a train try that died
marks its run failed."""

from types import SimpleNamespace

import psycopg
import pytest
from airflow.sdk import RetryAction
from airflow.sdk.exceptions import AirflowTaskTimeout

from painting_ml.core.config import CPU_DEMO, RunConfig
from painting_ml.core.errors import ConfigError, DatabaseError, DataQualityError, SelectionError
from painting_ml.orchestration.failures import (
    NO_RETRY,
    TaskFailed,
    fail_without_retry,
    mark_train_failed,
    train_run_key,
)
from painting_ml.orchestration.notifications import error_line

pytestmark = pytest.mark.db


@pytest.mark.parametrize("error", [ConfigError("weights file /w.h5 not found"), DataQualityError("gate failed"),
                                   SelectionError("only 3 artists have 4 usable paintings")])
def test_errors_no_retry_can_fix_end_the_task_in_one_line(error):
    with pytest.raises(TaskFailed) as caught, fail_without_retry():
        raise error
    # Airflow's task runner logs a SystemExit as `Task exited exit_code=<code>`, without a traceback.
    assert isinstance(caught.value, SystemExit) and caught.value.code == f"{type(error).__name__}: {error}"
    assert caught.value.__cause__ is error and error_line(caught.value) == caught.value.code
    assert NO_RETRY.evaluate(caught.value, try_number=1, max_tries=3).action == RetryAction.FAIL


def test_other_errors_keep_their_retries():
    with pytest.raises(DatabaseError) as caught, fail_without_retry():
        raise DatabaseError("lost the connection")
    assert NO_RETRY.evaluate(caught.value, try_number=1, max_tries=3).action == RetryAction.DEFAULT


def test_the_train_failure_callback_marks_its_mapped_run_failed(clean_db):
    cfg = RunConfig.from_params({**CPU_DEMO, "data_dir": "/d", "optimizers": ["adam", "sgd"]})
    keys = {opt: train_run_key("painting_retrain", "manual__1", cfg.replace(optimizer=opt).fingerprint())
            for opt in ("adam", "sgd")}
    with psycopg.connect(clean_db) as conn:
        version = conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                               "VALUES ('h', '{}', '[]', '{}') RETURNING id").fetchone()[0]
        for key in keys.values():
            conn.execute("INSERT INTO runs (run_key, dataset_version_id, config, run_dir) VALUES (%s, %s, '{}', '')",
                         (key, version))
    ti = SimpleNamespace(dag_id="painting_retrain", task_id="train", map_index=1)  # the sgd member of the sweep
    mark_train_failed({"ti": ti, "params": cfg.to_dict(), "run_id": "manual__1",
                       "exception": AirflowTaskTimeout("Timeout, PID: 4242")})
    with psycopg.connect(clean_db) as conn:
        rows = dict(conn.execute("SELECT run_key, (status, error) FROM runs").fetchall())
    assert rows[keys["sgd"]] == ("failed", "AirflowTaskTimeout: Timeout, PID: 4242")
    assert rows[keys["adam"]] == ("running", None)
