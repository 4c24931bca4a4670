"""``POST /v1/events``: the HTTP front door for producers.

A body is one JSON event, a JSON array of events, or NDJSON (one event per
line, ``Content-Type: application/x-ndjson``), optionally gzip-compressed.
Each event is checked like the dataflow checks it (envelope, spec event
types, the schema registry) and answered individually: accepted events are
handed to the broker with the caller's tenant in the ``riffle-tenant``
header; rejected ones become dead letters with every broken rule. ``200``
means the broker confirmed every accepted event; a failed or unconfirmed
delivery makes the whole answer ``503`` with per-event statuses, so nothing
is half-accepted silently.

With an ``Idempotency-Key`` header the answer is kept (per tenant, in Redis,
``RIFFLE_INGEST_IDEMPOTENCY_TTL_SECONDS``): a retry with the same key and body
gets it back and publishes nothing again, except the events whose delivery
failed, which it publishes under the ids the first answer gave them. The same
key with another body is a ``422``; a retry while the first request is still
working is a ``409``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
import zlib
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field

from riffle.api.auth import CollectDep, admit
from riffle.api.bodies import ErrorResponse
from riffle.api.collect import Collect
from riffle.api.deps import IngestCaller, Spec
from riffle.api.errors import ApiError
from riffle.api.publisher import OutMessage, PublishUnavailableError
from riffle.config.spec import PipelineSpec
from riffle.operators.envelope import EnvelopeError, check
from riffle.operators.records import DeadLetter, FailureType, FieldIssue
from riffle.operators.schemas import EventValidator
from riffle.sinks.redis.idempotency import IdempotentAnswer
from riffle.sinks.topics.deadletters import FAILURE_HEADER

MAX_EVENT_BYTES = 1_000_000
"""Largest single event (Kafka's default message size limit, with room for headers)."""
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
MAX_IDEMPOTENCY_KEY = 255
SOURCE = "http"

router = APIRouter(prefix="/v1", tags=["ingest"])


class IssueOut(BaseModel):
    """One broken rule: where, which rule, and a message for people."""

    path: str = Field(examples=["props.amount"])
    rule: str = Field(examples=["type"])
    message: str


class EventResult(BaseModel):
    """What happened to one event of the body."""

    index: int = Field(
        description="Position in the body (array index or NDJSON line among events)."
    )
    event_id: str | None = Field(
        None, description="The event's id; assigned when it had none; absent when unreadable."
    )
    status: Literal["accepted", "queued", "rejected", "failed"]
    failure_type: FailureType | None = None
    schema_: str | None = Field(
        None, alias="schema", description="Schema version validated against."
    )
    errors: list[IssueOut] = Field(default_factory=list)
    dead_letter_id: str | None = None

    model_config = {"populate_by_name": True}


class IngestResponse(BaseModel):
    """Per-event results and their counts."""

    accepted: int
    rejected: int
    failed: int
    results: list[EventResult]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": IngestResponse, "description": "`?wait=false`: queued, not yet confirmed."},
    400: {"model": ErrorResponse, "description": "Body is not JSON/NDJSON, bad gzip, or empty."},
    401: {"model": ErrorResponse, "description": "Missing, unknown, revoked or expired key."},
    403: {"model": ErrorResponse, "description": "The key lacks scope `ingest`."},
    409: {
        "model": ErrorResponse,
        "description": "A request with this `Idempotency-Key` is still being processed.",
    },
    413: {"model": ErrorResponse, "description": "Body over the limit after decompression."},
    415: {"model": ErrorResponse, "description": "Unsupported Content-Encoding."},
    422: {
        "model": ErrorResponse,
        "description": "More events than one request may carry, or an `Idempotency-Key` "
        "already used with another body.",
    },
    429: {"model": ErrorResponse, "description": "Rate limit of the key or tenant exceeded."},
    503: {
        "model": IngestResponse,
        "description": "The broker did not confirm every accepted event (see results); retry.",
    },
}


@router.post(
    "/events",
    operation_id="ingestEvents",
    summary="Send events: one, a JSON array, or NDJSON; optionally gzip",
    response_model=IngestResponse,
    responses=_RESPONSES,
)
async def ingest_events(
    request: Request,
    app: CollectDep,
    spec: Spec,
    caller: IngestCaller,
    wait: bool = Query(True, description="Wait for broker confirmation (200) or not (202)."),
    idempotency_key: str | None = Header(
        None,
        max_length=MAX_IDEMPOTENCY_KEY,
        description="Any unique string per request (a UUID): a retry with the same key and "
        "body gets the first answer back and publishes nothing again.",
    ),
) -> Response:
    """Validate each event, publish the accepted ones, dead-letter the rest."""
    settings = app.settings
    try:
        body = await _read_body(request, settings.ingest_max_body_bytes)
    except ApiError:
        admit(request, app, caller, None)  # a refused body costs a request (429 first)
        raise
    content_type = request.headers.get("content-type", "")
    raws = _split(body, content_type)
    if raws is None:
        who = admit(request, app, caller, None)
        letter = _letter(
            who.tenant, body, "parse", (("$", "json", "the body is not JSON"),), None, None
        )
        app.recorder.record([letter])
        raise ApiError(400, "invalid_json", "the body is not valid JSON (or NDJSON)")
    if not raws:
        admit(request, app, caller, None)
        raise ApiError(400, "empty_body", "the body holds no events")
    if len(raws) > settings.ingest_max_events:
        admit(request, app, caller, None)
        raise ApiError(
            422,
            "too_many_events",
            f"{len(raws)} events in one request; at most {settings.ingest_max_events}",
        )
    # The request and its events are charged in one round trip with the key's check.
    who = admit(request, app, caller, len(raws))
    if idempotency_key is not None:
        fingerprint = _fingerprint(body, content_type, wait)
        return await _idempotent(app, spec, raws, who.tenant, idempotency_key, fingerprint, wait)
    checked = [judge(raw, value, app.schemas.validator, spec, who.tenant) for raw, value in raws]
    return _answer(app, await deliver(app, checked, who.tenant, wait=wait), wait)


def _fingerprint(body: bytes, content_type: str, wait: bool) -> str:
    """What makes two requests the same request: the (inflated) body, its media type, ``wait``."""
    media = content_type.split(";", 1)[0].strip().lower()
    return hashlib.sha256(b"%s\0%d\0%s" % (media.encode(), wait, body)).hexdigest()


async def _idempotent(
    app: Collect,
    spec: PipelineSpec,
    raws: list[tuple[bytes | None, Any]],
    tenant: str,
    key: str,
    fingerprint: str,
    wait: bool,
) -> Response:
    """Answer a request with an ``Idempotency-Key``: the kept answer, or the events still
    to publish (all the first time; the ``failed`` ones on a retry), then keep the answer."""
    store = app.idempotency
    token = store.claim(tenant, key)
    if token is None:
        _same_body(store.get(tenant, key), fingerprint)
        raise ApiError(
            409,
            "request_in_progress",
            "a request with this Idempotency-Key is still being processed; retry when it ends",
            headers={"Retry-After": "1"},
        )
    try:
        kept = store.get(tenant, key)
        _same_body(kept, fingerprint)
        previous = list(kept.results) if kept else None
        if previous is not None and all(r["status"] != "failed" for r in previous):
            return _answer(app, previous, wait, replayed=True)
        todo = [
            i for i in range(len(raws)) if previous is None or previous[i]["status"] == "failed"
        ]
        checked = [
            judge(
                *raws[i],
                app.schemas.validator,
                spec,
                tenant,
                event_id=None if previous is None else previous[i].get("event_id"),
            )
            for i in todo
        ]
        fresh = await deliver(app, checked, tenant, wait=wait)
        results = fresh
        if previous is not None:  # merge the retried events into the kept answer
            results = list(previous)
            for index, result in zip(todo, fresh, strict=True):
                results[index] = {**result, "index": index}
        store.put(tenant, key, IdempotentAnswer(fingerprint, results))
        return _answer(app, results, wait, replayed=previous is not None)
    finally:
        store.release(tenant, key, token)


def _same_body(kept: IdempotentAnswer | None, fingerprint: str) -> None:
    """Refuse a key already used with another body (422)."""
    if kept is not None and kept.fingerprint != fingerprint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another body; use a new key for a new request",
        )


class Checked:
    """One event after the checks: an accepted message or a dead letter."""

    __slots__ = ("event_id", "letter", "schema", "value")

    def __init__(
        self,
        event_id: str | None,
        value: bytes | None,
        letter: DeadLetter | None,
        schema: str | None,
    ) -> None:
        self.event_id = event_id
        self.value = value
        self.letter = letter
        self.schema = schema


def judge(
    raw: bytes | None,
    event: Any,
    validator: EventValidator,
    spec: PipelineSpec,
    tenant: str,
    *,
    source: str = SOURCE,
    event_id: str | None = None,
) -> Checked:
    """Check one decoded event as the dataflow would; assign an id when it has none.

    ``raw`` is the event's bytes as received, kept by its dead letter; ``None``
    stands for the event's own JSON (an element of a JSON array), encoded only
    if it is rejected, without the id assigned here.
    """
    if event is UNPARSED:
        issues: tuple[FieldIssue, ...] = (("$", "json", "not valid JSON"),)
        return Checked(
            None, None, _letter(tenant, raw or b"", "parse", issues, None, None, source), None
        )
    assigned_here = type(event) is dict and "event_id" not in event
    if assigned_here:
        event["event_id"] = event_id or uuid.uuid4().hex
    given_id = event.get("event_id") if type(event) is dict else None
    assigned = given_id if type(given_id) is str else None
    event_type = event.get("type") if type(event) is dict else None
    event_type = event_type if type(event_type) is str else None
    try:
        check(event)
        if event_type not in spec.event_types:
            known = ", ".join(spec.event_types)
            raise EnvelopeError(
                "unknown_type", "type", f"unknown event type {event_type!r} (known: {known})"
            )
        schema, found = validator.validate(event)
        if found:
            raise EnvelopeError("schema", found[0][0], found[0][2], tuple(found))
        value = orjson.dumps(event)
        if len(value) > MAX_EVENT_BYTES:
            raise EnvelopeError(
                "size", "$", f"the event is {len(value)} bytes; at most {MAX_EVENT_BYTES}"
            )
    except EnvelopeError as exc:
        if raw is None:
            received = (
                {k: v for k, v in event.items() if k != "event_id"} if assigned_here else event
            )
            raw = orjson.dumps(received)
        letter = _letter(tenant, raw, exc.failure_type, exc.issues, event_type, assigned, source)
        return Checked(assigned, None, letter, None)
    return Checked(assigned, value, None, schema)


async def deliver(
    app: Collect, checked: list[Checked], tenant: str, *, wait: bool
) -> list[dict[str, Any]]:
    """Publish accepted events and record dead letters; the per-event results, each an
    :class:`EventResult` as JSON (by alias, without ``None`` fields)."""
    settings = app.settings
    messages = [
        OutMessage(settings.events_topic, item.event_id.encode(), item.value, tenant)
        for item in checked
        if item.value is not None and item.event_id is not None
    ]
    letters = [item.letter for item in checked if item.letter is not None]
    app.recorder.record(letters)
    dead_messages = [
        OutMessage(
            settings.deadletter_topic,
            tenant.encode(),
            letter.to_json(),
            tenant,
            ((FAILURE_HEADER, letter.failure_type.encode()),),
        )
        for letter in letters
    ]
    outcome: list[str | None] = []
    dead_publisher = app.dead_publisher if dead_messages else None
    try:
        # Events and their batch's dead letters travel together; both are awaited.
        outcome, _ = await asyncio.gather(
            app.publisher.publish(messages, wait=wait) if messages else _nothing(),
            dead_publisher.publish(dead_messages, wait=wait) if dead_publisher else _nothing(),
        )
    except PublishUnavailableError as exc:
        outcome = [str(exc)] * len(messages)
    results: list[dict[str, Any]] = []
    delivered = iter(outcome)
    for index, item in enumerate(checked):
        # Each result is an EventResult as dumped by alias without Nones, built directly:
        # a pydantic model per event cost more than the event's checks.
        result: dict[str, Any] = {"index": index}
        if item.event_id is not None:
            result["event_id"] = item.event_id
        letter = item.letter
        if letter is not None:
            result["status"] = "rejected"
            result["failure_type"] = letter.failure_type
            result["errors"] = [{"path": p, "rule": r, "message": m} for p, r, m in letter.issues]
            result["dead_letter_id"] = letter.letter_id
            results.append(result)
            continue
        error = next(delivered, "not published")
        if error is None:
            result["status"] = "accepted" if wait else "queued"
            errors: list[dict[str, str]] = []
        else:
            result["status"] = "failed"
            errors = [{"path": "$", "rule": "delivery", "message": error}]
        if item.schema is not None:
            result["schema"] = item.schema
        result["errors"] = errors
        results.append(result)
    return results


def _answer(
    app: Collect, results: list[dict[str, Any]], wait: bool, *, replayed: bool = False
) -> Response:
    """The response for ``results``: ``503`` while any failed, else ``200`` (``202`` queued).

    ``replayed`` (a retry with an ``Idempotency-Key``) adds ``Idempotent-Replayed: true``."""
    count = {"accepted": 0, "queued": 0, "rejected": 0, "failed": 0}
    for result in results:
        count[result["status"]] += 1
    body: dict[str, Any] = {
        "accepted": count["accepted"] + count["queued"],
        "rejected": count["rejected"],
        "failed": count["failed"],
        "results": results,
    }
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    status = 200 if wait else 202
    if count["failed"]:
        body["error"] = {
            "code": "broker_unavailable",
            "message": f"{count['failed']} event(s) were not confirmed by the broker; retry them",
        }
        headers["Retry-After"] = str(app.settings.ingest_retry_after_seconds)
        status = 503
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


UNPARSED = object()
"""Stands for an NDJSON line (or dead letter) whose bytes are not JSON."""


async def _nothing() -> list[str | None]:
    return []


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed, refusing more than ``limit`` bytes (413) as early as possible."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, "body_too_large", f"the body is over {limit} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip"):
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}; use gzip")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if inflate is not None:
                chunk = inflate.decompress(chunk, limit + 1 - size)
                if inflate.unconsumed_tail:
                    raise ApiError(413, "body_too_large", f"the body is over {limit} bytes")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"the body is over {limit} bytes")
            parts.append(chunk)
        if inflate is not None and not inflate.eof:
            raise ApiError(400, "invalid_gzip", "the gzip stream is truncated")
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", f"the body is not valid gzip: {exc}") from None
    return b"".join(parts)


def _split(body: bytes, content_type: str) -> list[tuple[bytes | None, Any]] | None:
    """``(original bytes, decoded or UNPARSED)`` per event; ``None`` if the body is not JSON.

    An element of a JSON array has no bytes of its own (``None``): :func:`judge`
    encodes it only if it is rejected (an accepted event is encoded once, with its id).
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        out: list[tuple[bytes | None, Any]] = []
        for line in body.split(b"\n"):
            line = line.strip()
            if not line:
                continue
            try:
                out.append((line, orjson.loads(line)))
            except orjson.JSONDecodeError:
                out.append((line, UNPARSED))
        return out
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(decoded) is list:
        return [(None, item) for item in decoded]
    return [(body, decoded)]


def _letter(
    tenant: str,
    raw: bytes,
    failure_type: FailureType,
    issues: tuple[FieldIssue, ...],
    event_type: str | None,
    event_id: str | None,
    source: str = SOURCE,
) -> DeadLetter:
    path, _, reason = issues[0]
    return DeadLetter(
        failure_type=failure_type,
        reason=reason,
        path=path,
        raw=raw,
        source=source,
        tenant=tenant,
        received_at=int(time.time() * 1000),
        event_type=event_type,
        errors=issues,
        event_id=event_id,
    )
