"""The label-review page of the Airflow UI plugin, through its FastAPI app with Airflow's own auth:
the SimpleAuthManager's roles and real JWT session cookies (only the revocation list, which lives in
Airflow's metadata database, is an empty stand-in). Who may look and who may act, CSRF, escaping,
conflicts, and the files it serves."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import stored
from tests.test_reviews import flag_paintings

pytestmark = pytest.mark.db

SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@pytest.fixture
def airflow_auth(monkeypatch):
    """Airflow's SimpleAuthManager as the api-server would have it, and a session cookie per role."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "j" * 64)
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "s" * 32)
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    monkeypatch.setattr("airflow.models.revoked_token.RevokedToken.is_revoked",
                        classmethod(lambda cls, jti, **_: False))
    manager = airflow_app.create_auth_manager()

    def session(name: str, role: str) -> dict[str, str]:
        return {"_token": manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))}

    return session


@pytest.fixture
def site(clean_db, tiny_data, airflow_auth):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from painting_ml.orchestration.results_plugin import create_app
    from tests.conftest import using_database

    with using_database(clean_db):
        flagged = flag_paintings(clean_db, tiny_data)
        api_server = FastAPI()
        api_server.mount("/painting", create_app())  # as Airflow mounts a plugin's app

        def client(name: str | None = None, role: str = "user") -> TestClient:
            c = TestClient(api_server, follow_redirects=False)
            if name:
                c.cookies.update(airflow_auth(name, role))
            return c

        yield {**flagged, "url": clean_db, "client": client}


def page_of(site, filename: str) -> str:
    return f"/painting/review/{site['audit']}/{filename}?root={site['root']}"


def reviews_in(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT filename, decision, new_artist, reviewer, note FROM label_reviews "
                            "ORDER BY id").fetchall()


def form_of(html: str, decision: str) -> dict[str, str]:
    """The hidden fields of the page's ``decision`` form, as a browser would send them."""
    form = next(f for f in re.findall(r"<form .*?</form>", html, re.S) if f'name="decision" value="{decision}"' in f)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    if decision == "relabel":
        fields["new_artist"] = re.search(r'<option value="([^"]*)"', form).group(1)
    return fields


def test_without_a_session_a_browser_goes_to_login_and_an_api_client_gets_401(site):
    anonymous = site["client"]()
    got = anonymous.get("/painting/review", headers={"Accept": "text/html"})
    assert got.status_code == 303 and "/login" in got.headers["location"] and "next=" in got.headers["location"]
    assert anonymous.get("/painting/review", headers={"Accept": "application/json"}).status_code == 401
    a = site["files"][0]
    assert anonymous.post(page_of(site, a).replace("?", "/decide?"), data={"decision": "keep"}).status_code == 401
    assert reviews_in(site["url"]) == []


def test_a_viewer_sees_the_queue_without_forms_and_cannot_act(site):
    viewer, editor = site["client"]("vera", "viewer"), site["client"]("ed", "user")
    queue = viewer.get("/painting/review")
    assert queue.status_code == 200 and "Read-only" in queue.text and "<form" not in queue.text
    assert all(f in queue.text for f in site["files"])
    a = site["files"][0]
    page = viewer.get(page_of(site, a))
    assert page.status_code == 200 and "<form" not in page.text and site["suggested_of"][a] in page.text
    # Even with a valid token (an editor's, with the editor's cookie) the viewer's POST is refused.
    fields = form_of(editor.get(page_of(site, a)).text, "keep")
    viewer.cookies.update({"painting_review_csrf": editor.cookies.get("painting_review_csrf")})
    refused = viewer.post(page_of(site, a).replace("?", "/decide?"), data=fields)
    assert refused.status_code == 403 and "nothing was recorded" in refused.text
    assert reviews_in(site["url"]) == []


def test_an_editor_keeps_and_relabels_post_redirect_get(site):
    editor = site["client"]("ed", "user")
    a, b = site["files"][:2]
    page = editor.get(page_of(site, a))
    cookie = page.headers["set-cookie"].lower()
    assert page.status_code == 200 and page.text.count("<form") == 3 and "painting_review_csrf" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie
    done = editor.post(page_of(site, a).replace("?", "/decide?"), data={**form_of(page.text, "keep"), "note": "fine"})
    assert done.status_code == 303 and done.headers["location"] == "/painting/review?recorded=1"
    after = editor.get(done.headers["location"])
    assert "Recorded for" in after.text and "keep by ed" in after.text
    assert f'data-filename="{a}"' not in after.text  # settled: out of the queue
    fields = form_of(editor.get(page_of(site, b)).text, "relabel")
    assert fields["new_artist"] == site["suggested_of"][b]  # the suggestion comes first
    assert editor.post(page_of(site, b).replace("?", "/decide?"), data=fields).status_code == 303
    assert reviews_in(site["url"]) == [(a, "keep", None, "ed", "fine"),
                                       (b, "relabel", site["suggested_of"][b], "ed", None)]
    # The painting and its history show the verdict; the image is served.
    page = editor.get(page_of(site, b))
    assert f"relabel to {site['suggested_of'][b]} by ed" in page.text
    image = editor.get(page_of(site, b).replace("?", "/painting?"))
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


@pytest.mark.parametrize("forge", ["missing", "wrong", "no_cookie", "other_users_token"])
def test_a_forged_or_missing_csrf_token_changes_nothing(site, forge):
    editor, other = site["client"]("ed", "user"), site["client"]("mallory", "admin")
    a = site["files"][0]
    fields = form_of(editor.get(page_of(site, a)).text, "keep")
    if forge == "missing":
        fields.pop("csrf_token")
    elif forge == "wrong":
        fields["csrf_token"] = "0" * 64
    elif forge == "no_cookie":  # the same user's session in a browser that never got the form's cookie
        editor = site["client"]("ed", "user")
    else:  # mallory's own valid token replayed with ed's session
        fields["csrf_token"] = form_of(other.get(page_of(site, a)).text, "keep")["csrf_token"]
    got = editor.post(page_of(site, a).replace("?", "/decide?"), data=fields)
    assert got.status_code == 403 and "security token" in got.text
    assert reviews_in(site["url"]) == []


def test_html_in_artist_names_titles_and_notes_is_escaped(site):
    evil = "<script>alert(1)</script>"
    a = site["files"][0]
    with psycopg.connect(site["url"]) as conn:
        conn.execute("UPDATE paintings SET artist = %s WHERE data_root = %s AND artist = %s",
                     (evil, site["root"], site["suggested_of"][a]))
        conn.execute("UPDATE label_issues SET suggested_artist = %s WHERE suggested_artist = %s",
                     (evil, site["suggested_of"][a]))
        conn.execute("UPDATE paintings SET title = %s WHERE filename = %s", ('"><img src=x onerror=alert(2)>', a))
    editor = site["client"]("ed", "user")
    page = editor.get(page_of(site, a)).text
    fields = form_of(page, "relabel")
    assert fields["new_artist"] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    fields["new_artist"] = evil  # what the browser sends back (unescaped)
    assert editor.post(page_of(site, a).replace("?", "/decide?"), data={**fields, "note": evil}).status_code == 303
    for html in (editor.get("/painting/review").text, editor.get(page_of(site, a)).text):
        assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in editor.get(page_of(site, a)).text
    assert reviews_in(site["url"]) == [(a, "relabel", evil, "ed", evil)]


def test_the_second_curator_sees_the_first_verdict(site):
    alice, bob = site["client"]("alice", "user"), site["client"]("bob", "op")
    a = site["files"][0]
    keep = form_of(alice.get(page_of(site, a)).text, "keep")
    relabel = form_of(bob.get(page_of(site, a)).text, "relabel")  # bob's page: no verdict yet
    assert alice.post(page_of(site, a).replace("?", "/decide?"), data=keep).status_code == 303
    late = bob.post(page_of(site, a).replace("?", "/decide?"), data=relabel)
    assert late.status_code == 409 and "keep by alice" in late.text
    assert [r[3] for r in reviews_in(site["url"])] == ["alice"]
    # Outside the catalog (a forged option): refused with one line, nothing written.
    relabel = form_of(bob.get(page_of(site, a)).text, "relabel")
    bad = bob.post(page_of(site, a).replace("?", "/decide?"), data={**relabel, "new_artist": "Nobody"})
    assert bad.status_code == 400 and "artist of the catalog" in bad.text and len(reviews_in(site["url"])) == 1


def test_evidence_images_come_only_from_the_audits_own_prefix(site):
    a = site["files"][0]
    audit = site["audit"]
    key = f"audits/{audit}/evidence/{a}.png"
    path = stored(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    secret = stored("runs/1/secret.png")
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"s")
    with psycopg.connect(site["url"]) as conn:
        conn.execute("UPDATE label_issues SET evidence = %s WHERE filename = %s",
                     (Jsonb({"exemplars_of_catalog_artist": [{"key": key, "artist": "<i>x</i>"}],
                             "elsewhere": ["runs/1/secret.png"]}), a))
    viewer = site["client"]("vera", "viewer")
    page = viewer.get(page_of(site, a)).text
    assert f'src="/painting/review/{audit}/files/evidence/{a}.png"' in page and "secret" not in page
    assert "exemplars of catalog artist" in page and "&lt;i&gt;x&lt;/i&gt;" in page
    assert viewer.get(f"/painting/review/{audit}/files/evidence/{a}.png").status_code == 200
    for bad in ("../../runs/1/secret.png", "%2e%2e/%2e%2e/runs/1/secret.png", "evidence/missing.png"):
        assert viewer.get(f"/painting/review/{audit}/files/{bad}").status_code == 404


@pytest.mark.unit
def test_the_plugin_adds_the_label_review_view_and_routes():
    from painting_ml.orchestration.results_plugin import PaintingResultsPlugin

    views = {v["name"]: v for v in PaintingResultsPlugin.external_views}
    assert views["Label review"]["href"] == "/painting/review" and views["Label review"]["destination"] == "nav"
    routes = {r.path for r in PaintingResultsPlugin.fastapi_apps[0]["app"].routes}
    assert {"/review", "/review/{audit_id}/{filename}", "/review/{audit_id}/{filename}/decide"} <= routes
