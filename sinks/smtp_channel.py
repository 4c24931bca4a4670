"""The email channel: one plain-text message per notification over SMTP.

Notifications are the same as the webhook's (:func:`sinks.webhook.status_of`):
firing, nodata and resolved. Each message's ``Message-ID`` is made of the
transition's dedup key (``<transition_id@riffle>``) and the key is repeated in
``X-Riffle-Dedup-Key``, so a re-sent notification is recognisable. Connection
errors, timeouts and 4xx SMTP replies are retried with exponential backoff;
then the notification goes to the dead-letter hook. Silences are asked first.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Sequence
from email.message import EmailMessage

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from operators.alerts import AlertTransition
from sinks.webhook import DeadLetterHook, status_of

log = structlog.get_logger(__name__)


class RetryableSmtpError(Exception):
    """An SMTP failure worth another attempt."""


def render(t: AlertTransition, status: str, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The message for one notification."""
    labels = dict(t.labels)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname",))
    msg = EmailMessage()
    msg["Subject"] = f"[{status.upper()}] {t.rule} ({t.severity}) {shown}"[:900]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Message-ID"] = f"<{t.transition_id}@riffle>"
    msg["X-Riffle-Dedup-Key"] = t.transition_id
    lines = [f"{t.rule} is {status} ({t.from_state} -> {t.to_state})", ""]
    lines += [f"{name}: {text}" for name, text in t.annotations]
    lines += ["", f"value: {t.value}", f"event time (ms): {t.at}", "", "labels:"]
    lines += [f"  {k}={v}" for k, v in sorted(labels.items())]
    msg.set_content("\n".join(lines) + "\n")
    return msg


class EmailChannel:
    """Sends notifications to fixed recipients through one SMTP server."""

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
        dead_letter: DeadLetterHook | None = None,
        silenced: Callable[[AlertTransition], bool] | None = None,
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
        self.dead_letter = dead_letter
        self.silenced = silenced

    def notify(self, items: Sequence[AlertTransition]) -> int:
        """Send each notifiable, unsilenced transition; returns how many were accepted."""
        sent = 0
        for t in items:
            status = status_of(t)
            if status is None or (self.silenced is not None and self.silenced(t)):
                continue
            msg = render(t, status, self.sender, self.recipients)
            try:
                for attempt in Retrying(
                    retry=retry_if_exception_type(RetryableSmtpError),
                    wait=wait_exponential_jitter(multiplier=self.backoff_s, max=30),
                    stop=stop_after_attempt(self.attempts),
                    reraise=True,
                ):
                    with attempt:
                        self._send(msg)
                sent += 1
            except (RetryableSmtpError, smtplib.SMTPException) as exc:
                log.warning("email_dead_letter", dedup_key=t.transition_id, reason=str(exc))
                if self.dead_letter is not None:
                    self.dead_letter(t, f"smtp: {exc}")
        return sent

    def _send(self, msg: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise RetryableSmtpError(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise RetryableSmtpError(f"{self.host}:{self.port} unreachable: {exc}") from exc
