"""Environment variables, read once, typed, with defaults.

Everything the process learns from its environment goes through :func:`get_settings`; the rest of
the library receives a :class:`Settings` (or values taken from it) instead of calling ``os.getenv``.
:class:`Settings` is a pydantic-settings model: each field declares its default once and documents
itself (``description``; ``default_doc`` in ``json_schema_extra`` where the default is derived from
other settings); :func:`env_name` gives the variable that sets it. An empty variable counts as unset
(compose passes ``${X:-}``), and a bad value raises one :class:`ConfigError` line naming the
variable, the value and what to write instead.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

import annotated_types
from pydantic import AfterValidator, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from painting_ml.core.errors import ConfigError

#: Repository root: ``sql/`` and ``dags/`` live beside the package (editable install).
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: The file name Keras gives ResNet50's ImageNet weights without the classifier top
#: (``keras.applications.ResNet50(include_top=False, weights="imagenet")`` downloads it to
#: ``~/.keras/models/``): what a deployment puts on its weights volume.
RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_NOTOP_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{RESNET50_NOTOP_FILE}"

ENV_PREFIX = "PAINTING_"

#: A path as written in a variable: ``~`` expanded.
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and ``taskset``
    narrow), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


# Derived defaults: pydantic passes the fields validated so far (declared above the field).
def _weights_dir(data: dict[str, Any]) -> Path:
    return Path(data["home"]) / "weights"


def _weights_file(data: dict[str, Any]) -> str:
    return str(Path(data["weights_dir"]) / RESNET50_NOTOP_FILE)


def _demo_data_dir(data: dict[str, Any]) -> Path:
    return Path(data["home"]) / "data" / "demo"


def _local_artifacts(data: dict[str, Any]) -> str:
    return (Path(data["home"]) / "artifacts").as_uri()


def _doc(default: str) -> dict[str, Any]:
    """``json_schema_extra`` of a field whose default is derived: how the docs show it."""
    return {"default_doc": default}


class Settings(BaseSettings):
    """Process-wide settings, one field per environment variable (see :func:`env_name`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid")

    home: Path = Field(
        Path("var"), validate_default=True, json_schema_extra=_doc("./var"),
        description="The data home: data folders, the artifact store, the embedded PostgreSQL and Airflow's home "
                    "live here. A relative path is taken from the working directory.")
    db_url: str | None = Field(
        None, description="libpq URL of the painting database; unset: start the embedded pgserver PostgreSQL "
                          "under the data home.")
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", validation_alias="WANDB_MODE",
        description="Weights & Biases mode: offline (runs kept under the data home), online (logged to wandb.ai "
                    "with WANDB_API_KEY) or disabled.")
    sql_dir: UserPath = Field(
        PROJECT_ROOT / "sql", json_schema_extra=_doc("<repository>/sql"),
        description="Folder holding migrations/, views.sql, the named statements and queries/.")
    default_data_dir: UserPath = Field(
        default_factory=_demo_data_dir, validation_alias="PAINTING_DATA_DIR",
        json_schema_extra=_doc("$PAINTING_HOME/data/demo"),
        description="The Kaggle-layout folder scheduled runs and painting_ingest read when no data_dir is given "
                    "(make demo generates its set in the default). A run's own folder is its data_dir option.")
    retrain_cron: str = Field(
        "0 3 * * 1", description="Cron expression (UTC) of scheduled retraining; painting_retrain also runs "
                                 "whenever painting_ingest publishes a changed catalog.")
    ingest_schedule: str = Field(
        "@hourly", description="How often painting_ingest looks at the data folder for changes (a cron "
                               "expression or preset).")
    ingest_quiet_seconds: float = Field(
        60.0, ge=0, json_schema_extra={"unit": "seconds"},
        description="painting_ingest scans the data folder twice this many seconds apart and ingests only when "
                    "nothing changed in between (a folder still being copied is left alone); 0 turns the check "
                    "off.")
    train_timeout_minutes: int = Field(
        360, ge=1, le=10_080, json_schema_extra={"unit": "minutes"},
        description="Airflow execution_timeout of one try of a train task; painting_retrain's dagrun_timeout is "
                    "derived from it. Read when the DAG file is parsed, so it is a deployment setting, not a "
                    "run option.")
    weights_dir: UserPath = Field(
        default_factory=_weights_dir, json_schema_extra=_doc("$PAINTING_HOME/weights"),
        description="The weights volume: where the default backbone weights file is looked for.")
    weights: str | None = Field(
        default_factory=_weights_file, json_schema_extra=_doc(f"$PAINTING_WEIGHTS_DIR/{RESNET50_NOTOP_FILE}"),
        description="Default backbone weights of a run: a file path, imagenet where downloads work, or none for "
                    "random init.")
    run_defaults_file: UserPath | None = Field(
        None, validation_alias="PAINTING_RUN_DEFAULTS",
        description="A JSON or YAML file of run options overriding the schema's defaults for this deployment "
                    "(read when the DAG files are parsed).")
    artist_aliases_file: UserPath | None = Field(
        None, validation_alias="PAINTING_ARTIST_ALIASES",
        description="A JSON or YAML file mapping each canonical artist name to a list of its other spellings "
                    "(Rembrandt: [Rembrandt van Rijn]); ingest merges them into the canonical name. Spellings "
                    "differing only in Unicode form, spacing or case are merged without it.")
    alert_email: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated recipients of failure, success and promotion mails; unset turns alerts "
                        "off.")
    alert_smtp_conn: str = Field(
        "smtp_default", description="The Airflow SMTP connection the alert mails go through (e.g. "
                                    "AIRFLOW_CONN_SMTP_DEFAULT in the environment).")
    alert_from: str | None = Field(
        None, description="Sender of the alert mails; unset: the connection's from_email.")
    workers: int = Field(
        default_factory=available_cores, ge=1, json_schema_extra=_doc("the CPU cores this process may run on"),
        description="How many images ingest probes and offline augmentation transforms at once.")
    artifacts_url: str = Field(
        default_factory=_local_artifacts, json_schema_extra=_doc("file://$PAINTING_HOME/artifacts"),
        description="The artifact store every host reads and writes (models, image copies, plots, mosaics, "
                    "reports): a local folder or s3://bucket/prefix on a cluster; another scheme is refused when the "
                    "settings are read. check_config and every command that uses the store first write, read back "
                    "and delete one small object in it.")
    artifacts_endpoint: str | None = Field(
        None, description="S3 API endpoint of an S3-compatible store (MinIO, Ceph, a moto server); unset: AWS. "
                          "Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the instance "
                          "profile.")
    lost_after_minutes: float = Field(
        10.0, gt=0, lt=1e6, json_schema_extra={"unit": "minutes"},
        description="A training row still running with no heartbeat for this long (a live training beats every "
                    "minute and at each epoch) and whose run key no process holds is marked lost by the next sweep "
                    "(painting_retrain's first tasks, painting-ml runs, a run's start).")
    keep_runs: int = Field(
        10, ge=0, description="Retention: the newest runs whose files painting_gc keeps, besides the champion and "
                              "every run a promotion decision names.")
    run_eagerly: bool = Field(
        False, description="Keras' run_eagerly for every training and prediction: the model's steps run op by op "
                           "instead of being traced into a graph (TensorFlow) or compiled with jax.jit (JAX). Slower "
                           "per step, but nothing to trace: for debugging a model, and for tiny trainings (a smoke "
                           "run, the test suite), where tracing a step costs more than the steps themselves.")
    progress: bool | None = Field(
        None, description="Progress bars of long work (synth, ingest, augment, mosaics) on stderr: 1 shows them, 0 "
                          "hides them; unset: shown when stderr is a terminal.")
    code_commit: str | None = Field(
        None, description="The git commit an image was built from, recorded with each run (a checkout records its "
                          "own commit).")
    image_digest: str | None = Field(
        None, description="The registry digest of the image this process runs in; recorded with each run in "
                          "place of PAINTING_CODE_COMMIT.")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(explain(exc)) from None

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        home = home.expanduser().resolve()
        # The first part of the path that exists must be a folder: the rest is created when needed.
        there = next((p for p in (home, *home.parents) if p.exists()), None)
        if there is not None and not there.is_dir():
            what = "is a file" if there == home else f"lies under the file {there}"
            raise ValueError(f"{what}, not a folder; point PAINTING_HOME at a folder (created when missing)")
        return home

    @field_validator("artifacts_url")
    @classmethod
    def _store_url(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme not in STORE_SCHEMES:
            raise ValueError(f"uses the scheme {parsed.scheme + '://'!r}, which the artifact store does not support; "
                             "use a local folder (/srv/painting/artifacts or file:///srv/painting/artifacts) or "
                             "s3://bucket/prefix")
        if parsed.scheme == "s3" and not _BUCKET.fullmatch(parsed.netloc.rsplit("@", 1)[-1]):
            raise ValueError("does not name a valid bucket (3-63 lower-case letters, digits, dots or hyphens); write "
                             "s3://bucket/prefix")
        return url

    @field_validator("artifacts_endpoint")
    @classmethod
    def _endpoint_url(cls, endpoint: str | None) -> str | None:
        if endpoint is None:
            return None
        parsed = urlparse(endpoint)
        try:
            port_ok = parsed.port is None or parsed.port > 0
        except ValueError:
            port_ok = False
        if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
            raise ValueError("is not an endpoint URL; write http(s)://host:port, e.g. http://minio:9000 (unset: AWS)")
        return endpoint

    @field_validator("weights", mode="before")
    @classmethod
    def _none_is_random_init(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "none" else value

    @field_validator("alert_email", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @property
    def dags_dir(self) -> Path:
        """The folder holding the DAG files."""
        return PROJECT_ROOT / "dags"

    @property
    def generated_data_dir(self) -> Path:
        """Where data folders the project generates (``painting-ml synth``, the demo) live."""
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        """The local artifact store's folder (the default ``PAINTING_ARTIFACTS_URL``)."""
        return self.home / "artifacts"

    @property
    def scratch_dir(self) -> Path:
        """This host's working copies of a remote store's files (never shared between hosts)."""
        return self.home / "scratch"

    @property
    def pgdata_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


#: URL schemes of the artifact store (``""``: a plain path).
STORE_SCHEMES = ("", "file", "s3")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def read_setting_file(path: str | Path, variable: str, what: str) -> str:
    """The text of a file a setting names, with one-line errors naming the variable and the file.

    Every file a deployment names in its environment (the run defaults, the artist aliases) is read
    through here, so each failure reads the same whichever file it is.

    Args:
        path: the file.
        variable: the environment variable that names it (``PAINTING_RUN_DEFAULTS``).
        what: what the file should hold, for the messages ("a JSON or YAML file of run options").

    Raises:
        ConfigError: the file is missing, a folder, not readable or not UTF-8.
    """
    path = Path(path)
    where = f"{variable}={path}"
    if path.is_dir():
        raise ConfigError(f"{where} is a folder; point it at {what} or unset {variable}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; fix the path or unset {variable}") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file ({exc.strerror or type(exc).__name__}); fix its "
                          f"permissions or the path, or unset {variable}") from None
    try:
        return raw.decode("utf-8-sig")  # a BOM from Windows editors is fine
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{where} is not UTF-8 (line {line}, byte {exc.start}: {exc.reason}); save it as "
                          "UTF-8") from None


def env_name(field: str) -> str:
    """The environment variable that sets ``field``: its alias, else ``PAINTING_<FIELD>``."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def explain(exc: ValidationError) -> str:
    """Pydantic's errors as one line: each variable, its value and what to write instead."""
    by_env = {env_name(name): name for name in Settings.model_fields}
    parts = []
    for err in exc.errors():
        if err["type"] == "default_factory_not_called":  # a derived default whose source is the error
            continue
        loc = str(err["loc"][0]) if err["loc"] else ""
        name = by_env.get(loc, loc)
        if name not in Settings.model_fields:
            parts.append(f"{loc or 'settings'}: {err['msg'].lower()}; known settings: {', '.join(by_env)}")
            continue
        shown = _USERINFO.sub("***@", err["input"]) if isinstance(err["input"], str) else err["input"]
        parts.append(f"{env_name(name)}={shown!r} {_reason(name, err)}")
    return "; ".join(parts)


def _reason(name: str, err: ErrorDetails) -> str:
    info = Settings.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    unit = f" {extra['unit']}" if "unit" in extra else ""
    # A default computed from this machine (not from other settings) is worth showing in the message.
    unset = ""
    if info.default_factory is not None and not info.default_factory_takes_validated_data:
        unset = f" (unset: {extra['default_doc']}, {info.get_default(call_default_factory=True)} here)"
    ge = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
    le = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
    span = f"{ge} to {le}" if le is not None else f"{ge} or more"
    kind = err["type"]
    if kind == "value_error":  # a validator of ours: its message already says what to write
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "literal_error":
        choices = [f"{c} (default)" if c == info.default else str(c) for c in get_args(info.annotation)]
        return f"is not valid; use {', '.join(choices[:-1])} or {choices[-1]}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"is not a whole number; use {span}{unit}{unset}"
    if kind in ("bool_parsing", "bool_type"):
        return "is not a boolean; use 1 (on) or 0 (off)"
    gt = next((m.gt for m in info.metadata if isinstance(m, annotated_types.Gt)), None)
    if gt is not None and kind in ("float_parsing", "float_type", "finite_number", "greater_than", "less_than"):
        return f"is not valid; use a number of{unit} above {gt:g} (default {info.default:g})"
    if kind in ("float_parsing", "float_type"):
        return f"is not a number{' of' + unit if unit else ''}; use {span}{unit}"
    if kind == "greater_than_equal":
        if ge == 0 and info.annotation is float:
            return f"is negative; use 0 or more{unit}"
        return f"must be at least {ge}{unset}"
    if kind == "less_than_equal":
        return f"must be at most {le}{unset}"
    return f"is not valid ({err['msg'][:1].lower()}{err['msg'][1:]}); fix it or unset {env_name(name)}"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings, reading the environment on first call only.

    Raises:
        ConfigError: a variable holds a value its setting cannot take (one line, naming it).
    """
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again (tests, the demo driver)."""
    get_settings.cache_clear()
    return get_settings()
