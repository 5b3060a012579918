"""How tasks fail: errors no retry can fix fail at once; a train try that died marks its run failed."""

from types import SimpleNamespace

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowTaskTimeout

from painting_ml.core.config import CPU_DEMO, RunConfig
from painting_ml.core.errors import ConfigError, DataQualityError, DatabaseError
from painting_ml.orchestration.failures import fail_without_retry, mark_train_failed, train_run_key


@pytest.mark.parametrize("error", [ConfigError("weights file /w.h5 not found"), DataQualityError("gate failed")])
def test_errors_no_retry_can_fix_fail_at_once(error):
    with pytest.raises(AirflowFailException, match=str(error)) as caught:
        with fail_without_retry():
            raise error
    assert caught.value.__cause__ is error


def test_other_errors_keep_their_retries():
    with pytest.raises(DatabaseError):
        with fail_without_retry():
            raise DatabaseError("lost the connection")


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
