"""docker-compose.yml and docker/Dockerfile: parsed and checked; `docker compose config` where a
Docker engine with the compose plugin is available (skipped with the reason otherwise)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_follow_airflows_layout():
    assert set(SERVICES) == {"postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                             "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-worker-gpu"}
    assert set(COMPOSE["volumes"]) >= {"postgres-db", "artifacts"}


def test_commands_and_queues():
    assert SERVICES["airflow-apiserver"]["command"].startswith("airflow api-server")
    assert SERVICES["airflow-scheduler"]["command"] == "airflow scheduler"
    assert SERVICES["airflow-dag-processor"]["command"] == "airflow dag-processor"
    assert SERVICES["airflow-triggerer"]["command"] == "airflow triggerer"
    assert "--queues default" in SERVICES["airflow-worker"]["command"]
    gpu = SERVICES["airflow-worker-gpu"]
    assert "--queues gpu" in gpu["command"] and "celery worker" in gpu["command"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["build"]["target"] == "gpu" and SERVICES["airflow-worker"]["build"]["target"] == "airflow"
    init = "\n".join(SERVICES["airflow-init"]["command"])
    assert "airflow db migrate" in init and "airflow pools set gpu" in init and "db.migrate" in init


def test_every_airflow_service_shares_the_celery_settings():
    for name, svc in SERVICES.items():
        if name.startswith("airflow-"):
            env = svc["environment"]
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
            assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis")
            assert "postgres" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
            assert any(v.endswith(":/data") for v in svc["volumes"]) and any("/weights" in v for v in svc["volumes"])
            assert any(v.startswith("artifacts:") for v in svc["volumes"])


def test_referenced_files_exist():
    for svc in SERVICES.values():
        build = svc.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()
            text = (REPO / build["context"] / build["dockerfile"]).read_text()
            assert re.search(rf"^FROM .* AS {build['target']}$", text, re.M)
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (REPO / host).exists(), volume
    for line in (REPO / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            for src in line.split()[1:-1]:
                if not src.startswith("--"):
                    assert (REPO / src).exists(), line


def test_secrets_come_from_the_env_file():
    text = (REPO / "docker-compose.yml").read_text()
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
                "AIRFLOW_ADMIN_PASSWORD"):
        assert f"${{{var}:?" in text, var  # required: compose refuses to start without it
    # Every setting that holds a secret is a ${...} reference, never a literal.
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|API_KEY|FERNET", key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:[-?][^}]*\}", str(value)), (name, key, value)
    example = (REPO / ".env.example").read_text()
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
                "AIRFLOW_ADMIN_PASSWORD"):
        assert re.search(rf"^{var}=CHANGE_ME", example, re.M), var


AIRFLOW_SERVICES = [n for n in SERVICES if n.startswith("airflow-")]
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def test_the_image_creates_every_mount_point_owned_by_the_airflow_user():
    """A named volume starts as a copy of its mount point: if the image lacks it, Docker creates it
    owned by root and the airflow user (50000) cannot write artifacts there."""
    mounts = [re.fullmatch(r"(.+?):(/[^:]*)(:ro|:rw)?", v).groups() for n in AIRFLOW_SERVICES
              for v in SERVICES[n]["volumes"]]
    targets = {target for source, target, mode in mounts if not source.startswith("./") and mode != ":ro"}
    assert targets >= {"/var/painting", "/data", "/opt/airflow/auth"}
    mkdir = re.search(r"RUN mkdir -p ([^\n&]+)", DOCKERFILE)
    chown = re.search(r"chown -R airflow:0 ([^\n&]+)", DOCKERFILE)
    assert mkdir and chown, "the Dockerfile creates and chowns the mount points"
    for target in targets - {"/opt/airflow/logs"}:  # the official image already owns its logs folder
        assert any(p == target or p.startswith(target + "/") for p in mkdir.group(1).split()), target
        assert target in chown.group(1).split(), target
    assert all(SERVICES[n]["user"] == "50000:0" for n in AIRFLOW_SERVICES)
    assert re.search(r"^USER airflow$", DOCKERFILE.split("USER root")[-1], re.M), "back to the airflow user"


def test_every_long_running_service_has_the_official_healthcheck():
    def check(name):
        test = SERVICES[name]["healthcheck"]["test"]
        return " ".join(test) if isinstance(test, list) else test

    assert "/api/v2/version" in check("airflow-apiserver") or "/api/v2/monitor/health" in check("airflow-apiserver")
    assert "http://localhost:8974/health" in check("airflow-scheduler")
    assert SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert 'airflow jobs check --job-type DagProcessorJob --hostname "$${HOSTNAME}"' in check("airflow-dag-processor")
    assert 'airflow jobs check --job-type TriggererJob --hostname "$${HOSTNAME}"' in check("airflow-triggerer")
    for worker in ("airflow-worker", "airflow-worker-gpu"):
        prefix = re.search(r'--celery-hostname "(\w+)@%h"', SERVICES[worker]["command"]).group(1)
        ping = check(worker)
        assert "celery --app airflow.providers.celery.executors.celery_executor.app inspect ping" in ping
        assert f'-d "{prefix}@$${{HOSTNAME}}"' in ping, (worker, ping)
    for name in ("postgres", "redis", *[n for n in AIRFLOW_SERVICES if n != "airflow-init"]):
        hc = SERVICES[name]["healthcheck"]
        assert hc["interval"] and hc["retries"] >= 5, name


def test_workers_shut_down_warm_and_wait_for_the_api_server():
    for worker in ("airflow-worker", "airflow-worker-gpu"):
        svc = SERVICES[worker]
        # Without it dumb-init signals the whole process group and the training task dies mid-epoch.
        assert svc["environment"]["DUMB_INIT_SETSID"] == "0"
        # Tasks call the execution API as soon as they start.
        assert svc["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"  # the common env is kept


def test_the_login_is_set_from_the_env_file_and_kept_on_a_volume():
    env = SERVICES["airflow-apiserver"]["environment"]
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert any(v == f"airflow-auth:{os.path.dirname(passwords)}" for v in SERVICES["airflow-apiserver"]["volumes"])
    init = "\n".join(SERVICES["airflow-init"]["command"])
    assert 'known["admin"] = os.environ["AIRFLOW_ADMIN_PASSWORD"]' in init
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in init
    readme = (REPO / "README.md").read_text()
    assert "AIRFLOW_ADMIN_PASSWORD" in readme, "README says how to log in to the compose stack"


def test_one_gpu_per_gpu_worker_by_default():
    gpu = SERVICES["airflow-worker-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert "count" not in device and device["device_ids"] == ["${GPU_WORKER_DEVICE:-0}"]
    assert gpu["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert "--concurrency 1" in gpu["command"]  # one training per GPU: the gpu pool's slot = one worker
    init = "\n".join(SERVICES["airflow-init"]["command"])
    assert 'airflow pools set gpu "${GPU_COUNT:-1}"' in init


OPTIONAL = ("PAINTING_RUN_DEFAULTS", "PAINTING_WEIGHTS", "PAINTING_INGEST_SCHEDULE", "PAINTING_RETRAIN_CRON",
            "PAINTING_ALERT_EMAIL", "AIRFLOW_CONN_SMTP_DEFAULT", "AIRFLOW__SMTP__SMTP_HOST", "AIRFLOW__SMTP__SMTP_PORT",
            "AIRFLOW__SMTP__SMTP_USER", "AIRFLOW__SMTP__SMTP_PASSWORD", "AIRFLOW__SMTP__SMTP_MAIL_FROM",
            "PAINTING_ARTIFACTS_URL", "PAINTING_ARTIFACTS_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION", "PAINTING_KEEP_RUNS")


@pytest.mark.parametrize("var", OPTIONAL)
def test_optional_deployment_settings_pass_through_with_a_default(var):
    example = (REPO / ".env.example").read_text()
    assert re.search(rf"^{var}=", example, re.M), f"{var} is listed in .env.example"
    for name in AIRFLOW_SERVICES:
        value = SERVICES[name]["environment"][var]
        assert re.fullmatch(rf"\$\{{{var}:-[^}}]*\}}", value), (name, var, value)  # optional: never required


def _compose_command() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    return None


@pytest.mark.e2e
def test_docker_compose_config_accepts_the_file(tmp_path):
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("docker compose is not available here (neither the compose plugin nor docker-compose); "
                    "the YAML checks above still ran")
    env = tmp_path / "env"
    env.write_text((REPO / ".env.example").read_text().replace("CHANGE_ME", "test"))
    out = subprocess.run([*cmd, "--env-file", str(env), "-f", str(REPO / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)["services"]
    assert resolved["airflow-worker"]["environment"]["DUMB_INIT_SETSID"] == "0"
    assert resolved["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]
