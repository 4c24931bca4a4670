"""The README's settings reference is the generated table, and masking hides passwords."""

from __future__ import annotations

from pathlib import Path

from riffle.config.settings import Settings
from riffle.docs import effective_settings, masked_url, settings_table

README = Path(__file__).parents[2] / "README.md"


def test_readme_settings_table_is_current() -> None:
    assert settings_table() in README.read_text(encoding="utf-8"), (
        "README.md's settings table is stale: paste the output of `riffle settings --markdown`"
    )


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert masked_url("redis://user:pw@h/1") == "redis://user:***@h/1"
    assert masked_url("redis://h:6379/0") == "redis://h:6379/0"


def test_effective_settings_mask_url_passwords() -> None:
    shown = dict(effective_settings(Settings(redis_url="redis://:hunter2@127.0.0.1:6379/3")))
    assert shown["RIFFLE_REDIS_URL"] == "redis://:***@127.0.0.1:6379/3"
    assert len(shown) == len(Settings.model_fields)
