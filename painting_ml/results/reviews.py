"""Curators' verdicts on the paintings a label audit flagged: keep, relabel, unsure, and undo.

Each verdict is a ``label_reviews`` row (painting, decision, new artist, who, when, note, and the
sha256 of the file judged). A painting's standing verdict is its latest review not undone
(``active_reviews``); a current ``relabel`` is a label override that selection and dataset versions
apply on top of the CSV (which stays the source of record), and a current ``keep`` or ``relabel``
takes the painting out of the review queue until its file changes. Undo marks a review undone (who,
when) and keeps the row, so the previous verdict, if any, stands again.

Two curators acting on one painting at once: a verdict names the standing verdict its author saw
(``seen_review_id``; None: none). The painting is locked while the verdict is written, and one that
does not match what is there now is refused with :class:`ReviewConflict`, which says who decided
what and when, so no verdict is overwritten unseen.
"""

from __future__ import annotations

import difflib
import unicodedata
from typing import Any, Literal, get_args

from painting_ml.core import db, locks
from painting_ml.core.errors import PaintingMLError
from painting_ml.data.names import name_key

Decision = Literal["keep", "relabel", "unsure"]
DECISIONS: tuple[str, ...] = get_args(Decision)


class ReviewError(PaintingMLError):
    """A verdict cannot be recorded as asked (unknown painting, artist or review, bad decision)."""


class ReviewConflict(ReviewError):  # noqa: N818 (what happened, as the page and the CLI say it)
    """Someone else's verdict on the painting came first: the caller did not see it."""

    def __init__(self, message: str, standing: dict[str, Any]) -> None:
        super().__init__(message)
        self.standing = standing


def describe(review: dict[str, Any]) -> str:
    """One line about a verdict: ``review 12: relabel to 'Monet' by alice at 2026-12-04 20:31 UTC``."""
    what = f"relabel to {review['new_artist']!r}" if review["decision"] == "relabel" else review["decision"]
    when = review["reviewed_at"].strftime("%Y-%m-%d %H:%M %Z").strip()
    return f"review {review['id']}: {what} by {review['reviewer']} at {when}"


#: The longest reviewer name kept (an Airflow user name or a login name is far shorter).
MAX_REVIEWER = 200


def _who(name: str | None, what: str) -> str:
    """A reviewer's name, trimmed; refused when blank, over :data:`MAX_REVIEWER` characters or
    holding a control character (a newline would forge a second line in every verdict shown)."""
    name = (name or "").strip()
    if not name:
        raise ReviewError(f"{what} needs a reviewer name")
    if len(name) > MAX_REVIEWER or any(unicodedata.category(c) == "Cc" for c in name):
        raise ReviewError(f"reviewer name {name[:40]!r}{'…' if len(name) > 40 else ''} for {what} is not a name: "
                          f"use at most {MAX_REVIEWER} characters and no control characters (newline, tab)")
    return name


def _file_key(filename: str) -> str:
    """A file name as the catalog keys it: Unicode NFC (macOS writes names in NFD), as ingest reads them."""
    return unicodedata.normalize("NFC", filename)


def _missing_painting(conn: db.Connection, root: str, filename: str) -> ReviewError:
    """The one-line error for a file name the catalog of ``root`` lacks: the folders that have it,
    else the root's closest file names."""
    elsewhere = [r["data_root"] for r in db.fetch_dicts(conn, db.sql("reviews", "painting_roots"),
                                                        {"filename": filename})]
    if elsewhere:
        hint = f"; it is in the catalog of {', '.join(elsewhere)}: pass --data-dir {elsewhere[0]}"
    else:
        names = [r["filename"] for r in db.fetch_dicts(conn, db.sql("reviews", "catalog_files"), {"root": root})]
        close = difflib.get_close_matches(filename, names, n=3, cutoff=0.8)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        hint += "; check the file name (`painting-ml review list` shows the flagged ones)"
    return ReviewError(f"no painting {filename!r} in the catalog of {root}{hint}")


def _plain(name: str) -> str:
    """``name_key`` without accents: what a "did you mean" compares."""
    return "".join(c for c in unicodedata.normalize("NFD", name_key(name)) if not unicodedata.combining(c))


def _catalog_artist(conn: db.Connection, root: str, new_artist: str, filename: str) -> str:
    """``new_artist`` as the catalog spells it (any spelling of it the CSVs wrote); refused when no
    live painting of ``root`` has it."""
    artists = [r["artist"] for r in db.fetch_dicts(conn, db.sql("reviews", "catalog_artists"), {"root": root})]
    # Every spelling the folder's CSVs wrote counts ("Rembrandt van Rijn" for "Rembrandt"); the
    # canonical names win a clash.
    spellings = db.fetch_dicts(conn, db.sql("reviews", "artist_spellings"), {"root": root})
    by_key = {name_key(r["spelling"]): r["canonical"] for r in spellings} | {name_key(a): a for a in artists}
    found = by_key.get(name_key(new_artist))
    if found is None:
        # Compared by name_key too, so "zoe kovac" still finds "Zoë Kovač".
        keys = {_plain(a): a for a in artists}
        close = difflib.get_close_matches(new_artist, artists, n=3) or \
            [keys[k] for k in difflib.get_close_matches(_plain(new_artist), list(keys), n=3)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ReviewError(f"cannot relabel {filename} to {new_artist!r}: no painting of {root} is by that artist"
                          f"{hint}; relabel to an artist of the catalog")
    return found


def review(data_root: str, filename: str, decision: str, reviewer: str, new_artist: str | None = None,
           note: str | None = None, seen_review_id: int | None = None, audit_id: int | None = None,
           url: str | None = None) -> dict[str, Any]:
    """Record a curator's verdict on one painting and return the new ``label_reviews`` row.

    Args:
        data_root: the painting's data folder as the catalog keys it (``resolve_root``).
        filename: the painting's file name in the catalog.
        decision: ``keep`` (the catalog artist is right), ``relabel`` (to ``new_artist``) or ``unsure``.
        reviewer: who decides (an Airflow user name, a login name).
        new_artist: the artist to relabel to (``relabel`` only): one of the root's catalog artists.
        note: free text kept with the verdict.
        seen_review_id: the id of the standing verdict the reviewer saw; None when they saw none.
        audit_id: the audit whose flag this answers (default: the latest ranked audit that judged it).
        url: the painting database (default: the configured one).

    Returns:
        The row, plus ``conflicting_copies``: the painting's copies (duplicate group) whose artist
        now differs (``filename``, ``artist``); while any do, dataset versions leave the group out.

    Raises:
        ReviewConflict: the standing verdict is not the one the reviewer saw.
        ReviewError: unknown decision or painting (the file name is matched in Unicode NFC); a
            painting whose file left its folder; ``seen_review_id`` naming no verdict of this
            painting; relabel without an artist, to the same artist or to one outside the catalog;
            a new artist with another decision.
    """
    if decision not in DECISIONS:
        raise ReviewError(f"unknown decision {decision!r} for {filename}; choose one of {', '.join(DECISIONS)}")
    reviewer = _who(reviewer, f"a verdict on {filename}")
    if decision == "relabel" and not (new_artist and new_artist.strip()):
        raise ReviewError(f"relabel of {filename} needs the new artist")
    if decision != "relabel" and new_artist:
        raise ReviewError(f"a new artist ({new_artist!r}) goes with relabel only, not with {decision}")
    filename = _file_key(filename)
    params = {"root": data_root, "filename": filename}
    with db.connect(url) as conn:
        conn.execute(db.sql("reviews", "lock_painting"), {**params, "lock": locks.REVIEW})
        painting = db.fetch_one(conn, db.sql("reviews", "painting"), params)
        if painting is None:
            raise _missing_painting(conn, data_root, filename)
        if painting["gone"]:
            raise ReviewError(f"{filename} left {data_root} (its file was gone at the last ingest): a verdict on it "
                              "would not count; put the file back and ingest again, then decide")
        standing = db.fetch_one(conn, db.sql("reviews", "active_review"), params)
        if (standing["id"] if standing else None) != seen_review_id:
            seen = None if seen_review_id is None else \
                db.fetch_one(conn, db.sql("reviews", "review_by_id"), {"id": seen_review_id})
            if seen_review_id is not None and (seen is None or (seen["data_root"], seen["filename"]) !=
                                               (data_root, filename)):
                what = "does not exist" if seen is None else \
                    f"is a verdict on {seen['filename']} of {seen['data_root']}, not on {filename}"
                now = f"the one standing on {filename} is {describe(standing)}" if standing else \
                    f"{filename} has no standing verdict: decide without naming one"
                raise ReviewError(f"review {seen_review_id} {what}; {now}")
            if standing is None:
                raise ReviewConflict(f"the verdict on {filename} you saw (review {seen_review_id}) was undone "
                                     "meanwhile; look at the painting again and decide", {})
            raise ReviewConflict(f"{filename} was decided meanwhile — {describe(standing)}; "
                                 "look at that verdict and decide again if you disagree", standing)
        if decision == "relabel":
            assert new_artist is not None
            target = _catalog_artist(conn, data_root, new_artist.strip(), filename)
            if target == painting["artist"]:
                raise ReviewError(f"{filename} is already by {target!r} in the catalog; use keep to confirm it")
        else:
            target = None
        if audit_id is None:
            audit_id = db.fetch_one(conn, db.sql("reviews", "latest_issue_audit"), params, required=True)["audit_id"]
        row = db.fetch_one(conn, db.sql("reviews", "insert_review"),
                           {**params, "decision": decision, "catalog_artist": painting["artist"], "new_artist": target,
                            "reviewer": reviewer, "note": (note or "").strip() or None,
                            "audit_id": audit_id, "sha256": painting["sha256"]}, required=True)
        copies = copies_labelled_otherwise(conn, data_root, filename, target or painting["artist"])
    return {**row, "conflicting_copies": copies}


def copies_labelled_otherwise(conn: db.Connection, data_root: str, filename: str,
                              artist: str) -> list[dict[str, Any]]:
    """The painting's live copies (its duplicate group) whose artist, overrides applied, is not
    ``artist`` (``filename``, ``artist``): while any are, dataset versions leave the group out."""
    return db.fetch_dicts(conn, db.sql("reviews", "copies_labelled_otherwise"),
                          {"root": data_root, "filename": filename, "artist": artist})


def undo(review_id: int, who: str, url: str | None = None) -> dict[str, Any]:
    """Mark a verdict undone (the row stays, with who undid it and when) and return the row.

    The painting's previous verdict, if any, stands again; an undone relabel's override is gone
    from the next dataset version.

    Raises:
        ReviewError: no such review, or it was undone already.
    """
    who = _who(who, f"undoing review {review_id}")
    with db.connect(url) as conn:
        found = db.fetch_one(conn, db.sql("reviews", "review_by_id"), {"id": review_id})
        if found is None:
            raise ReviewError(f"no review {review_id}; `painting-ml review history FILE` lists a painting's reviews")
        conn.execute(db.sql("reviews", "lock_painting"), {"root": found["data_root"], "filename": found["filename"],
                                                          "lock": locks.REVIEW})
        row = db.fetch_one(conn, db.sql("reviews", "undo_review"), {"id": review_id, "who": who})
        if row is None:
            again = db.fetch_one(conn, db.sql("reviews", "review_by_id"), {"id": review_id}, required=True)
            raise ReviewError(f"review {review_id} was undone already, by {again['undone_by']} at "
                              f"{again['undone_at']:%Y-%m-%d %H:%M %Z}")
    return row


def queue(limit: int = 50, data_root: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """The flagged paintings awaiting a verdict, by rank: each latest audit's issues without a
    current keep/relabel (``unsure`` stays). Each row has ``orphaned`` (the painting left its
    folder), ``evidence`` (artifact keys, or None) and the standing verdict (``review_id``,
    ``last_decision``, ``last_reviewer``, ``last_reviewed_at``) to send back as ``seen_review_id``.

    Args:
        limit: the most rows returned (at least 1).
        data_root: only this data folder's queue (default: every folder's).
    """
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("reviews", "queue"), {"root": data_root, "limit": max(1, limit)})


def history(data_root: str, filename: str, url: str | None = None) -> list[dict[str, Any]]:
    """Every verdict on one painting, newest first, undone ones included (``undone_at``/``undone_by``).

    Raises:
        ReviewError: the painting has no verdicts and is not in the catalog of ``data_root`` (a typo,
            or another folder's painting: the message says which).
    """
    filename = _file_key(filename)
    params = {"root": data_root, "filename": filename}
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("reviews", "history"), params)
        if not rows and db.fetch_one(conn, db.sql("reviews", "painting"), params) is None:
            raise _missing_painting(conn, data_root, filename)
    return rows


def standing_review(data_root: str, filename: str, url: str | None = None) -> dict[str, Any] | None:
    """The painting's standing verdict (latest not undone, with ``orphaned`` and ``current``), or None."""
    with db.connect(url) as conn:
        return db.fetch_one(conn, db.sql("reviews", "active_review"),
                            {"root": data_root, "filename": _file_key(filename)})


def catalog_artists(data_root: str, url: str | None = None) -> list[str]:
    """The artists a painting of ``data_root`` may be relabelled to (its live paintings' artists)."""
    with db.connect(url) as conn:
        return [r["artist"] for r in db.fetch_dicts(conn, db.sql("reviews", "catalog_artists"), {"root": data_root})]

