"""The trigger form of ``painting_retrain``, generated from the config schema.

Every :class:`~painting_ml.core.config.RunConfig` field becomes one typed Airflow ``Param`` with its
title, description, range or enum, and form section. Nothing here is typed by hand: add a field to
the schema and it appears in the form, the CLI and the README table.

The form's defaults are this deployment's (:func:`deployment_defaults`): the schema's recipe,
overridden field by field by ``PAINTING_DATA_DIR`` and the ``PAINTING_RUN_DEFAULTS`` file. Both are
read when the DAG file is parsed — one small file, no database — and an invalid file is an import
error naming the key, visible in the UI, never a silent fall-back.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param
from pydantic import BaseModel

from painting_ml.core.config import RunConfig, field_schema, read_defaults_file, sections
from painting_ml.core.settings import Settings, get_settings


def deployment_defaults(settings: Settings | None = None) -> dict[str, Any]:
    """The run defaults of this deployment: ``data_dir`` from ``PAINTING_DATA_DIR``, then every key
    of the ``PAINTING_RUN_DEFAULTS`` file (JSON or YAML), which wins.

    Raises:
        ConfigError: the file is unreadable, or a key is unknown or its value invalid (named).
    """
    settings = settings or get_settings()
    out: dict[str, Any] = {"data_dir": str(settings.default_data_dir)}
    if settings.run_defaults_file is not None:
        out.update(read_defaults_file(settings.run_defaults_file))
    return out


def run_params(defaults: dict[str, Any], model: type[BaseModel] = RunConfig) -> dict[str, Param]:
    """One ``Param`` per schema field, ordered by section, defaulting to ``defaults`` where given
    (e.g. ``data_dir`` from the deployment's settings) and to the schema's default otherwise.

    Args:
        defaults: field -> default value overriding the schema's (values are validated by the
            caller, e.g. by building a ``RunConfig`` from them).
        model: the schema (a test passes an extended copy).
    """
    unknown = sorted(set(defaults) - set(model.model_fields))
    if unknown:
        raise ValueError(f"no config field named {', '.join(map(repr, unknown))}")
    out: dict[str, Param] = {}
    for names in sections(model).values():
        for name in names:
            info = model.model_fields[name]
            schema = field_schema(model, name)
            description = schema.pop("description", "")
            if name in defaults:
                default = defaults[name]
            elif info.is_required():
                default = None
            else:
                default = model.model_fields[name].get_default(call_default_factory=True)
            default = _jsonable(default)
            out[name] = Param(default, description=description, **schema)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "value") and isinstance(value, str):  # StrEnum
        return value.value
    return value
