"""``/v1/dead-letters``: read a tenant's rejected events and replay them after a fix.

Replay re-reads the schema registry from disk, re-checks each selected
letter's original bytes exactly as ingest would, re-injects those that now
pass under the event id they had (or were given) at ingest, and marks them
replayed so a second replay does not inject them twice. Late events are not
replayable (they would be late again), nor are rows of imports (their bytes are
a file's row: fix the file or the mapping and import it again).
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from riffle.api.auth import CollectDep
from riffle.api.bodies import ErrorResponse
from riffle.api.deps import IngestKey, ReadKey, Spec
from riffle.api.errors import ApiError
from riffle.api.publisher import OutMessage, PublishUnavailableError
from riffle.api.routes.ingest import UNPARSED, IssueOut, judge
from riffle.api.times import format_instant, parse_instant
from riffle.operators.records import FailureType
from riffle.sinks.warehouse.dead_letters import LetterQuery, StoredLetter

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])
MAX_PAGE = 1000
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "A malformed filter or cursor."},
    401: {"model": ErrorResponse, "description": "Missing, unknown, revoked or expired key."},
    403: {"model": ErrorResponse, "description": "The key lacks the route's scope."},
    404: {"model": ErrorResponse, "description": "No such dead letter for this tenant."},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded."},
    503: {"model": ErrorResponse, "description": "Warehouse or broker unavailable."},
}


class DeadLetterOut(BaseModel):
    """One dead letter."""

    id: str
    failure_type: FailureType
    reason: str
    path: str
    errors: list[IssueOut]
    source: str
    event_type: str | None
    event_id: str | None
    event_ts: str | None
    lateness_ms: int | None
    received_at: str
    replayed_at: str | None
    raw_base64: str = Field(description="The original bytes, base64.")
    raw_text: str | None = Field(description="The original bytes as UTF-8, when they are.")

    @classmethod
    def of(cls, stored: StoredLetter) -> DeadLetterOut:
        """The API view of a stored letter."""
        letter = stored.letter
        try:
            text: str | None = letter.raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return cls(
            id=stored.letter_id,
            failure_type=letter.failure_type,
            reason=letter.reason,
            path=letter.path,
            errors=[IssueOut(path=p, rule=r, message=m) for p, r, m in letter.issues],
            source=letter.source,
            event_type=letter.event_type,
            event_id=letter.event_id,
            event_ts=None if letter.event_ts is None else format_instant(letter.event_ts),
            lateness_ms=letter.lateness_ms,
            received_at=format_instant(letter.received_at),
            replayed_at=None if stored.replayed_at is None else format_instant(stored.replayed_at),
            raw_base64=base64.b64encode(letter.raw).decode("ascii"),
            raw_text=text,
        )


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first; pass ``next_cursor`` as ``cursor`` for more."""

    dead_letters: list[DeadLetterOut]
    next_cursor: str | None


class ReplayRequest(BaseModel):
    """Which letters to replay: by id, or by filter (not yet replayed ones only)."""

    ids: list[str] | None = Field(None, max_length=MAX_PAGE)
    failure_type: FailureType | None = None
    event_type: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    dry_run: bool = Field(False, description="Check only; inject nothing, mark nothing.")


class ReplayResult(BaseModel):
    """What replay did with one letter."""

    id: str
    status: Literal[
        "replayed", "would_replay", "still_invalid", "already_replayed", "not_replayable", "failed"
    ]
    event_id: str | None = None
    errors: list[IssueOut] = Field(default_factory=list)


class ReplayResponse(BaseModel):
    """Counts and per-letter results."""

    replayed: int
    still_invalid: int
    skipped: int
    failed: int
    results: list[ReplayResult]


def _instant(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_instant(value, int(time.time() * 1000))
    except ValueError as exc:
        raise ApiError(400, "invalid_time", f"{name}: {exc}") from None


@router.get(
    "",
    operation_id="listDeadLetters",
    summary="The tenant's dead letters, newest first, filtered and paged",
    responses=_ERRORS,
)
async def list_dead_letters(
    app: CollectDep,
    caller: ReadKey,
    failure_type: Annotated[FailureType | None, Query(description="parse, schema, late, …")] = None,
    event_type: Annotated[str | None, Query(description="The event's type.")] = None,
    since: Annotated[
        str | None, Query(description="Received at or after (RFC 3339, ms, -1h).")
    ] = None,
    until: Annotated[str | None, Query(description="Received before (same forms).")] = None,
    replayed: Annotated[
        bool | None, Query(description="Only replayed (true) or not (false).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> DeadLetterPage:
    """Dead letters of the key's tenant; filters combine with AND."""
    query = LetterQuery(
        tenant=caller.tenant,
        failure_type=failure_type,
        event_type=event_type,
        since_ms=_instant(since, "since"),
        until_ms=_instant(until, "until"),
        replayed=replayed,
        limit=limit,
        cursor=cursor,
    )
    await run_in_threadpool(app.recorder.flush)
    try:
        page, next_cursor = await run_in_threadpool(app.letters.query, query)
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return DeadLetterPage(dead_letters=[DeadLetterOut.of(s) for s in page], next_cursor=next_cursor)


@router.get(
    "/{letter_id}",
    operation_id="getDeadLetter",
    summary="One dead letter",
    responses=_ERRORS,
)
async def get_dead_letter(
    letter_id: str,
    app: CollectDep,
    caller: ReadKey,
) -> DeadLetterOut:
    """A dead letter of the key's tenant; another tenant's is ``404``."""
    await run_in_threadpool(app.recorder.flush)
    found = await run_in_threadpool(app.letters.get, caller.tenant, [letter_id])
    if not found:
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {letter_id!r}")
    return DeadLetterOut.of(found[0])


@router.post(
    "/replay",
    operation_id="replayDeadLetters",
    summary="Re-check dead letters against the current schemas and re-inject what passes",
    responses=_ERRORS,
)
async def replay_dead_letters(
    request: ReplayRequest,
    app: CollectDep,
    spec: Spec,
    caller: IngestKey,
) -> JSONResponse:
    """``200`` with per-letter results; ``503`` if the broker did not confirm every re-injection."""
    await run_in_threadpool(app.recorder.flush)
    tenant = caller.tenant
    if request.ids is not None:
        selected = await run_in_threadpool(app.letters.get, tenant, request.ids)
        missing = set(request.ids) - {s.letter_id for s in selected}
        if missing:
            raise ApiError(
                404, "dead_letter_not_found", f"no dead letter(s) {', '.join(sorted(missing))}"
            )
    else:
        query = LetterQuery(
            tenant=tenant,
            failure_type=request.failure_type,
            event_type=request.event_type,
            since_ms=_instant(request.since, "since"),
            until_ms=_instant(request.until, "until"),
            replayed=False,
            limit=request.limit,
        )
        selected, _ = await run_in_threadpool(app.letters.query, query)
    validator = await run_in_threadpool(app.schemas.reload)
    results: list[ReplayResult] = []
    to_send: list[tuple[StoredLetter, str, bytes]] = []
    for stored in selected:
        letter = stored.letter
        if stored.replayed_at is not None:
            results.append(ReplayResult(id=stored.letter_id, status="already_replayed"))
            continue
        if letter.failure_type == "late" or letter.source.startswith("import:"):
            results.append(ReplayResult(id=stored.letter_id, status="not_replayable"))
            continue
        try:
            event: Any = orjson.loads(letter.raw)
        except orjson.JSONDecodeError:
            event = UNPARSED
        checked = judge(
            letter.raw, event, validator, spec, tenant, source="replay", event_id=letter.event_id
        )
        if checked.letter is not None:
            results.append(
                ReplayResult(
                    id=stored.letter_id,
                    status="still_invalid",
                    event_id=checked.event_id,
                    errors=[
                        IssueOut(path=p, rule=r, message=m) for p, r, m in checked.letter.issues
                    ],
                )
            )
            continue
        assert checked.value is not None
        assert checked.event_id is not None
        to_send.append((stored, checked.event_id, checked.value))
    outcome: list[str | None] = []
    if to_send and not request.dry_run:
        messages = [
            OutMessage(app.settings.events_topic, event_id.encode(), value, tenant)
            for _, event_id, value in to_send
        ]
        try:
            outcome = await app.publisher.publish(messages, wait=True)
        except PublishUnavailableError as exc:
            outcome = [str(exc)] * len(messages)
        done = [s.letter_id for (s, _, _), err in zip(to_send, outcome, strict=True) if err is None]
        await run_in_threadpool(app.letters.mark_replayed, tenant, done, int(time.time() * 1000))
    else:
        outcome = [None] * len(to_send)
    failed = 0
    for (stored, event_id, _), error in zip(to_send, outcome, strict=True):
        if error is None:
            status: Literal["replayed", "would_replay", "failed"] = (
                "would_replay" if request.dry_run else "replayed"
            )
            results.append(ReplayResult(id=stored.letter_id, status=status, event_id=event_id))
        else:
            failed += 1
            results.append(
                ReplayResult(
                    id=stored.letter_id,
                    status="failed",
                    event_id=event_id,
                    errors=[IssueOut(path="$", rule="delivery", message=error)],
                )
            )
    body = ReplayResponse(
        replayed=sum(r.status in ("replayed", "would_replay") for r in results),
        still_invalid=sum(r.status == "still_invalid" for r in results),
        skipped=sum(r.status in ("already_replayed", "not_replayable") for r in results),
        failed=failed,
        results=results,
    ).model_dump(mode="json")
    if failed:
        headers = {"Retry-After": str(app.settings.ingest_retry_after_seconds)}
        return JSONResponse(body, status_code=503, headers=headers)
    return JSONResponse(body)
