"""Settings handed to a child process (``POST /v1/imports`` starts one) read back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from riffle.config.settings import Settings


def test_settings_survive_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(
        archive_url="gs://bucket/archive",
        import_state_dir=tmp_path / "state",
        rate_tenant_overrides={"acme": {"requests": 5.0}},
        api_key_pepper="a-real-pepper",
    )
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
    assert Settings().api_key_pepper.get_secret_value() == "a-real-pepper"
