"""The run-config flags of ``painting-ml run`` / ``train``, generated from the config schema.

One ``--kebab-name`` flag per :class:`~painting_ml.core.config.RunConfig` field, grouped by form
section in ``--help``, with the field's description and what it accepts. Values are passed to the
schema as text and validated there, so a bad value gets the same message as in the trigger form's
backend: the field, the value and what is allowed. ``--preset NAME`` starts from a named set of
options (:data:`~painting_ml.core.config.PRESETS`, e.g. ``cpu`` for a laptop); ``--config FILE.json``
and ``--set key=value`` (any key, JSON values) still work; precedence: the deployment's defaults
file < preset < ``--config`` file < flags < ``--set``.
"""

from __future__ import annotations

import argparse
import json
import math
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from painting_ml.core.config import PRESETS, RunConfig, allowed, read_defaults_file, sections
from painting_ml.core.errors import PaintingMLError


def int_in(lo: int, hi: int, what: str = "a number"):
    """An argparse ``type``: a whole number from ``lo`` to ``hi`` (also refuses 20-digit values
    that would overflow the database, floats and text, with a one-line message)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; {what} is {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range; {what} is {lo} to {hi}")
        return value

    parse.__name__ = what  # argparse names the type in "invalid <type> value" messages
    return parse


RUN_ID = int_in(1, 2**31 - 1, "a run id")


def probability(text: str) -> float:
    """An argparse ``type``: a finite number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; a probability is 0 to 1") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is out of range; a probability is 0 to 1")
    return value


def require_run(run_id: int | None) -> None:
    """Refuse a run id that does not exist (None: the command picks a run itself)."""
    if run_id is None:
        return
    from painting_ml.core import db

    with db.connect() as conn:
        found = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id})
    if found is None:
        raise PaintingMLError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")


def positive_float(hi: float):
    """An argparse ``type``: a finite number from 0 to ``hi``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; use 0 to {hi:g}") from None
        if not math.isfinite(value) or not 0 <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use 0 to {hi:g}")
        return value

    return parse


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel] = RunConfig) -> None:
    """Add ``--preset``, ``--config``, ``--set`` and one flag per schema field to ``parser``."""
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named set of options (`painting-ml config --presets` lists them): cpu "
                             "is sized for a laptop (random init, ResNet18 at 64 px, no gradient accumulation, a "
                             "data-quality gate that fits the demo set); the other flags override it")
    parser.add_argument("--config", help="JSON file of config keys (flags and --set override it)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any config key, JSON values, e.g. --set label_smoothing=0.1 "
                             "--set 'loss_weights={\"style\": 0.5}'")
    for section, names in sections(model).items():
        group = parser.add_argument_group(f"config: {section}")
        for name in names:
            info = model.model_fields[name]
            text = f"{info.title}. {info.description} Takes {allowed(model, name)}."
            if info.annotation is bool:
                group.add_argument(flag_name(name), dest=f"cfg_{name}", action=argparse.BooleanOptionalAction,
                                   default=None, help=text.replace("%", "%%"))
            else:
                group.add_argument(flag_name(name), dest=f"cfg_{name}", metavar=name.upper(), default=None,
                                   help=text.replace("%", "%%"))


def parse_set(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans, lists,
    objects) and as text otherwise."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PaintingMLError(f"--set {pair!r}: write key=value, e.g. --set label_smoothing=0.1")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _check_lists(params: dict, model: type[BaseModel]) -> None:
    """A list given for a field of names (``artists``, ``targets`` …) must hold text, not numbers
    or objects that would be silently turned into names."""
    for key, value in params.items():
        info = model.model_fields.get(key)
        if info is None or not isinstance(value, list):
            continue
        if str in typing.get_args(info.annotation):
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                raise PaintingMLError(f"{key}={json.dumps(value)}: the list must hold text, not {bad[0]!r}; "
                                      f"write e.g. --set '{key}=[\"A\", \"B\"]'")


def config_from_args(args: argparse.Namespace, model: type[RunConfig] = RunConfig) -> RunConfig:
    """The run config from this deployment's ``PAINTING_RUN_DEFAULTS`` file (the same defaults as
    the trigger form), then ``--preset``, then ``--config FILE.json``, then the per-field flags,
    then ``--set k=v``."""
    from painting_ml.core.settings import get_settings

    params: dict[str, Any] = {}
    defaults_file = get_settings().run_defaults_file
    if defaults_file is not None and model is RunConfig:
        params.update(read_defaults_file(defaults_file))
    if getattr(args, "preset", None):
        params.update(PRESETS[args.preset])
    if getattr(args, "config", None):
        try:
            loaded = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PaintingMLError(f"--config {args.config}: cannot read a JSON object ({exc})") from exc
        if not isinstance(loaded, dict):
            raise PaintingMLError(f"--config {args.config}: the file holds a JSON {type(loaded).__name__}; "
                                  "write an object of config keys")
        params.update(loaded)
    for name in model.model_fields:
        value = getattr(args, f"cfg_{name}", None)
        if value is not None:
            params[name] = value
    params.update(parse_set(getattr(args, "set", None) or []))
    _check_lists(params, model)
    return model.from_params(params)
