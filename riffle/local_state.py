"""What a local stack (``riffle up``) keeps between runs under ``.riffle/``.

- ``demo-key``: the demo tenant's API key (mode 0600). One key per local stack,
  reused by every run while it is active and has more than a day left; a new
  one (expiring after ``DEMO_KEY_DAYS``) replaces it otherwise, and older
  demo keys of the tenant are revoked, so runs do not pile up live keys.
- ``recovery/``: the dataflow's Bytewax recovery store, so a restarted flow
  resumes its open windows (and finalises them) instead of leaving them
  partial for good. It is made anew when the spec, Riffle or Bytewax change,
  since saved state only fits the flow that wrote it.

``make clean`` removes the folder (and revokes the key first).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.sinks.redis.api_keys import ApiKey

DEMO_KEY_NAME = "riffle up demo key"
DEMO_KEY_DAYS = 30
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class DemoKey:
    """The demo key of a local stack and whether this run made it."""

    key: str
    record: ApiKey
    created: bool


def demo_key(settings: Settings, path: Path) -> DemoKey:
    """The key in ``path`` if it is still good for a day, else a new one written there."""
    from riffle.keys import store

    keys = store(settings)
    now = int(time.time() * 1000)
    tenant = settings.default_tenant
    found = _stored(path)
    record = keys.authenticate(found) if found else None
    if (
        found
        and record is not None
        and record.tenant == tenant
        and record.state(now) == "active"
        and (record.expires_at is None or record.expires_at - now > _DAY_MS)
    ):
        current = DemoKey(found, record, created=False)
    else:
        key, made = keys.create(
            tenant,
            ["ingest", "read", "admin"],
            name=DEMO_KEY_NAME,
            expires_at=now + DEMO_KEY_DAYS * _DAY_MS,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file may have been created with other bits
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(key + "\n")
        current = DemoKey(key, made, created=True)
    for old in keys.list(tenant):
        mine = old.name == DEMO_KEY_NAME and old.state(now) == "active"
        if mine and old.prefix != current.record.prefix:
            keys.revoke(old.prefix)
    return current


def _stored(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def recovery_store(settings: Settings, directory: Path) -> Path:
    """``directory`` as a recovery store fit for this flow: kept when the spec and the
    versions match the last run's, made anew (empty) otherwise."""
    from riffle.dataflows.recovery import init_recovery

    fingerprint = flow_fingerprint(settings)
    marker = directory / "fingerprint"
    try:
        kept = marker.read_text(encoding="utf-8").strip() == fingerprint
    except OSError:
        kept = False
    if kept and any(directory.glob("part-*.sqlite3")):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    init_recovery(directory, 1)
    marker.write_text(fingerprint + "\n", encoding="utf-8")
    return directory


def flow_fingerprint(settings: Settings) -> str:
    """What saved flow state depends on: the spec as loaded, Riffle's and Bytewax's versions."""
    spec = load_spec(settings.spec).model_dump_json()
    parts = [spec, version("riffle"), version("bytewax"), str(settings.default_tenant)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def revoke_demo_key(settings: Settings, path: Path) -> bool:
    """Revoke the key stored in ``path`` (``make clean``); ``False`` when there is none."""
    from riffle.keys import store

    found = _stored(path)
    if not found:
        return False
    keys = store(settings)
    record = keys.authenticate(found)
    if record is None:
        return False
    keys.revoke(record.prefix)
    if path.exists():
        os.remove(path)
    return True
