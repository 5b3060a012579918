"""``painting-ml audit``'s command line: flags refused in one line, and what a resumed audit key
really ran (painting_ml.cli.audit; the audit itself is tests/test_audit.py)."""

from __future__ import annotations

import json

import pytest

from painting_ml.cli import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("argv", "says"), [
    (["--folds", "1"], "--folds: 1 is out of range; a fold count is 2 to 10"),
    (["--folds", "1000"], "--folds: 1000 is out of range"),
    (["--folds", "2.5"], "'2.5' is not a whole number"),
    (["--recipe", "bogus"], "invalid choice: 'bogus'"),
    (["--top", "0"], "--top: 0 is out of range"),
    (["--audit-key", "  "], "is blank; an audit key is some text"),
    (["--audit-key", ""], "--audit-key: '' is blank"),
])
def test_a_bad_flag_is_one_line_and_status_2(argv, says, capsys):
    assert main(["audit", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and says in err and "Traceback" not in err


def _fake_audit(monkeypatch, folds: int, recipe: str, weights: str | None = "imagenet") -> dict:
    """``audit_all`` and ``audit_info`` as a resumed audit that began with ``folds`` and ``recipe``."""
    import painting_ml.learn.audit
    import painting_ml.pipeline

    calls: dict = {}

    def audit_all(cfg, folds, recipe, audit_key, top):
        calls.update(folds=folds, recipe=recipe, audit_key=audit_key)
        return {"audit_id": 7, "audit_key": audit_key, "audited": 40, "flagged": 3, "seconds_per_fold": 1.5,
                "summary": {}, "top_issues": [], "report": "audits/7/report.html"}

    monkeypatch.setattr(painting_ml.pipeline, "audit_all", audit_all)
    monkeypatch.setattr(painting_ml.learn.audit, "audit_info",
                        lambda audit_id: {"folds": folds, "recipe": recipe, "config": {"weights": weights}})
    return calls


def test_a_resumed_key_reports_the_folds_and_recipe_it_kept(monkeypatch, capsys, tmp_path):
    _fake_audit(monkeypatch, folds=3, recipe="full")
    argv = ["audit", "--data-dir", str(tmp_path), "--preset", "cpu", "--audit-key", " k1 "]
    assert main([*argv, "--folds", "2", "--recipe", "head"]) == 0
    captured = capsys.readouterr()
    assert "flagged by 3 out-of-fold models (recipe full, 1.5 s" in captured.out
    assert "painting-ml review list" in captured.out
    assert captured.err.strip() == ("painting-ml audit: audit k1 began with --folds 3 --recipe full and kept them "
                                    "(not --folds 2 --recipe head); a new --audit-key starts an audit with new ones")
    assert main([*argv, "--folds", "2", "--recipe", "head", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["audit_key"], out["folds"], out["recipe"]) == ("k1", 3, "full")
    assert main([*argv, "--folds", "3", "--recipe", "full"]) == 0
    assert capsys.readouterr().err == ""  # the flags it began with: nothing to say


def test_the_list_shows_each_audits_data_folder(monkeypatch, capsys):
    import painting_ml.results.label_issues

    row = {"id": 2, "audit_key": "k", "status": "ranked", "data_root": "/data/a", "folds": 3, "recipe": "full",
           "audited": 40, "flagged": 3, "started_at": None, "finished_at": None}
    monkeypatch.setattr(painting_ml.results.label_issues, "recent_audits", lambda top: [row])
    assert main(["audit", "--list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["data_root"] == "/data/a"


def test_a_head_audit_on_a_backbone_without_weights_says_its_flags_mean_little(monkeypatch, capsys, tmp_path):
    _fake_audit(monkeypatch, folds=2, recipe="head", weights=None)
    assert main(["audit", "--data-dir", str(tmp_path), "--preset", "cpu", "--folds", "2"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("painting-ml audit: recipe head froze a backbone without weights") and "\n" not in err
    assert "--recipe full" in err
