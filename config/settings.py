"""Process settings, read from ``RIFFLE_*`` environment variables.

Every long-running process (dataflow, API, demo producer, local stack) reads
the same :class:`Settings`; ``get_settings()`` caches one instance per process
so tests can build their own with explicit values instead of patching.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SPEC = Path(__file__).with_name("demo.yaml")
SCHEMAS_DIR = Path(__file__).with_name("schemas")
DASHBOARDS_DIR = Path(__file__).with_name("dashboards")
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "development"})


class Settings(BaseSettings):
    """Riffle settings; each field is ``RIFFLE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RIFFLE_", extra="ignore")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    events_topic: str = Field("riffle.events", description="Topic the events arrive on.")
    deadletter_topic: str = Field(
        "riffle.deadletter", description="Topic rejected and late events are written to."
    )
    alerts_topic: str = Field(
        "riffle.alerts", description="Topic alert transitions go to; the notifier reads it."
    )
    topic_partitions: int = Field(
        4, ge=1, description="Partitions of topics Riffle creates itself (demo, local stack)."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for hot windows.")
    redis_prefix: str = Field("riffle", description="Prefix of every Redis key Riffle writes.")
    warehouse: str = Field(
        "duckdb:///.riffle/warehouse.duckdb",
        description="Warehouse URL: duckdb:///path/file.duckdb (relative or absolute path) "
        "or bigquery://project/dataset.",
    )
    bigquery_endpoint: str | None = Field(
        None,
        description="BigQuery API endpoint override (an emulator); credentials are then anonymous.",
    )
    warehouse_batch_rows: int = Field(
        500, ge=1, le=10_000, description="Most windows per warehouse write request."
    )
    warehouse_batch_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the flow writes final windows to the warehouse (at the first "
        "batch of each period, and at every epoch's end).",
    )
    warehouse_buffer_rows: int = Field(
        20_000,
        ge=1,
        description="Windows the warehouse buffer holds before writers block (backpressure).",
    )
    query_cache_ttl_seconds: float = Field(
        10.0, ge=0, description="Lifetime of cached query results in Redis (0: no cache)."
    )
    stream_buffer_limit: int = Field(
        5000,
        ge=1,
        description="Windows and alert transitions the live stream holds for one slow "
        "subscriber (SSE or GraphQL) before it drops them and sends a reset.",
    )
    spec: Path = Field(DEMO_SPEC, description="Path of the pipeline spec YAML.")
    default_tenant: str = Field(
        "demo",
        description="Tenant of events that arrive without a tenant header (direct producers).",
    )
    lateness_seconds: float = Field(
        10.0, ge=0, description="How far the watermark trails the newest event time."
    )
    idle_seconds: float = Field(
        3.0,
        gt=0,
        description="After this long without events a caught-up partition's watermark "
        "advances with the wall clock, so windows close without new traffic.",
    )
    partial_interval_seconds: float = Field(
        1.0, gt=0, description="How often open windows publish partial values."
    )
    buckets: int = Field(
        16, ge=1, description="Aggregation shards (keyed state); a multiple of the workers."
    )
    source_batch_size: int = Field(5000, ge=1, description="Most messages read per poll.")
    start_from: Literal["beginning", "end"] = Field(
        "beginning", description="Where a partition without recovery state starts reading."
    )
    recovery_dir: Path | None = Field(
        None,
        description="Bytewax recovery store (made by `riffle recovery init`); unset: no recovery.",
    )
    snapshot_seconds: float = Field(
        10.0,
        gt=0,
        description="Epoch length: how often state is snapshotted (and, with recovery, saved). "
        "A restart replays at most this much input.",
    )
    recovery_backup_seconds: float = Field(
        0.0,
        ge=0,
        description="How long superseded snapshots are kept (set to your backup interval).",
    )
    metrics_port: int = Field(
        9464,
        ge=0,
        description="Port of the dataflow's Prometheus /metrics and of the recovery progress "
        "its cluster peers ask for (0: off).",
    )
    metrics_port_per_process: bool = Field(
        True,
        description="Process N of a dataflow cluster serves metrics on RIFFLE_METRICS_PORT + N "
        "(processes sharing a host); off: every process on RIFFLE_METRICS_PORT (one per pod).",
    )
    cluster_size: int = Field(
        0,
        ge=0,
        description="Processes of the dataflow cluster (the StatefulSet's replicas); 0: one "
        "process, unless `riffle run -i/-a` says otherwise.",
    )
    cluster_addresses: str = Field(
        "",
        description="host:port of every dataflow process: a pattern with {i} "
        "(riffle-flow-{i}.riffle-flow:2101) or a ';'-separated list.",
    )
    pod_name: str = Field(
        "",
        description="This process's pod name, <statefulset>-<ordinal>; the ordinal is its "
        "process id in the cluster (default: the host name).",
    )
    api_host: str = Field("127.0.0.1", description="Address the API binds to.")
    api_port: int = Field(8000, ge=1, description="Port the API listens on.")
    hot_horizon_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="Queries for windows newer than this are answered from Redis alone.",
    )
    log_level: str = Field("INFO", description="Log level of every Riffle process.")
    log_format: Literal["json", "console"] = Field(
        "json", description="Structured logs as JSON lines or for a terminal."
    )
    ip_hash_key: SecretStr = Field(
        SecretStr(""),
        description="Key of the HMAC that replaces client IPs when the spec's enrichment "
        "says `privacy: {ip: hash}`.",
    )

    environment: Literal["development", "production"] = Field(
        "development",
        description="Outside development, placeholder secrets are refused at start-up.",
    )
    schemas_dir: Path = Field(
        SCHEMAS_DIR,
        description="Schema registry: <dir>/<event type>/<SchemaVer>.json (JSON Schema of props).",
    )
    api_key_pepper: SecretStr = Field(
        SecretStr("change-me"),
        description="Secret mixed into API-key hashes (HMAC-SHA256); set it outside development.",
    )
    auth_open_health: bool = Field(
        True, description="/healthz and /readyz answer without an API key."
    )
    auth_open_metrics: bool = Field(True, description="/metrics answers without an API key.")
    ingest_max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest ingest body after decompression (413 above)."
    )
    ingest_max_events: int = Field(
        10_000, ge=1, description="Most events in one ingest request (422 above)."
    )
    ingest_delivery_timeout_seconds: float = Field(
        10.0, gt=0, description="How long ingest waits for the broker to confirm (503 after)."
    )
    ingest_retry_after_seconds: int = Field(
        5, ge=1, description="Retry-After of a 503 from ingest when the broker is unavailable."
    )
    ingest_idempotency_ttl_seconds: int = Field(
        86_400,
        ge=60,
        description="How long ingest keeps the answer of a request sent with an Idempotency-Key "
        "(a retry with the key within it gets that answer and publishes nothing again).",
    )
    ingest_broker: Literal["kafka", "pubsub"] = Field(
        "kafka", description="Where POST /v1/events publishes: the Kafka events topic or Pub/Sub."
    )
    pubsub_project: str = Field("riffle-local", description="Google Cloud project of Pub/Sub.")
    pubsub_topic: str = Field("riffle-events", description="Pub/Sub topic ingest publishes to.")
    pubsub_subscription: str = Field(
        "riffle-events-flow", description="Pub/Sub subscription the dataflow reads."
    )
    pubsub_deadletter_topic: str = Field(
        "riffle-events-dead",
        description="Pub/Sub topic the events subscription's dead-letter policy sends messages "
        "no delivery attempt could process to (riffle topics create makes it).",
    )
    source: Literal["kafka", "pubsub"] = Field(
        "kafka",
        description="What the dataflow reads: the Kafka events topic or Pub/Sub. With pubsub "
        "the flow's dead letters and alert transitions go to Pub/Sub topics too and the "
        "notifier reads a Pub/Sub subscription: no Kafka is needed.",
    )
    pubsub_flow_deadletter_topic: str = Field(
        "riffle-deadletter",
        description="Pub/Sub topic dead letters go to, the flow's and (with ingest on "
        "Pub/Sub) ingest's (RIFFLE_SOURCE=pubsub).",
    )
    pubsub_alerts_topic: str = Field(
        "riffle-alerts", description="Pub/Sub topic alert transitions go to (RIFFLE_SOURCE=pubsub)."
    )
    pubsub_alerts_subscription: str = Field(
        "riffle-alerts-notifier",
        description="Pub/Sub subscription the notifier reads transitions from "
        "(RIFFLE_SOURCE=pubsub).",
    )
    rate_key_requests: float = Field(
        50.0, gt=0, description="Requests per second one API key may make (burst: one second)."
    )
    rate_tenant_requests: float = Field(
        100.0, gt=0, description="Requests per second all keys of one tenant may make."
    )
    rate_key_events: float = Field(
        20_000.0, gt=0, description="Ingested events per second one API key may send."
    )
    rate_tenant_events: float = Field(
        50_000.0, gt=0, description="Ingested events per second one tenant may send."
    )
    rate_tenant_overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per-tenant limits as JSON, e.g. "
        '{"acme": {"requests": 500, "events": 200000}} (per second).',
    )
    alert_api_rules: bool = Field(
        True,
        description="The dataflow also evaluates alert rules made through the API "
        "(read from Redis); off: the spec's rules only.",
    )
    alert_webhook_url: str = Field(
        "",
        pattern=r"^(https?://.+)?$",
        description="Deprecated (use the spec's notifications:): a webhook receiver for every "
        "alert, one notification per alert; empty: none.",
    )
    alert_webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC-SHA256 key of the webhook's X-Riffle-Signature; needed with the URL.",
    )

    notify_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="The running notifier's lease in Redis; a standby takes over after this.",
    )
    notify_workers: int = Field(
        4, ge=1, description="Notifier threads delivering notifications in parallel."
    )
    notify_resend_seconds: float = Field(
        60.0,
        gt=0,
        description="How often the notifier re-pushes active alerts to Alertmanager receivers "
        "(keep it below their hold).",
    )
    archive_url: str | None = Field(
        None,
        description="Raw archive of every valid event (hourly Parquet): a directory or "
        "gs://bucket/prefix; unset: no archive.",
    )
    import_state_dir: Path = Field(
        Path(".riffle/imports"),
        description="Where imports keep their resumable state and ledgers.",
    )
    import_allowed_dir: Path | None = Field(
        None,
        description="Local directory POST /v1/imports may read files from (gs:// sources "
        "are always allowed); unset: gs:// only.",
    )
    notify_metrics_port: int = Field(
        9465, ge=0, description="Port of the notifier's Prometheus /metrics (0: off)."
    )
    scheduler_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="The running scheduler's lease in Redis; a standby takes over after this.",
    )
    scheduler_workers: int = Field(2, ge=1, description="Scheduled runs executed at once.")
    scheduler_max_attempts: int = Field(
        5, ge=1, le=50, description="Attempts at a scheduled run before it is recorded failed."
    )
    scheduler_backoff_seconds: float = Field(
        30.0,
        gt=0,
        description="Wait before a run's second attempt; it doubles per attempt (at most 1 h).",
    )
    scheduler_metrics_port: int = Field(
        9466, ge=0, description="Port of the scheduler's Prometheus /metrics (0: off)."
    )
    public_url: str = Field(
        "",
        pattern=r"^(https?://[^\s]+)?$",
        description="The API's address as people reach it, for links in reports "
        "(default http://RIFFLE_API_HOST:RIFFLE_API_PORT).",
    )
    dashboards_dir: Path = Field(
        DASHBOARDS_DIR,
        description="Dashboards provisioned to every tenant at API start (*.yaml); "
        "default the bundled web-shop dashboard.",
    )
    share_secret: SecretStr = Field(
        SecretStr("change-me"),
        description="Key of the HMAC that signs dashboard share links; set it outside development.",
    )

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        pepper = self.api_key_pepper.get_secret_value()
        if self.environment != "development" and pepper.lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "RIFFLE_API_KEY_PEPPER is a placeholder; set a real secret outside development"
            )
        share = self.share_secret.get_secret_value()
        if self.environment != "development" and share.lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "RIFFLE_SHARE_SECRET is a placeholder; set a real secret outside development"
            )
        return self

    @model_validator(mode="after")
    def _webhook_has_a_secret(self) -> Settings:
        if self.alert_webhook_url and not self.alert_webhook_secret.get_secret_value():
            raise ValueError("RIFFLE_ALERT_WEBHOOK_URL needs RIFFLE_ALERT_WEBHOOK_SECRET")
        return self

    @field_validator("warehouse")
    @classmethod
    def _known_warehouse(cls, value: str) -> str:
        if value.startswith("duckdb:///") and value != "duckdb:///":
            return value
        if re.fullmatch(r"bigquery://[a-z][a-z0-9.:-]{4,61}[a-z0-9]/[A-Za-z0-9_]{1,1024}", value):
            return value
        raise ValueError(
            "RIFFLE_WAREHOUSE must look like duckdb:///path/file.duckdb or "
            f"bigquery://project/dataset (got {value!r})"
        )

    @property
    def base_url(self) -> str:
        """Where people reach the API: ``public_url``, else the API's own address."""
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def kafka_servers(self) -> str:
        """The bootstrap list in librdkafka's comma-separated form."""
        return self.kafka_bootstrap.replace(" ", "")

    @property
    def duckdb_path(self) -> Path:
        """The DuckDB file named by ``warehouse``.

        As in SQLAlchemy URLs, ``duckdb:///rel/file.duckdb`` is relative to the
        working directory and ``duckdb:////abs/file.duckdb`` is absolute. A
        BigQuery warehouse has no file: asking for one is a ``ValueError``.
        """
        if self.warehouse_engine == "bigquery":
            raise ValueError(f"the warehouse {self.warehouse} is not a DuckDB file")
        return Path(self.warehouse.removeprefix("duckdb:///"))

    @property
    def warehouse_engine(self) -> Literal["duckdb", "bigquery"]:
        """Which engine ``warehouse`` names."""
        return "bigquery" if self.warehouse.startswith("bigquery://") else "duckdb"

    def as_environment(self) -> dict[str, str]:
        """These settings as ``RIFFLE_*`` variables, secrets in clear: what a child
        process needs to read the same settings."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict):
                value = json.dumps(value)
            env[f"RIFFLE_{name.upper()}"] = str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
