"""One name per artist: the text keys of the catalog (artist, style, genre) in one canonical spelling.

A spelling is normalised (Unicode NFC, whitespace collapsed and trimmed) and matched
case-insensitively: "Paul Cézanne" in NFC or NFD, "paul cézanne" and "Paul  Cézanne " are one
artist. Each group of spellings takes its most frequent normalised spelling (ties: the first in
code-point order) as its canonical name, computed per ingest over the data root's good rows, so a
CSV that renames an artist moves all its paintings. A deployment's aliases file
(``PAINTING_ARTIST_ALIASES``) merges what normalisation cannot ("Rembrandt" / "Rembrandt van Rijn").

The catalog's columns carry the canonical names; ``name_spellings`` keeps every spelling as the
CSV wrote it, with its canonical name and count (the ``artist_spellings`` view).
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import read_setting_file

if TYPE_CHECKING:
    import psycopg

    from painting_ml.data.ingest.records import CatalogRow

#: The catalog's text keys that are brought to one spelling.
KINDS: tuple[str, ...] = ("artist", "style", "genre")
_ENV = "PAINTING_ARTIST_ALIASES"

Row = TypeVar("Row", bound="CatalogRow")


def normal_form(text: str) -> str:
    """``text`` in Unicode NFC with its whitespace collapsed to single spaces and trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def name_key(text: str) -> str:
    """What two spellings of one name share: the normal form, case-folded."""
    return normal_form(text).casefold()


def read_aliases(path: str | Path | None) -> dict[str, str]:
    """The deployment's artist aliases file (JSON or YAML): canonical name -> list of spellings.

    Args:
        path: the file (``PAINTING_ARTIST_ALIASES``); None: no aliases.

    Returns:
        ``{name_key(spelling): canonical name}``, the canonical names included as their own spellings.

    Raises:
        ConfigError: one line: the file is missing, a folder, not UTF-8, not JSON/YAML, not a
            mapping of names to lists of names, or a spelling belongs to two canonical names (both named).
    """
    if path is None:
        return {}
    path = Path(path)
    where = f"{_ENV}={path}"
    text = read_setting_file(path, _ENV, "a JSON or YAML file of canonical name -> spellings")
    values = _parse(text, path.suffix.lower(), where)
    if not isinstance(values, dict):
        raise ConfigError(f"{where} holds a {type(values).__name__}; write a mapping of canonical name -> list of "
                          "spellings, e.g. Rembrandt: [Rembrandt van Rijn]")
    out: dict[str, str] = {}
    for canonical, spellings in values.items():
        if isinstance(spellings, str):
            spellings = [spellings]
        if not isinstance(canonical, str) or not normal_form(canonical) or not isinstance(spellings, list) \
                or not all(isinstance(s, str) and normal_form(s) for s in spellings):
            raise ConfigError(f"{where}: {canonical!r} must be a name mapped to a list of names, e.g. "
                              "Rembrandt: [Rembrandt van Rijn]")
        name = normal_form(canonical)
        for spelling in [canonical, *spellings]:
            key = name_key(spelling)
            other = out.setdefault(key, name)
            if other != name:
                raise ConfigError(f"{where}: {spelling!r} is a spelling of both {other!r} and {name!r}; keep it "
                                  "under one canonical name")
    return out


def _parse(text: str, suffix: str, where: str) -> Any:
    if suffix == ".json":
        try:
            return json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    if suffix in (".yaml", ".yml"):
        import yaml  # a dependency of Airflow; cheap

        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None
    raise ConfigError(f"{where}: name the file *.json, *.yaml or *.yml")


def canonical_names(spellings: Iterable[str], aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """The canonical name of each spelling.

    Args:
        spellings: one spelling per painting, as written (repeats count).
        aliases: :func:`read_aliases`' mapping; an aliased spelling takes the alias's name.

    Returns:
        ``{spelling: canonical name}`` for every distinct spelling.
    """
    aliases = aliases or {}
    counts = Counter(spellings)
    forms: dict[str, Counter[str]] = {}
    for spelling, n in counts.items():
        form = normal_form(spelling)
        key = name_key(form)
        forms.setdefault(aliases.get(key, key), Counter())[form] += n
    chosen = {group: min(c, key=lambda form: (-c[form], form)) for group, c in forms.items()}
    out = {}
    for spelling in counts:
        key = name_key(spelling)
        out[spelling] = aliases[key] if key in aliases else chosen[key]
    return out


class Spelling(NamedTuple):
    """One row of ``name_spellings``: a spelling of a text key as the CSV wrote it."""

    kind: str
    spelling: str
    canonical: str
    paintings: int


@dataclass(frozen=True)
class NameMap:
    """The canonical names of one data root's good rows, per text key."""

    canonical: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> spelling -> canonical
    counts: dict[str, Counter[str]] = field(default_factory=dict)       # kind -> spelling -> paintings

    def apply(self, rows: Sequence[Row]) -> list[Row]:
        """``rows`` with each text key replaced by its canonical name."""
        out = []
        for row in rows:
            artist = self.canonical["artist"][row.artist]
            style, genre = self._name("style", row.style), self._name("genre", row.genre)
            if (artist, style, genre) != (row.artist, row.style, row.genre):
                row = row._replace(artist=artist, style=style, genre=genre)
            out.append(row)
        return out

    def _name(self, kind: str, value: str | None) -> str | None:
        return None if value is None else self.canonical[kind][value]

    def spellings(self) -> list[Spelling]:
        """Every spelling with its canonical name and count, by kind and spelling."""
        return [Spelling(kind, s, self.canonical[kind][s], n)
                for kind in KINDS for s, n in sorted(self.counts[kind].items())]


def name_catalog(rows: Sequence[CatalogRow], aliases: Mapping[str, str] | None = None) -> NameMap:
    """The canonical names of ``rows`` (a data root's good rows); ``aliases`` apply to artists."""
    # filter(None): an empty style or genre is None
    counts: dict[str, Counter[str]] = {kind: Counter(filter(None, map(attrgetter(kind), rows))) for kind in KINDS}
    canonical = {kind: canonical_names(counts[kind].elements(), aliases if kind == "artist" else None)
                 for kind in KINDS}
    return NameMap(canonical, counts)


def names_moved(conn: psycopg.Connection[Any], root: str, names: NameMap) -> bool:
    """Whether a spelling already in ``root``'s catalog now has another canonical name (or the
    root's spellings were never recorded): then unchanged rows must be rewritten too."""
    from painting_ml.core import db  # here: the DAG files read the aliases at parse time, without psycopg

    stored = db.fetch_dicts(conn, db.sql("names", "root_spellings"), {"root": root})
    if not stored:
        return True
    return any(names.canonical[r["kind"]].get(r["spelling"], r["canonical"]) != r["canonical"] for r in stored)


def record_names(conn: psycopg.Connection[Any], root: str, names: NameMap) -> None:
    """Replace ``root``'s rows of ``name_spellings`` with ``names``, in the caller's transaction."""
    from painting_ml.core import db  # here: the DAG files read the aliases at parse time, without psycopg

    rows = names.spellings()
    conn.execute(db.sql("names", "delete_root_spellings"), {"root": root})
    conn.execute(db.sql("names", "insert_spellings"), {
        "root": root, "kinds": [r.kind for r in rows], "spellings": [r.spelling for r in rows],
        "canonicals": [r.canonical for r in rows], "paintings": [r.paintings for r in rows]})
