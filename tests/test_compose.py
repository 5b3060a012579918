"""docker-compose.yml: parsed and checked (no Docker engine runs here)."""

import re
from pathlib import Path

import yaml

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
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert f"${{{var}:?" in text, var  # required: compose refuses to start without it
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "password" not in re.sub(r"\$\{[^}]*\}", "", body).lower().replace("postgres_password", "")
    example = (REPO / ".env.example").read_text()
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert re.search(rf"^{var}=CHANGE_ME", example, re.M), var
