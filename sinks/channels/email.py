"""The email channel: one plain-text message per notification over SMTP.

Subject ``[FIRING:2] group labels`` (``[RESOLVED:1] ...``); the body lists each
alert's status, annotations, value, start and labels. ``Message-ID`` is made of
the dedup key (``<dedup_key@riffle>``) and the key is repeated in
``X-Riffle-Dedup-Key``, so a re-sent notification is recognisable (mail clients
thread or drop a repeated Message-ID). Connection errors, timeouts and 4xx SMTP
replies are retryable; 5xx replies are not.

A report is one message: its title as subject, the text summary and the HTML
page as alternatives, its attachments (the PDF) attached, and the dashboard
link in both bodies; its ``Message-ID`` is a hash of its dedup key.
"""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Mapping, Sequence
from email.message import EmailMessage

from riffle.config.notifications import EmailConfig, resolve_env
from riffle.operators.notify.groups import Notification
from riffle.sinks.channels.base import ChannelError, ReportMessage


def render(note: Notification, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The message for one notification."""
    firing = sum(1 for a in note.alerts if a.active)
    count = firing or len(note.alerts)
    group = ", ".join(f"{k}={v}" for k, v in sorted(note.group_labels.items())) or "all alerts"
    msg = EmailMessage()
    msg["Subject"] = f"[{note.status.upper()}:{count}] {group}"[:900]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Message-ID"] = f"<{note.dedup_key}@riffle>"
    msg["X-Riffle-Dedup-Key"] = note.dedup_key
    lines = [f"{firing} firing, {len(note.alerts) - firing} resolved (receiver {note.receiver})"]
    if note.repeat:
        lines.append("A repeat: nothing changed since the last notification.")
    for a in note.alerts:
        lines += ["", f"{a.rule} is {a.status} ({a.severity})"]
        lines += [f"  {name}: {text}" for name, text in sorted(a.annotations.items())]
        lines += [f"  value: {a.value}", f"  since (event time, ms): {a.starts_at}", "  labels:"]
        lines += [f"    {k}={v}" for k, v in sorted(a.labels.items())]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def render_report(report: ReportMessage, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The message for one report."""
    msg = EmailMessage()
    msg["Subject"] = report.title[:900]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    # A report's key holds ':' and '@' (run id, receiver, channel): hashed, it is a valid id.
    digest = hashlib.sha256(report.dedup_key.encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<report-{digest}@riffle>"
    msg["X-Riffle-Dedup-Key"] = report.dedup_key
    link = f"\n\nOpen the dashboard: {report.link}\n" if report.link else "\n"
    msg.set_content(report.text.rstrip() + link)
    msg.add_alternative(report.html, subtype="html")
    for item in report.attachments:
        main, _, sub = item.content_type.partition("/")
        msg.add_attachment(item.data, maintype=main, subtype=sub, filename=item.filename)
    return msg


class EmailChannel:
    """Sends notifications and reports to fixed recipients through one SMTP server."""

    kind = "email"
    carries_reports = True

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        if not recipients:
            raise ValueError("an email channel needs at least one recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    @classmethod
    def from_config(cls, c: EmailConfig, environ: Mapping[str, str]) -> EmailChannel:
        return cls(
            c.host,
            c.port,
            c.sender,
            c.to,
            starttls=c.starttls,
            username=c.username,
            password=None if c.password_env is None else resolve_env(c.password_env, environ),
            timeout_s=c.timeout.total_seconds(),
            attempts=c.max_attempts,
            backoff_s=c.backoff.total_seconds(),
        )

    def send(self, note: Notification) -> None:
        self._send(render(note, self.sender, self.recipients))

    def send_report(self, report: ReportMessage) -> None:
        self._send(render_report(report, self.sender, self.recipients))

    def _send(self, msg: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            retry = 400 <= exc.smtp_code < 500
            raise ChannelError(f"smtp {exc.smtp_code} {exc.smtp_error!r}", retry) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise ChannelError(f"smtp {self.host}:{self.port} unreachable: {exc}", True) from exc
        except smtplib.SMTPException as exc:
            raise ChannelError(f"smtp: {exc}", False) from exc
