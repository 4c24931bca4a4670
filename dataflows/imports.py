"""Batch runs of the metrics flow: imports of files and replays of the raw archive.

Both build the live flow (:func:`dataflows.metrics.build_flow`) over a
bounded source of one partition, so decode → schema → enrich → aggregate is
the same chain; an import's decoder maps rows to events first
(:class:`operators.mapping.RowMapper`). Differences from the live flow:

- every metric's lateness is the run's (widened: by default an hour), and
  when the input ends every open window closes as final;
- no partial values, no models, alerts or predictions;
- final windows go to the warehouse, and to Redis when they are within the
  hot retention; dead letters of an import go where the live flow's go
  (failure type ``import`` for rows that cannot be mapped); a replay's are
  only counted, because every archived event was valid once;
- a replay writes only windows that lie whole inside its time range, and a
  backfill only its metric's;
- the run keeps a ledger (:class:`sinks.ledger.Ledger`) and, for imports,
  Bytewax recovery state in its folder: an interrupted import started again
  resumes from its last snapshot (file and row) and ends with the same
  windows and counts as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog
from bytewax.inputs import FixedPartitionedSource
from bytewax.recovery import init_db_dir
from bytewax.run import cli_main
from prometheus_client import CollectorRegistry

from riffle.config.errors import RiffleError
from riffle.config.mapping import SchemaMapping
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.dataflows.archive import ArchiveSink
from riffle.dataflows.batch_sinks import (
    ImportAbortedError,
    LedgerSink,
    error_budget,
    letters_recorder,
    whole_in,
    windows_recorder,
)
from riffle.dataflows.batch_sources import PARTITION, ArchiveSource, FileSource, Progress
from riffle.dataflows.deadletter_sink import DeadLetterFanoutSink
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.outputs import RedisWindowsSink, WarehouseSink
from riffle.dataflows.recovery import open_recovery
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.envelope import decode
from riffle.operators.ingest import Decoder
from riffle.operators.mapping import RowMapper
from riffle.operators.records import WindowResult
from riffle.sinks.archive.reader import is_archive
from riffle.sinks.archive.store import ArchiveStore
from riffle.sinks.ledger import Ledger, LedgerReport
from riffle.sinks.topics.target import dead_letters_target
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sources.kafka import PartitionPoll
from riffle.sources.storage import StoredObject, canonical, list_objects

log = structlog.get_logger(__name__)
NO_PARTIALS_S = 86_400.0 * 365
"""A partial interval no batch run reaches: it emits finals only."""


@dataclass(frozen=True)
class ImportRequest:
    """What to import and how."""

    source: str
    event_type: str | None = None
    mapping: SchemaMapping | None = None
    tenant: str | None = None
    """Tenant of the rows (default ``RIFFLE_DEFAULT_TENANT``); archived events keep theirs."""
    source_id: str = ""
    """Part of derived event ids (two sources whose file names coincide stay apart)."""
    max_errors: int | None = None
    lateness_s: float | None = 3600.0
    """Every metric's lateness in this run; ``None``: hold every window until the end."""
    chunk_rows: int = 10_000

    def key(self) -> str:
        """The identity of this import: what a resumed run must match."""
        parts = [
            self.tenant or "",
            canonical(self.source),
            self.event_type or "",
            "" if self.mapping is None else self.mapping.model_dump_json(),
            self.source_id,
            str(self.lateness_s),
        ]
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class RunResult:
    """How a batch run ended and what it did."""

    run_id: str
    status: str
    """``succeeded``, ``rejected`` (done, some rows rejected), ``aborted``, ``unchanged``."""
    report: LedgerReport
    fingerprint: str
    resumed: bool = False
    error: str | None = None


def fingerprint(objects: list[StoredObject]) -> str:
    """One digest of every object's URI and fingerprint: changes when any object may have."""
    digest = hashlib.blake2b(digest_size=16)
    for obj in objects:
        digest.update(f"{obj.uri}\x1f{obj.fingerprint}\x1e".encode())
    return digest.hexdigest()


def batch_spec(spec: PipelineSpec, lateness_s: float | None, metric: str | None) -> PipelineSpec:
    """The spec of a batch run: lateness widened, only ``metric`` for a backfill."""
    lateness = timedelta(days=36_500) if lateness_s is None else timedelta(seconds=lateness_s)
    metrics = [
        m.model_copy(update={"lateness": lateness, "late": "drop"})
        for m in spec.metrics
        if metric is None or m.name == metric
    ]
    if not metrics:
        raise RiffleError(f"the spec has no metric {metric!r}")
    return spec.model_copy(update={"metrics": metrics, "alerts": [], "predictions": []})


def batch_settings(settings: Settings, epoch_s: float) -> Settings:
    """Settings of a batch run: no partials, no idle advance, and one aggregation shard (a
    batch run has one worker; one shard makes one warehouse write per batch of finals,
    where sixteen made sixteen; a window's value does not depend on its shard)."""
    return settings.model_copy(
        update={
            "partial_interval_seconds": NO_PARTIALS_S,
            "idle_seconds": NO_PARTIALS_S,
            "snapshot_seconds": epoch_s,
            "buckets": 1,
        }
    )


def warmup_ms(spec: PipelineSpec) -> int:
    """How far before its range a replay reads: the longest gap that carries state across
    events (session windows, the enrichment's sessions), so a session that began before the
    range is known as one."""
    gaps = [m.window_ms for m in spec.metrics if m.window.kind == "session"]
    enrichment = spec.enrichment
    if enrichment is not None and enrichment.session is not None:
        gaps.append(int(enrichment.session.gap.total_seconds() * 1000))
    return max(gaps, default=0)


# --- running ---------------------------------------------------------------------------------


class RunFolder:
    """An import's folder under ``RIFFLE_IMPORT_STATE_DIR``: run id, status, recovery, ledger."""

    def __init__(self, root: Path, key: str) -> None:
        self.path = root / key
        self.state_path = self.path / "run.json"

    def state(self) -> dict[str, Any] | None:
        """The last run's ``run.json``, if any."""
        if not self.state_path.exists():
            return None
        data: dict[str, Any] = orjson.loads(self.state_path.read_bytes())
        return data

    def save(self, **state: Any) -> None:
        """Write ``run.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.state_path.write_bytes(orjson.dumps(state))

    def fresh(self) -> None:
        """Forget everything of an earlier run."""
        shutil.rmtree(self.path, ignore_errors=True)
        (self.path / "recovery").mkdir(parents=True)
        init_db_dir(self.path / "recovery", 1)  # type: ignore[no-untyped-call]


def run_import(
    settings: Settings,
    spec: PipelineSpec,
    request: ImportRequest,
    *,
    progress: Progress | None = None,
    run_id: str | None = None,
    archive: bool = True,
    epoch_s: float = 5.0,
) -> RunResult:
    """Import ``request.source`` through the metrics flow; resume an interrupted run of the
    same import over the same files. With ``archive`` and ``RIFFLE_ARCHIVE_URL`` set, the
    accepted events also go to the raw archive."""
    progress = progress or Progress()
    root = request.source.rstrip("/")
    if _archive_root(root):
        return run_replay(
            settings,
            spec,
            ArchiveStore(root),
            0,
            2**62,
            tenant=request.tenant,
            progress=progress,
            run_id=run_id,
            whole_windows=False,
        )
    objects = list_objects(request.source)
    stamp = fingerprint(objects)
    folder = RunFolder(settings.import_state_dir, request.key())
    state = folder.state()
    resumed = (
        state is not None and state.get("status") == "running" and state.get("fingerprint") == stamp
    )
    if resumed and state is not None:
        run_id = str(state["run_id"])
    else:
        folder.fresh()
        run_id = run_id or uuid.uuid4().hex[:16]
    folder.save(run_id=run_id, status="running", fingerprint=stamp, source=request.source)
    ledger = Ledger(folder.path / "ledger.sqlite")
    tenant = request.tenant or settings.default_tenant
    mapper = RowMapper(request.mapping, event_type=request.event_type, source_id=request.source_id)
    run_spec = batch_spec(spec, request.lateness_s, None)
    outputs = _outputs(settings, spec, ledger, request.max_errors, archive=archive, letters=True)
    source = FileSource(
        objects, tenant=tenant, ledger=ledger, progress=progress, chunk_rows=request.chunk_rows
    )
    log.info(
        "import_start", run_id=run_id, source=request.source, files=len(objects), resumed=resumed
    )
    error = None
    status = "succeeded"
    try:
        _run(settings, run_spec, source, outputs, mapper, epoch_s, folder.path / "recovery")
    except Exception as exc:
        aborted = _cause(exc, ImportAbortedError)
        if aborted is None:
            ledger.close()
            raise
        status, error = "aborted", str(aborted)
    report = ledger.report()
    ledger.close()
    if status == "succeeded" and report.rejected:
        status = "rejected"
    folder.save(run_id=run_id, status=status, fingerprint=stamp, source=request.source)
    shutil.rmtree(folder.path / "recovery", ignore_errors=True)  # a finished run resumes nothing
    return RunResult(run_id, status, report, stamp, resumed, error)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first exception of ``kind`` it was raised from (Bytewax wraps errors
    raised inside a flow)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _archive_root(root: str) -> bool:
    try:
        return is_archive(ArchiveStore(root))
    except RiffleError:
        return False


def run_replay(
    settings: Settings,
    spec: PipelineSpec,
    store: ArchiveStore,
    start: int,
    end: int,
    *,
    tenant: str | None = None,
    metric: str | None = None,
    lateness_s: float | None = 7200.0,
    progress: Progress | None = None,
    run_id: str | None = None,
    whole_windows: bool = True,
) -> RunResult:
    """Rebuild windows from the archive's events of ``[start, end)``; with ``metric``, that
    metric's windows only (a backfill). With ``whole_windows`` only windows that lie whole
    inside the range are written; windows crossing its ends keep their stored values. The
    events of a warm-up before ``start`` (:func:`warmup_ms`) are read too, for their state."""
    progress = progress or Progress()
    run_id = run_id or uuid.uuid4().hex[:16]
    folder = settings.import_state_dir / f"replay-{run_id}"
    ledger = Ledger(folder / "ledger.sqlite")
    run_spec = batch_spec(spec, lateness_s, metric)
    keep = whole_in(start, end) if whole_windows else (lambda _r: True)
    outputs = _outputs(settings, spec, ledger, None, archive=False, letters=False, keep=keep)
    source = ArchiveSource(store, start - warmup_ms(spec), end, tenant, progress)
    log.info("replay_start", run_id=run_id, archive=store.root, start=start, end=end, metric=metric)
    _run(settings, run_spec, source, outputs, decode, 5.0, None)
    report = ledger.report()
    ledger.close()
    shutil.rmtree(folder, ignore_errors=True)
    return RunResult(run_id, "succeeded", report, "", False, None)


def _outputs(
    settings: Settings,
    spec: PipelineSpec,
    ledger: Ledger,
    max_errors: int | None,
    *,
    archive: bool,
    letters: bool,
    keep: Callable[[WindowResult], bool] = lambda _r: True,
) -> FlowOutputs:
    hot_s = int(spec.retention.hot.total_seconds())
    horizon = int(time.time() * 1000) - hot_s * 1000
    dead = DeadLetterFanoutSink(dead_letters_target(settings), settings) if letters else None
    recorded = windows_recorder(ledger, keep)
    return FlowOutputs(
        windows=LedgerSink(
            RedisWindowsSink(settings.redis_url, settings.redis_prefix, hot_s),
            lambda rs: [r for r in rs if keep(r) and r.window_end > horizon],
        ),
        finals=LedgerSink(WarehouseSink(settings, retention=spec.retention.warehouse), recorded),
        # Every batch at once: the error budget is checked as rows are read, not every 5 s.
        dead_letters=LedgerSink(
            dead, letters_recorder(ledger), error_budget(ledger, max_errors), flush_s=0.0
        ),
        archive=ArchiveSink(settings.archive_url, [PARTITION])
        if archive and settings.archive_url
        else None,
    )


def _run(
    settings: Settings,
    spec: PipelineSpec,
    source: FixedPartitionedSource[tuple[str, PartitionPoll], Any],
    outputs: FlowOutputs,
    decoder: Decoder,
    epoch_s: float,
    recovery_dir: Path | None,
) -> None:
    run_settings = batch_settings(settings, epoch_s)
    open_warehouse(settings, spec.retention.warehouse).init()
    flow = build_flow(
        spec,
        run_settings,
        source=source,
        partitions=[PARTITION],
        outputs=outputs,
        telemetry=FlowTelemetry(CollectorRegistry()),
        flow_id="riffle_batch",
        decoder=decoder,
    )
    recovery = None if recovery_dir is None else open_recovery(recovery_dir, timedelta(0))
    cli_main(  # type: ignore[no-untyped-call]
        flow,
        workers_per_process=1,
        epoch_interval=timedelta(seconds=epoch_s),
        recovery_config=recovery,
    )
