"""Settings rendered for people: the reference table and the effective values.

``riffle settings --markdown`` prints :func:`settings_table`; the README's
settings reference is a paste of that output, so it cannot drift from the
code. ``riffle settings`` prints :func:`effective_settings`, secrets masked.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from riffle.config.settings import DEMO_SPEC, Settings

MASK = "***"


def settings_table() -> str:
    """A Markdown table of every setting: variable, default and description."""
    rows = ["| variable | default | description |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        rows.append(f"| `{_variable(name)}` | {_default(info)} | {info.description or ''} |")
    return "\n".join(rows)


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """``(RIFFLE_NAME, value)`` for every setting, with secrets and URL passwords masked."""
    out = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown = MASK if value.get_secret_value() else ""
        elif isinstance(value, str) and "://" in value:
            shown = masked_url(value)
        else:
            shown = str(value)
        out.append((_variable(name), shown))
    return out


def masked_url(url: str) -> str:
    """``url`` with the password of its user part, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{MASK}@{hostinfo}").geturl()


def _variable(name: str) -> str:
    return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if value == DEMO_SPEC:
        return "the bundled `config/demo.yaml`"
    if isinstance(value, SecretStr):
        return "(none)" if not value.get_secret_value() else MASK
    if isinstance(value, Path):
        # A bundled path reads the same on every machine: relative to the checkout.
        root = DEMO_SPEC.parent.parent
        value = str(value.relative_to(root)) if value.is_relative_to(root) else str(value)
    return f"`{value}`"
