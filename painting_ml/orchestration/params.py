"""The trigger form of ``painting_retrain``, generated from the config schema.

Every :class:`~painting_ml.core.config.RunConfig` field becomes one typed Airflow ``Param`` with its
title, description, range or enum, and form section. Nothing here is typed by hand: add a field to
the schema and it appears in the form, the CLI and the README table. Each description ends with
what the field takes (a number's range, a list's allowed values), as the form shows no limits of
its own. A field whose empty value means something (no artist names, no offline transforms, equal
loss weights, random init) may be left empty; the form marks every other field required.

The form's defaults are this deployment's (:func:`deployment_defaults`): the schema's recipe,
overridden field by field by ``PAINTING_DATA_DIR`` and the ``PAINTING_RUN_DEFAULTS`` file. Both are
read when the DAG file is parsed — small files, no database — with the ``PAINTING_ARTIST_ALIASES``
file, and an invalid file is an import error naming it and the key, visible in the UI, never a
silent fall-back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from airflow.sdk import Param
from pydantic import BaseModel

from painting_ml.core.config import PRESETS, RunConfig, allowed, field_schema, read_defaults_file, sections
from painting_ml.core.settings import Settings, get_settings

#: What an optional field left empty in the form (sent as null) stands for, by JSON type.
_EMPTY: dict[str, Any] = {"array": [], "object": {}, "string": None}


def deployment_defaults(settings: Settings | None = None) -> dict[str, Any]:
    """The run defaults of this deployment: ``data_dir`` from ``PAINTING_DATA_DIR``, then every key
    of the ``PAINTING_RUN_DEFAULTS`` file (JSON or YAML), which wins. The ``PAINTING_ARTIST_ALIASES``
    file is validated here too, so a bad one is an import error of the DAG naming it, not a
    failure of the first ingest.

    Raises:
        ConfigError: a file is unreadable, or a key is unknown or its value invalid (named).
    """
    from painting_ml.data.names import read_aliases

    settings = settings or get_settings()
    read_aliases(settings.artist_aliases_file)
    out: dict[str, Any] = {"data_dir": str(settings.default_data_dir)}
    if settings.run_defaults_file is not None:
        out.update(read_defaults_file(settings.run_defaults_file))
    return out


def _base_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((k for k in kind if k != "null"), "null")
    return str(kind)


@functools.lru_cache(maxsize=16)
def optional_fields(model: type[BaseModel] = RunConfig) -> dict[str, str]:
    """The fields an empty value is valid for — a list without a minimum length, a mapping, a
    nullable value — by name, with their JSON type."""
    out: dict[str, str] = {}
    for name in model.model_fields:
        schema = field_schema(model, name)
        kind = _base_type(schema)
        nullable = isinstance(schema.get("type"), list)
        if nullable or kind == "object" or (kind == "array" and not schema.get("minItems")):
            out[name] = kind
    return out


def _limits(model: type[BaseModel], name: str, kind: str, optional: bool) -> str:
    """The sentence the description ends with: what a number, list or mapping takes."""
    if kind not in ("integer", "number", "array", "object"):
        return ""
    return f"Takes {allowed(model, name)}{'; may be left empty' if optional else ''}."


def run_params(defaults: dict[str, Any], model: type[BaseModel] = RunConfig,
               exclude: Iterable[str] = ()) -> dict[str, Param]:
    """One ``Param`` per schema field, ordered by section, defaulting to ``defaults`` where given
    (e.g. ``data_dir`` from the deployment's settings) and to the schema's default otherwise.

    Args:
        defaults: field -> default value overriding the schema's (values are validated by the
            caller, e.g. by building a ``RunConfig`` from them).
        model: the schema (a test passes an extended copy).
        exclude: fields left out of the form (the run takes their default), e.g. the single-run
            ``optimizer`` of a DAG that sweeps ``optimizers``.
    """
    unknown = sorted(set(defaults) - set(model.model_fields))
    if unknown:
        raise ValueError(f"no config field named {', '.join(map(repr, unknown))}")
    skip = set(exclude)
    optional = optional_fields(model)
    out: dict[str, Param] = {}
    for names in sections(model).values():
        for name in names:
            if name in skip:
                continue
            info = model.model_fields[name]
            schema = field_schema(model, name)
            kind = _base_type(schema)
            if name in optional:
                # Airflow's form marks a field required unless its type admits null.
                schema["type"] = [kind, "null"]
            text = " ".join(filter(None, (schema.pop("description", ""), _limits(model, name, kind, name in optional))))
            if name in defaults:
                default = defaults[name]
            elif info.is_required():
                default = None
            else:
                default = model.model_fields[name].get_default(call_default_factory=True)
            out[name] = Param(_jsonable(default), description=text, **schema)
    return out


def config_from_params(params: Mapping[str, Any], model: type[RunConfig] = RunConfig) -> RunConfig:
    """The run config of a DAG run's Params: an optional field the form sent empty (null) is its
    empty value (no names, no transforms, no loss weights, random init), not the schema's default.

    Raises:
        ConfigError: a value is invalid or a key unknown (named).
    """
    values = dict(params)
    for name, kind in optional_fields(model).items():
        if name in values and values[name] is None:
            values[name] = _EMPTY.get(kind)
    return model.from_params(values)


def preset_of(values: Mapping[str, Any]) -> str | None:
    """The name of the :data:`~painting_ml.core.config.PRESETS` entry ``values`` (a defaults file's,
    as :func:`~painting_ml.core.config.read_defaults_file` returns them) hold exactly, or None."""
    for name, preset in PRESETS.items():
        normalised = RunConfig(**{"data_dir": "-", **preset}).to_dict()
        if set(values) == set(preset) and all(values[k] == normalised[k] for k in preset):
            return name
    return None


def describe_defaults(settings: Settings | None = None) -> str:
    """Which defaults the trigger form starts from, in words (the DAG's doc, the launcher's console).

    Raises:
        ConfigError: the ``PAINTING_RUN_DEFAULTS`` file is invalid (named).
    """
    settings = settings or get_settings()
    if settings.run_defaults_file is None:
        return "the production recipe (no PAINTING_RUN_DEFAULTS file)"
    where = f"PAINTING_RUN_DEFAULTS={settings.run_defaults_file}"
    values = read_defaults_file(settings.run_defaults_file)
    preset = preset_of(values)
    if preset is not None:
        return f"the {preset} preset ({where})"
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
    return f"the production recipe overridden by {where}: {shown or 'nothing'}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, StrEnum):
        return value.value
    return value
