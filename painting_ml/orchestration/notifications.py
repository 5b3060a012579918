"""Alerts: failure, success and promotion mails through Airflow's notifier mechanism.

Off unless ``PAINTING_ALERT_EMAIL`` names recipients. Mails go through the SMTP provider's
``SmtpNotifier`` and the Airflow connection ``PAINTING_ALERT_SMTP_CONN`` (``smtp_default``), which a
deployment sets like any connection, e.g. ``AIRFLOW_CONN_SMTP_DEFAULT='{"conn_type": "smtp", "host":
"mail.example.org", "port": 587, "login": "...", "password": "...", "extra": {"from_email":
"painting-ml@example.org"}}'``.

- every task's final failure: DAG, task, run, try and the error line;
- the DAG run's end: succeeded, or failed (including a ``dagrun_timeout``);
- every promotion decision: test accuracy, macro-F1, promoted or not and why.

The ``compose_*`` functions are pure (context in, subject and HTML out) and tested on their own.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from painting_ml.core.settings import Settings, get_settings

PREFIX = "[painting_ml]"


def error_line(exception: BaseException | str | None) -> str:
    """The exception as one line: its type and the first line of its message."""
    if exception is None:
        return "no exception recorded (killed, timed out or marked failed by hand; see the log)"
    if isinstance(exception, BaseException) and exception.__cause__ is not None \
            and type(exception).__name__ in ("AirflowFailException", "TaskFailed"):
        exception = exception.__cause__  # painting_ml's own error, re-raised only to skip the retries
    if isinstance(exception, str):
        text, name = exception, ""
    else:
        text, name = str(exception), type(exception).__name__
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{name}: {first}" if name and first else name or first


def _rows(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _run_id(context: dict[str, Any]) -> str:
    run = context.get("dag_run")
    return str(context.get("run_id") or getattr(run, "run_id", "?"))


def _dag_id(context: dict[str, Any]) -> str:
    ti, dag, run = context.get("ti"), context.get("dag"), context.get("dag_run")
    return str(getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(run, "dag_id", "?"))


def compose_task_failure(context: dict[str, Any]) -> tuple[str, str]:
    """Subject and body of a task failure: DAG, task (and map index), run, try, error line."""
    ti = context["ti"]
    task = ti.task_id + (f"[{ti.map_index}]" if getattr(ti, "map_index", -1) not in (-1, None) else "")
    line = error_line(context.get("exception"))
    subject = f"{PREFIX} {_dag_id(context)}.{task} failed in run {_run_id(context)}"
    rows = [("DAG", _dag_id(context)), ("Task", task), ("Run", _run_id(context)),
            ("Try", getattr(ti, "try_number", "?")), ("Error", line)]
    if getattr(ti, "log_url", None):
        rows.append(("Log", ti.log_url))
    return subject, f"<p>A painting_ml task failed and will not be retried.</p>{_rows(rows)}"


def compose_run_state(state: str):
    """A composer for the end of a DAG run (``succeeded`` or ``failed``)."""

    def compose(context: dict[str, Any]) -> tuple[str, str]:
        reason = context.get("reason") or ""
        subject = f"{PREFIX} {_dag_id(context)} run {_run_id(context)} {state}"
        rows = [("DAG", _dag_id(context)), ("Run", _run_id(context)), ("State", state)]
        if reason:
            rows.append(("Reason", reason))
        return subject, _rows(rows)

    return compose


def compose_promotion(context: dict[str, Any]) -> tuple[str, str]:
    """The promotion summary: the promote task's return value (decision, test accuracy, macro-F1)."""
    ti = context["ti"]
    decision = ti.xcom_pull(task_ids=ti.task_id) or {}
    return compose_promotion_summary(decision, _dag_id(context), _run_id(context))


def compose_promotion_summary(decision: dict[str, Any], dag_id: str, run_id: str) -> tuple[str, str]:
    def num(v):
        return "–" if v is None else f"{v:.4f}"

    verdict = "promoted to champion" if decision.get("promoted") else "not promoted"
    subject = (f"{PREFIX} run {decision.get('run_id', '?')} {verdict}: "
               f"test accuracy {num(decision.get('test_accuracy'))}, macro-F1 {num(decision.get('macro_f1'))}")
    rows = [("DAG", dag_id), ("Airflow run", run_id), ("Training run", decision.get("run_id", "?")),
            ("Decision", verdict), ("Test accuracy", num(decision.get("test_accuracy"))),
            ("Macro-F1", num(decision.get("macro_f1"))), ("Champion's macro-F1", num(decision.get("champion_f1"))),
            ("Champion run", decision.get("champion_run_id") or "none")]
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in decision.get("reasons") or [])
    return subject, f"{_rows(rows)}<ul>{reasons}</ul>"


@dataclass(frozen=True)
class Alerts:
    """Callbacks to hand to the DAG and its tasks; all empty when alerts are off."""

    task_failure: list = field(default_factory=list)
    run_success: list = field(default_factory=list)
    run_failure: list = field(default_factory=list)
    promotion: list = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.task_failure)


def alerts(settings: Settings | None = None) -> Alerts:
    """The deployment's alert callbacks (``PAINTING_ALERT_EMAIL`` and friends); off by default."""
    settings = settings or get_settings()
    if not settings.alert_email:
        return Alerts()
    from painting_ml.orchestration.mail import PaintingMail

    def mail(compose):
        return PaintingMail(compose, settings.alert_email, settings.alert_from, settings.alert_smtp_conn)

    return Alerts(task_failure=[mail(compose_task_failure)], run_success=[mail(compose_run_state("succeeded"))],
                  run_failure=[mail(compose_run_state("failed"))], promotion=[mail(compose_promotion)])
