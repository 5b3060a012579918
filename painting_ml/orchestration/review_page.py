"""The label-review page of the Airflow UI: the audit's review queue and one page per flagged painting.

Mounted by :func:`painting_ml.orchestration.results_plugin.create_app` under ``/painting/review``:

* ``GET /review``: the queue by rank (thumbnail, catalog and suggested artist, label quality,
  orphaned badge, the standing verdict);
* ``GET /review/{audit_id}/{filename}``: the painting, the audit's evidence images (exemplars of
  both artists, Grad-CAM heatmaps: artifact-store keys in ``label_issues.evidence``, served only
  from under the audit's own prefix ``audits/<id>/``), the painting's verdicts, and three forms —
  keep, relabel (to the suggested or any catalog artist), unsure — with a note;
* ``POST /review/{audit_id}/{filename}/decide``: records the verdict (:func:`painting_ml.results.reviews.review`)
  and redirects to the queue; a verdict given meanwhile by someone else is shown instead (409).

Who may look: a logged-in Airflow user allowed to read ``painting_audit``'s runs. Who may act: a
user allowed to edit that DAG (``PUT``); others see the pages without forms, and their POSTs are
refused (403). Every form carries a CSRF token, an HMAC-SHA256 (keyed by Airflow's ``[api]
secret_key``) of the user's name and a random per-browser value kept in an HttpOnly, SameSite=Strict
cookie; a POST whose token does not match changes nothing (403). Every value from the database or
the user is HTML-escaped.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from painting_ml.core import db

#: The DAG whose permissions govern the review page (its runs are the audits).
AUDIT_DAG = "painting_audit"
CSRF_COOKIE = "painting_review_csrf"

_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1a202c}
table{border-collapse:collapse}
th,td{padding:.35rem .8rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#718096}
.badge{background:#fed7d7;color:#9b2c2c;border-radius:4px;padding:0 .4rem;font-size:.85em}
.ok{background:#c6f6d5;color:#276749;padding:.5rem;border-radius:4px}.warn{background:#fefcbf;padding:.5rem;border-radius:4px}
img.thumb{max-width:96px;max-height:96px}img.main{max-width:480px;max-height:480px}
.evidence img{max-width:160px;max-height:160px;margin:.2rem;border:1px solid #ddd}
form.act{display:inline-block;margin:.4rem 1rem .4rem 0;padding:.6rem;border:1px solid #ddd;border-radius:6px}
</style>"""


def _details() -> DagDetails:
    """``painting_audit``'s details as the auth manager expects them (its team, in multi-team mode)."""
    from airflow.configuration import conf

    team = None
    if conf.getboolean("core", "multi_team", fallback=False):
        from airflow.models.dag import DagModel

        team = DagModel.get_team_name(AUDIT_DAG)
    return DagDetails(id=AUDIT_DAG, team_name=team)


def read_audit_runs(user: GetUserDep) -> BaseUser:
    """Who may look: a logged-in user allowed to read ``painting_audit``'s runs (else 401/403)."""
    from airflow.api_fastapi.app import get_auth_manager

    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                                details=_details(), user=user):
        raise HTTPException(403, "Forbidden")
    return user


def may_act(user: BaseUser) -> bool:
    """Whether ``user`` may give verdicts: allowed to edit ``painting_audit`` (method PUT)."""
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_dag(method="PUT", details=_details(), user=user))


Reader = Annotated[BaseUser, Depends(read_audit_runs)]


def _csrf_key() -> bytes:
    from airflow.api_fastapi.auth.tokens import get_signing_key

    secret = get_signing_key("api", "secret_key")
    return hashlib.sha256(b"painting_ml review csrf\x00" + secret.encode()).digest()


def csrf_token(user_name: str, nonce: str) -> str:
    """The token the forms of ``user_name``'s browser (cookie value ``nonce``) carry."""
    return hmac.new(_csrf_key(), f"{user_name}\x00{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(user_name: str, nonce: str | None, token: str | None) -> bool:
    """Whether a POST's token is the one this user's browser was given (constant-time compare)."""
    if not nonce or not token:
        return False
    return hmac.compare_digest(csrf_token(user_name, nonce), token)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{_STYLE}</head>"
            f"<body>{body}</body></html>")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


class _Links:
    """URLs of the review pages under the plugin's prefix."""

    def __init__(self, prefix: str) -> None:
        self.base = f"{prefix}/review"

    def queue(self, **query: Any) -> str:
        query = {k: v for k, v in query.items() if v is not None}
        return self.base + (f"?{urlencode(query)}" if query else "")

    def painting(self, audit_id: int, filename: str, root: str, suffix: str = "") -> str:
        return f"{self.base}/{audit_id}/{quote(filename, safe='')}{suffix}?{urlencode({'root': root})}"

    def file(self, audit_id: int, key: str) -> str | None:
        prefix = f"audits/{audit_id}/"
        if not key.startswith(prefix):
            return None
        return f"{self.base}/{audit_id}/files/{quote(key[len(prefix):])}"


def _verdict_cell(r: dict[str, Any]) -> str:
    if not r.get("last_decision"):
        return '<span class="muted">none</span>'
    what = r["last_decision"] + (f" → {r['last_new_artist']}" if r.get("last_new_artist") else "")
    return f"{escape(what)} <span class='muted'>by {escape(r['last_reviewer'] or '')}</span>"


def render_queue(rows: list[dict[str, Any]], links: _Links, can_act: bool, notice: str = "") -> str:
    """The queue page: one row per flagged painting, by rank."""
    body = ["<h2>Label review</h2>"]
    if notice:
        body.append(f'<p class="ok">{escape(notice)}</p>')
    if not can_act:
        body.append('<p class="warn">Read-only: your role may look at the queue but not give verdicts '
                    f"(that needs permission to edit the {AUDIT_DAG} DAG).</p>")
    if not rows:
        body.append(f'<p class="muted">Nothing to review: no ranked audit flags a painting without a verdict. '
                    f"Trigger {AUDIT_DAG} (or run <code>painting-ml audit</code>).</p>")
    else:
        body.append("<table><thead><tr><th>rank</th><th>painting</th><th>file</th><th>catalog artist</th>"
                    "<th>suggested artist</th><th>label quality</th><th>verdict</th></tr></thead><tbody>")
        for r in rows:
            href = links.painting(r["audit_id"], r["filename"], r["data_root"])
            thumb = links.painting(r["audit_id"], r["filename"], r["data_root"], "/painting")
            orphan = ' <span class="badge">orphaned</span>' if r["orphaned"] else ""
            title = f"<br><span class='muted'>{escape(r['title'])}</span>" if r.get("title") else ""
            body.append(
                f'<tr class="issue" data-filename="{escape(r["filename"])}"><td class="num">{r["rank"]}</td>'
                f'<td><a href="{escape(href)}"><img class="thumb" loading="lazy" src="{escape(thumb)}" alt=""></a></td>'
                f'<td><a class="open" href="{escape(href)}">{escape(r["filename"])}</a>{orphan}{title}</td>'
                f'<td class="catalog">{escape(r["catalog_artist"])}</td>'
                f'<td class="suggested">{escape(r["suggested_artist"])}</td>'
                f'<td class="num">{_fmt(r["quality"])}</td><td class="verdict">{_verdict_cell(r)}</td></tr>')
        body.append("</tbody></table>")
    return _page("Label review", "".join(body))


def evidence_images(evidence: Any, audit_id: int, links: _Links) -> list[tuple[str, list[tuple[str, str]]]]:
    """The evidence's images as (section, [(url, caption)]): every artifact key under the audit's own
    prefix, found in ``label_issues.evidence`` (a section per top-level entry; an entry is a key, a
    list of keys, or objects with a ``key`` and optional ``filename``/``artist``/``caption``)."""
    out: list[tuple[str, list[tuple[str, str]]]] = []

    def walk(value: Any, caption: str, found: list[tuple[str, str]]) -> None:
        if isinstance(value, str):
            if (url := links.file(audit_id, value)) is not None and value.lower().endswith((".png", ".jpg", ".jpeg")):
                found.append((url, caption))
        elif isinstance(value, list):
            for v in value:
                walk(v, caption, found)
        elif isinstance(value, dict):
            if isinstance(value.get("key"), str):
                label = " · ".join(str(value[k]) for k in ("caption", "artist", "filename") if value.get(k))
                walk(value["key"], label or caption, found)
            else:
                for k, v in value.items():
                    walk(v, caption or str(k), found)

    if isinstance(evidence, dict):
        for section, value in evidence.items():
            found: list[tuple[str, str]] = []
            walk(value, "", found)
            if found:
                out.append((str(section).replace("_", " "), found))
    return out


def _verdict_text(r: dict[str, Any]) -> str:
    what = f"relabel to {r['new_artist']}" if r["decision"] == "relabel" else r["decision"]
    return f"{what} by {r['reviewer']} at {r['reviewed_at']:%Y-%m-%d %H:%M %Z}"


def render_painting(issue: dict[str, Any], standing: dict[str, Any] | None, history: list[dict[str, Any]],
                    artists: list[str], links: _Links, can_act: bool, token: str) -> str:
    """One flagged painting: the picture, the evidence, its verdicts and (for editors) the three forms."""
    audit, filename, root = issue["audit_id"], issue["filename"], issue["data_root"]
    body = [f'<p><a href="{escape(links.queue())}">← review queue</a></p>',
            f"<h2>{escape(filename)}{' — ' + escape(issue['title']) if issue.get('title') else ''}</h2>"]
    if issue["orphaned"]:
        body.append('<p><span class="badge">orphaned</span> this painting left its folder; its verdicts are kept.</p>')
    body.append(f'<p><img class="main" src="{escape(links.painting(audit, filename, root, "/painting"))}" alt=""></p>'
                f'<table><tr><th>catalog artist</th><td class="catalog">{escape(issue["catalog_artist"])}</td></tr>'
                f'<tr><th>suggested artist</th><td class="suggested">{escape(issue["suggested_artist"])}</td></tr>'
                f'<tr><th>label quality</th><td>{_fmt(issue["quality"])} (low: likely wrong)</td></tr>'
                f'<tr><th>rank</th><td>{issue["rank"] if issue["rank"] is not None else "not flagged"} '
                f'in audit {audit}</td></tr>'
                f'<tr><th>data folder</th><td>{escape(root)}</td></tr></table>')
    sections = evidence_images(issue.get("evidence"), audit, links)
    if sections:
        body.append('<h3>Evidence</h3><div class="evidence">')
        for section, images in sections:
            figures = "".join(f'<figure style="display:inline-block"><img src="{escape(url)}" alt="{escape(cap)}">'
                              f'<figcaption class="muted">{escape(cap)}</figcaption></figure>' for url, cap in images)
            body.append(f"<h4>{escape(section)}</h4>{figures}")
        body.append("</div>")
    else:
        body.append('<p class="muted">No evidence images for this painting in this audit.</p>')
    body.append("<h3>Verdict</h3>")
    body.append(f'<p class="standing">{escape(_verdict_text(standing))}'
                f'{" (on an earlier version of the file)" if not standing["current"] else ""}</p>'
                if standing else '<p class="standing muted">No verdict yet.</p>')
    if can_act:
        action = escape(links.painting(audit, filename, root, "/decide"))
        hidden = (f'<input type="hidden" name="csrf_token" value="{escape(token)}">'
                  f'<input type="hidden" name="seen_review_id" value="{standing["id"] if standing else ""}">')
        note = '<br><label>note <input name="note" size="40" maxlength="2000"></label>'
        options = [issue["suggested_artist"]] + [a for a in artists if a != issue["suggested_artist"]
                                                 and a != issue["catalog_artist"]]
        select = "".join(f'<option value="{escape(a)}">{escape(a)}</option>' for a in options)
        body.append(
            f'<form class="act" method="post" action="{action}">{hidden}<input type="hidden" name="decision" '
            f'value="keep"><button>Keep {escape(issue["catalog_artist"])}</button>{note}</form>'
            f'<form class="act" method="post" action="{action}">{hidden}<input type="hidden" name="decision" '
            f'value="relabel"><label>Relabel to <select name="new_artist">{select}</select></label> '
            f'<button>Relabel</button>{note}</form>'
            f'<form class="act" method="post" action="{action}">{hidden}<input type="hidden" name="decision" '
            f'value="unsure"><button>Unsure</button>{note}</form>')
    else:
        body.append(f'<p class="warn">Read-only: giving a verdict needs permission to edit the {AUDIT_DAG} DAG.</p>')
    if history:
        body.append("<h3>History</h3><table><tr><th>review</th><th>verdict</th><th>note</th><th>undone</th></tr>")
        for h in history:
            undone = f"by {h['undone_by']} at {h['undone_at']:%Y-%m-%d %H:%M}" if h["undone_at"] else ""
            body.append(f"<tr><td>{h['id']}</td><td>{escape(_verdict_text(h))}</td>"
                        f"<td class='note'>{escape(h['note'] or '')}</td><td>{escape(undone)}</td></tr>")
        body.append("</table>")
    return _page(f"Review {filename}", "".join(body))


def _message_page(status: int, title: str, text: str, back: str) -> HTMLResponse:
    return HTMLResponse(_page(title, f"<h2>{escape(title)}</h2><p class='message'>{escape(text)}</p>"
                                     f'<p><a href="{escape(back)}">back</a></p>'), status_code=status)


def _issue(audit_id: int, filename: str, root: str | None) -> dict[str, Any]:
    with db.connect() as conn:
        found = db.fetch_one(conn, db.sql("reviews", "issue"),
                             {"audit_id": audit_id, "filename": filename, "root": root})
    if found is None:
        raise HTTPException(404, f"audit {audit_id} did not judge a painting {filename!r}")
    return found


def add_review_routes(app: FastAPI, url_prefix: str, fetch_run_file: Callable[[str, str], Path | None]) -> None:
    """Add the review page's routes to the plugin's app (mounted at ``url_prefix``); ``fetch_run_file``
    brings a file of a store prefix to this host (the plugin's, passed in so this module does not import it)."""
    from painting_ml.results import reviews

    links = _Links(url_prefix)

    @app.get("/review", response_class=HTMLResponse)
    def review_queue(user: Reader, root: str | None = None, limit: int = 200, recorded: int | None = None) -> str:
        rows = reviews.queue(min(max(limit, 1), 1000), root)
        notice = ""
        if recorded is not None:
            with db.connect() as conn:
                row = db.fetch_one(conn, db.sql("reviews", "review_by_id"), {"id": recorded})
                copies = [] if row is None else reviews.copies_labelled_otherwise(
                    conn, row["data_root"], row["filename"], row["new_artist"] or row["catalog_artist"])
            if row is not None:
                notice = f"Recorded for {row['filename']}: {reviews.describe(row)}."
            if copies:
                notice += (" Its copies " + ", ".join(f"{c['filename']} ({c['artist']})" for c in copies)
                           + " carry another artist, so training leaves the group out until they agree.")
        return render_queue(rows, links, may_act(user), notice)

    @app.get("/review/{audit_id}/files/{path:path}", dependencies=[Depends(read_audit_runs)])
    def evidence_file(audit_id: int, path: str) -> FileResponse:
        target = fetch_run_file(f"audits/{audit_id}", path)
        if target is None:
            raise HTTPException(404, f"{path} is not a file of audit {audit_id}")
        return FileResponse(target)

    @app.get("/review/{audit_id}/{filename}/painting", dependencies=[Depends(read_audit_runs)])
    def painting_file(audit_id: int, filename: str, root: str | None = None) -> FileResponse:
        issue = _issue(audit_id, filename, root)
        if issue["path"] and Path(issue["path"]).is_file():
            return FileResponse(issue["path"])
        # Not on this host (the data folder is on the workers): the audit's copy, when it stored one.
        key = (issue.get("evidence") or {}).get("painting")
        target = (fetch_run_file(f"audits/{audit_id}", key.removeprefix(f"audits/{audit_id}/"))
                  if isinstance(key, str) and key.startswith(f"audits/{audit_id}/") else None)
        if target is None:
            raise HTTPException(404, f"the image of {filename} is not readable here")
        return FileResponse(target)

    @app.get("/review/{audit_id}/{filename}", response_class=HTMLResponse)
    def review_painting(request: Request, user: Reader, audit_id: int, filename: str,
                        root: str | None = None) -> Response:
        issue = _issue(audit_id, filename, root)
        standing = reviews.standing_review(issue["data_root"], filename)
        can_act = may_act(user)
        nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        page = render_painting(issue, standing, reviews.history(issue["data_root"], filename),
                               reviews.catalog_artists(issue["data_root"]), links, can_act,
                               csrf_token(user.get_name(), nonce) if can_act else "")
        response = HTMLResponse(page)
        if can_act and request.cookies.get(CSRF_COOKIE) != nonce:
            response.set_cookie(CSRF_COOKIE, nonce, path=links.base, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        return response

    @app.post("/review/{audit_id}/{filename}/decide")
    def decide(request: Request, user: Reader, audit_id: int, filename: str,
               decision: Annotated[str, Form()], token: Annotated[str, Form(alias="csrf_token")] = "",
               seen_review_id: Annotated[str, Form()] = "", new_artist: Annotated[str | None, Form()] = None,
               note: Annotated[str | None, Form()] = None, root: str | None = None) -> Response:
        back = links.painting(audit_id, filename, root or "")
        if not may_act(user):
            return _message_page(403, "Not allowed", f"Giving a verdict needs permission to edit the {AUDIT_DAG} "
                                                     "DAG; nothing was recorded.", back)
        if not csrf_ok(user.get_name(), request.cookies.get(CSRF_COOKIE), token):
            return _message_page(403, "Form expired", "The form's security token is missing or wrong (an old "
                                                      "page, or a request from another site); nothing was "
                                                      "recorded. Reload the painting's page and decide again.", back)
        issue = _issue(audit_id, filename, root)
        back = links.painting(audit_id, filename, issue["data_root"])
        try:
            seen = int(seen_review_id) if seen_review_id.strip() else None
        except ValueError:
            return _message_page(400, "Bad form", f"seen_review_id {seen_review_id!r} is not a review id", back)
        try:
            row = reviews.review(issue["data_root"], filename, decision, user.get_name(),
                                 new_artist=new_artist if decision == "relabel" else None, note=note,
                                 seen_review_id=seen, audit_id=audit_id)
        except reviews.ReviewConflict as exc:
            return _message_page(409, "Someone decided first", str(exc), back)
        except reviews.ReviewError as exc:
            return _message_page(400, "Not recorded", str(exc), back)
        return RedirectResponse(links.queue(recorded=row["id"]), status_code=303)
