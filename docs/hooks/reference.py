"""mkdocs hook: render the reference pages from the code, at build time.

``docs/reference/config.md``, ``settings.md`` and ``cli.md`` each hold a marker
(``<!-- reference:config -->`` …) that is replaced by tables generated from
:class:`painting_ml.core.config.RunConfig`, :class:`painting_ml.core.settings.Settings` and the
``painting-ml`` argument parser, so the pages cannot drift from the code. None of them imports
TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
from collections.abc import Callable
from enum import Enum
from typing import Any

from mkdocs.exceptions import PluginError
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKERS = {"config": "<!-- reference:config -->", "settings": "<!-- reference:settings -->",
           "cli": "<!-- reference:cli -->"}

#: Variables read by the libraries painting_ml uses, not by its settings model. Listed on the
#: settings page unless the model has a field for them.
READ_ELSEWHERE = {
    "WANDB_API_KEY": "The Weights & Biases API key, read by wandb itself from the environment only "
                     "(never from a Param, the database or a file of this project).",
    "AWS_ACCESS_KEY_ID": "S3 credentials for an `s3://` artifact store, read by the AWS credential chain "
                         "(with `AWS_SECRET_ACCESS_KEY`); unset: a shared credentials file or the instance role.",
    "AWS_SECRET_ACCESS_KEY": "The secret half of `AWS_ACCESS_KEY_ID`.",
    "AWS_DEFAULT_REGION": "The region of the S3 bucket.",
    "KERAS_BACKEND": "Keras 3's backend: `tensorflow` (the default) or `jax`.",
    "PAINTING_PROGRESS": "`1` forces progress bars on stderr, `0` turns them off; unset: shown when "
                         "stderr is a terminal.",
    "PAINTING_CODE_COMMIT": "The git commit an image build records with each run (wins over the "
                            "checkout's git commit).",
    "PAINTING_IMAGE_DIGEST": "The registry digest an image build records with each run.",
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace a reference page's marker with its generated tables."""
    path = page.file.src_uri
    for name, marker in MARKERS.items():
        if path != f"reference/{name}.md":
            continue
        if marker not in markdown:
            raise PluginError(f"{path} lost its marker {marker}")
        render = {"config": config_reference, "settings": settings_reference, "cli": cli_reference}[name]
        return markdown.replace(marker, render())
    return markdown


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# --- the run configuration -------------------------------------------------------------------


def config_reference() -> str:
    """One table per form section of :class:`RunConfig`: key, default, allowed values, what it does."""
    from painting_ml.core.config import RunConfig, allowed, sections

    out: list[str] = []
    for section, names in sections(RunConfig).items():
        out += [f"## {section}", "", "| key | default | allowed | what it does |", "|---|---|---|---|"]
        for name in names:
            f = RunConfig.model_fields[name]
            out.append(f"| `{name}` | `{_cell(_config_default(f))}` | {_cell(allowed(RunConfig, name))} "
                       f"| **{_cell(f.title or name)}.** {_cell(f.description or '')} |")
        out.append("")
    return "\n".join(out)


def _config_default(f: FieldInfo) -> str:
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    if extra.get("default_doc"):
        return str(extra["default_doc"])
    if f.is_required():
        return "required"
    value = f.get_default(call_default_factory=True)
    return json.dumps(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# --- the settings (environment variables) ----------------------------------------------------


def settings_reference() -> str:
    """A table of every environment variable the settings model reads, then those read elsewhere."""
    from painting_ml.core import settings

    model = settings.Settings
    if isinstance(model, type) and issubclass(model, BaseModel):
        rows = _pydantic_rows(model, getattr(settings, "env_name", None))
    elif dataclasses.is_dataclass(model):
        rows = _dataclass_rows(model)
    else:
        raise PluginError("painting_ml.core.settings.Settings is neither a pydantic model nor a dataclass")
    lines = ["| variable | default | what it sets |", "|---|---|---|"]
    lines += [f"| `{env}` | {_cell(default)} | {_cell(text)} |" for env, default, text in rows]
    covered = {env for env, _, _ in rows}
    extra = [f"| `{env}` | {_cell(text)} |" for env, text in READ_ELSEWHERE.items() if env not in covered]
    if extra:
        lines += ["", "## Read by other code", "",
                  "Not fields of the settings model: read by a library or at one place in the code.", "",
                  "| variable | what it sets |", "|---|---|", *extra]
    return "\n".join(lines)


def _pydantic_rows(model: type[BaseModel], env_name: Callable[[str], str] | None) -> list[tuple[str, str, str]]:
    """Variable, default and description per field: the variable from ``json_schema_extra["env"]``,
    else the settings module's own ``env_name``, else the alias, else the prefix and the name."""
    prefix = str(model.model_config.get("env_prefix", "") or "")
    rows = []
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if "env" in extra and not extra["env"]:
            continue  # a field not read from the environment
        if extra.get("env"):
            env = str(extra["env"])
        elif env_name is not None:
            env = env_name(name)
        else:
            env = _alias(f) or (prefix + name).upper()
        rows.append((env, _settings_default(f, extra), f.description or ""))
    return rows


def _settings_default(f: FieldInfo, extra: dict[str, Any]) -> str:
    if extra.get("default_doc"):
        return f"`{extra['default_doc']}`"
    if f.default is PydanticUndefined:
        return "computed" if f.default_factory is not None else "required"
    if f.default is None or f.default in ("", ()):
        return "unset"
    value = _plain(f.default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    unit = f" {extra['unit']}" if extra.get("unit") else ""
    return f"`{value}`{unit}"


def _alias(f: FieldInfo) -> str | None:
    alias = f.validation_alias or f.alias
    if isinstance(alias, str):
        return alias.upper()
    if isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str)]
        return ", ".join(n.upper() for n in names) or None
    return None


_ATTRIBUTE = re.compile(r"^ {4}(\w+): (.*)$")


def _dataclass_rows(model: type) -> list[tuple[str, str, str]]:
    """The fallback for a dataclass: its docstring's ``Attributes:`` entries that name a variable
    (``name: ``ENV``; what it does``); defaults are stated in those texts."""
    doc = (inspect.getdoc(model) or "").split("Attributes:", 1)[-1]
    texts: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        m = _ATTRIBUTE.match(line)
        if m:
            current = m.group(1)
            texts[current] = m.group(2)
        elif current and line.strip():
            texts[current] += " " + line.strip()
    rows = []
    for f in dataclasses.fields(model):
        m = re.match(r"``([A-Z][A-Z0-9_]+)``;\s*(.*)", texts.get(f.name, ""), re.S)
        if m:
            rows.append((m.group(1), "see text", m.group(2).replace("``", "`")))
    return rows


# --- the command line ------------------------------------------------------------------------


def cli_reference() -> str:
    """One section per ``painting-ml`` command: what it does and its options. The run-config flags
    of ``run`` and ``train`` are summarised, as the configuration page lists them."""
    from painting_ml.cli import build_parser
    from painting_ml.core.config import RunConfig

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in commands._choices_actions}
    config_dests = {f"cfg_{name}" for name in RunConfig.model_fields} | {"config", "set"}
    out: list[str] = []
    for name, sub in commands.choices.items():
        text = _cell(helps.get(name, "")).rstrip(".")
        out += [f"## {name}", "", text[:1].upper() + text[1:] + ".", ""]
        actions = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        options = [a for a in actions if a.dest not in config_dests]
        if len(options) < len(actions):
            out += ["Every [run option](config.md) is a flag (`--kebab-name`); `--config FILE` (JSON) and "
                    "`--set KEY=VALUE` set any of them, flags winning.", ""]
        if options:
            formatter = sub._get_formatter()
            out += ["| option | default | what it does |", "|---|---|---|"]
            out += [f"| {_flag(a)} | {_default(a)} | {_cell(formatter._expand_help(a) if a.help else '')} |"
                    for a in options]
            out.append("")
    return "\n".join(out)


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`" + (" …" if action.nargs in ("+", "*") else "")
    metavar = "" if action.nargs == 0 else " " + str(action.metavar or action.dest.upper())
    return ", ".join(f"`{o}{metavar}`" for o in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"
