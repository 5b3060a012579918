"""The SMTP notifier of painting_ml's alerts (imported only when alerts are on: the provider costs
~0.4 s of DAG-parse time)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier


class PaintingMail(SmtpNotifier):
    """Airflow's ``SmtpNotifier`` with subject and body composed in Python from the callback context
    (``compose(context) -> (subject, html)``): an error message is quoted as text, never rendered as
    a Jinja template, and nothing needs the DAG's template environment (a DAG-level callback may
    get the serialized DAG, which has none). Server, login and sender come from the Airflow
    connection; ``from_email`` overrides the connection's sender."""

    def __init__(self, compose: Callable[[dict[str, Any]], tuple[str, str]], to: Iterable[str],
                 from_email: str | None, smtp_conn_id: str):
        super().__init__(to=list(to), from_email=from_email, smtp_conn_id=smtp_conn_id, subject="", html_content="")
        self.compose = compose

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Nothing to render: recipients, sender and connection id are plain deployment settings."""

    def notify(self, context):
        subject, html = self.compose(context)
        with self.hook as smtp:
            sender = self.from_email or smtp.from_email
            if not sender:
                raise ValueError(f"no sender for painting_ml alerts: set PAINTING_ALERT_FROM or the from_email extra "
                                 f"of the Airflow connection {self.smtp_conn_id!r}")
            smtp.send_email_smtp(smtp_conn_id=self.smtp_conn_id, from_email=sender, to=self.to, subject=subject,
                                 html_content=html, mime_subtype=self.mime_subtype, mime_charset=self.mime_charset)
