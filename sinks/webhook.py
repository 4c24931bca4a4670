"""The webhook channel: alert notifications as signed JSON POSTs, retried, then dead-lettered.

A notification is made of a transition that a person should hear about:
entering Firing, NoData, or leaving Firing/Recovering for Normal ("resolved").
Pending and Recovering are not notified.

Request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <dedup_key>
    X-Riffle-Timestamp: <unix seconds>
    X-Riffle-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"version": 1, "dedup_key": "...", "status": "firing" | "resolved" | "nodata",
     "alert": <AlertTransition JSON>}

``dedup_key`` is the transition's ``transition_id``: stable across retries,
restarts and replays, so a receiver that remembers it sees each notification
once although delivery is at-least-once. A 2xx answer is success; 408, 429,
5xx, timeouts and connection errors are retried with exponential backoff and
jitter; other 4xx are not retried. A notification that is not delivered goes
to the dead-letter hook with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

import orjson
import redis
import structlog
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from config.errors import RiffleError
from operators.alerts import AlertTransition

log = structlog.get_logger(__name__)
SIGNATURE_HEADER = "X-Riffle-Signature"
TIMESTAMP_HEADER = "X-Riffle-Timestamp"


class WebhookError(RiffleError):
    """A webhook delivery failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class RetryableWebhookError(WebhookError):
    """A failure worth another attempt (timeout, refused, 408, 429, 5xx)."""


def status_of(t: AlertTransition) -> str | None:
    """The notification a transition makes (``firing``, ``resolved``, ``nodata``), or None."""
    if t.to_state == "firing" and t.from_state != "recovering":
        return "firing"
    if t.to_state == "nodata":
        return "nodata"
    if t.to_state == "normal" and t.from_state in ("firing", "recovering"):
        return "resolved"
    return None


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does: constant-time comparison of the signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


DeadLetterHook = Callable[[AlertTransition, str], None]


class WebhookChannel:
    """Posts notifications to one URL; :meth:`notify` never raises for a delivery failure.

    ``silenced`` (e.g. :meth:`sinks.silences.SilenceStore.mutes`) is asked before each
    send; a muted notification is dropped, not delayed.

    ``attempts`` bounds tries per notification; waits grow from ``backoff_s``
    (exponential with jitter, at most ``max_wait_s``).
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
        dead_letter: DeadLetterHook | None = None,
        silenced: Callable[[AlertTransition], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL is http:// or https://, not {url!r}")
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.dead_letter = dead_letter
        self.silenced = silenced
        self.clock = clock

    def body(self, t: AlertTransition, status: str) -> bytes:
        alert = orjson.loads(t.to_json())
        return orjson.dumps(
            {"version": 1, "dedup_key": t.transition_id, "status": status, "alert": alert}
        )

    def notify(self, items: Sequence[AlertTransition]) -> int:
        """Send each notifiable transition; returns how many were delivered."""
        delivered = 0
        for t in items:
            status = status_of(t)
            if status is None:
                continue
            if self.silenced is not None and self.silenced(t):
                log.info("webhook_silenced", dedup_key=t.transition_id)
                continue
            try:
                self._deliver(t, status)
                delivered += 1
            except WebhookError as exc:
                log.warning("webhook_dead_letter", dedup_key=t.transition_id, reason=str(exc))
                if self.dead_letter is not None:
                    self.dead_letter(t, str(exc))
        return delivered

    def _deliver(self, t: AlertTransition, status: str) -> None:
        body = self.body(t, status)
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableWebhookError),
            wait=wait_exponential_jitter(multiplier=self.backoff_s, max=self.max_wait_s),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._post(t.transition_id, body)

    def _post(self, dedup_key: str, body: bytes) -> None:
        timestamp = str(int(self.clock()))
        # The scheme is checked in __init__ (http or https only).
        request = urllib.request.Request(  # noqa: S310
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": dedup_key,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310
                reply.read()
        except urllib.error.HTTPError as exc:
            retry = exc.code in (408, 429) or exc.code >= 500
            kind = RetryableWebhookError if retry else WebhookError
            raise kind(f"{self.url} answered {exc.code}", retry) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RetryableWebhookError(f"{self.url} unreachable: {exc}", True) from exc


class RedisUndelivered:
    """Dead letters of a channel in the Redis hash ``{prefix}:alerts:undelivered``, keyed by
    dedup key (a second failure of the same notification replaces the first)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:alerts:undelivered"

    def __call__(self, t: AlertTransition, reason: str) -> None:
        record = {"reason": reason, "alert": orjson.loads(t.to_json())}
        self.client.hset(self.key, t.transition_id, orjson.dumps(record))

    def all(self) -> dict[str, dict[str, object]]:
        """Every undelivered notification by dedup key."""
        raw = self.client.hgetall(self.key)
        return {
            (k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()
        }
