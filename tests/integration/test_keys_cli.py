"""``riffle keys``: the key is printed once, only its hash is stored, revocation works."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from typer.testing import CliRunner

from riffle.cli import app
from riffle.config.settings import Settings, get_settings
from riffle.keys import store

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_settings(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    settings = settings_factory()
    monkeypatch.setenv("RIFFLE_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("RIFFLE_REDIS_PREFIX", f"{settings.redis_prefix}-cli")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_create_list_revoke(cli_settings: Settings) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--tenant", "acme", "--scopes", "ingest,read", "--expires", "30d"]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    prefix = key.split("_")[1]
    assert key.startswith(f"rfl_{prefix}_")
    record = store(cli_settings).authenticate(key)
    assert record is not None
    assert record.tenant == "acme"
    assert record.expires_at is not None

    client = redis.Redis.from_url(cli_settings.redis_url)
    stored = client.hgetall(f"{cli_settings.redis_prefix}:apikey:{prefix}")
    assert key.encode() not in b"".join(stored.values()), "the secret is never stored"

    listed = runner.invoke(app, ["keys", "list", "--tenant", "acme"])
    assert f"{prefix}  acme  ingest,read  active" in listed.stdout
    assert key not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", prefix]).exit_code == 0
    assert f"{prefix}  acme  ingest,read  revoked" in runner.invoke(app, ["keys", "list"]).stdout
    assert runner.invoke(app, ["keys", "revoke", "000000000000"]).exit_code == 1
    bad = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--scopes", "root"])
    assert bad.exit_code == 1
    assert "scopes must be among" in bad.output
    client.close()


def test_placeholder_pepper_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        Settings(environment="production")
    with pytest.raises(ValueError, match="RIFFLE_SHARE_SECRET"):
        Settings(environment="production", api_key_pepper="a-real-secret-value")
    Settings(
        environment="production", api_key_pepper="a-real-secret-value", share_secret="another-one"
    )
