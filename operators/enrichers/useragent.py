"""User-agent parsing with ``ua-parser`` (rules from ``ua-parser-builtins``), behind an LRU.

Real traffic repeats a few hundred user agents, so the parse result is
cached per string; each result is an immutable mapping of the fields the
enricher writes into ``context``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ua_parser import BasicResolver, Domain, Parser, load_builtins, load_lazy_builtins
from ua_parser import BestAvailableResolver as _Resolver

MAX_USER_AGENT = 512
"""Longer strings are cut before parsing: the rules never need more, and the cost is bounded."""

UaFields = MappingProxyType[str, Any]

_BOT_RE = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|archiver|facebookexternalhit|headless|python-requests|"
    r"python-urllib|curl/|wget/|go-http-client|java/|okhttp|libwww|httpclient|scrapy|"
    r"pingdom|lighthouse",
    re.IGNORECASE,
)
_TABLET_RE = re.compile(r"ipad|tablet|kindle|silk/|playbook|nexus (7|9|10)|sm-t\d|sm-x\d", re.I)
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS"})


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major


def _make_parser() -> Parser:
    # The best resolver is the Rust one (ua-parser-rs) when installed; ua-parser's
    # own cache is left out so the LRU below is the only one, and measurable.
    if _Resolver is BasicResolver:
        return Parser(BasicResolver(load_builtins()))
    return Parser(_Resolver(load_lazy_builtins()))


class UserAgentParser:
    """Turns a user-agent string into the ``context`` fields the enricher adds."""

    __slots__ = ("_parse", "_parser")

    def __init__(self, cache_size: int) -> None:
        self._parser = _make_parser()
        uncached: Callable[[str], UaFields] = self._parse_uncached
        self._parse = lru_cache(maxsize=cache_size)(uncached) if cache_size else uncached

    def parse(self, user_agent: str) -> UaFields:
        """``browser``, ``browser_version``, ``os``, ``os_version``, ``device_type``, ``is_bot``.

        ``device_type`` is ``bot``, ``tablet``, ``mobile`` or ``desktop``; an
        empty string gives ``other`` and no browser.
        """
        return self._parse(user_agent[:MAX_USER_AGENT])

    def cache_info(self) -> tuple[int, int, int] | None:
        """``(hits, misses, size)`` of the LRU, or ``None`` without one."""
        info = getattr(self._parse, "cache_info", None)
        if info is None:
            return None
        stats = info()
        return stats.hits, stats.misses, stats.currsize

    def _parse_uncached(self, user_agent: str) -> UaFields:
        result = self._parser(user_agent, Domain.ALL)
        agent, os, device = result.user_agent, result.os, result.device
        browser = agent.family if agent is not None else None
        os_family = os.family if os is not None else None
        device_family = device.family if device is not None else None
        brand = (device.brand or "") if device is not None else ""
        is_bot = device_family == "Spider" or bool(_BOT_RE.search(user_agent))
        if is_bot:
            device_type = "bot"
        elif not user_agent.strip():
            device_type = "other"
        elif (
            "Tablet" in brand
            or _TABLET_RE.search(user_agent)
            or (os_family == "Android" and "Mobile" not in user_agent)
        ):
            device_type = "tablet"
        elif os_family in _MOBILE_OS or "Mobile" in user_agent:
            device_type = "mobile"
        else:
            device_type = "desktop"
        return MappingProxyType(
            {
                "browser": browser,
                "browser_version": _version(agent.major, agent.minor) if agent else None,
                "os": os_family,
                "os_version": _version(os.major, os.minor) if os else None,
                "device_type": device_type,
                "is_bot": is_bot,
            }
        )
