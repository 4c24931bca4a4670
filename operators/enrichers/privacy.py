"""Client-IP protection, applied after the geo lookup and before anything else reads the event.

``truncate`` keeps the network (``/24`` for IPv4 and ``/48`` for IPv6 by
default) and zeroes the host bits; ``hash`` replaces the address by a keyed
HMAC-SHA256 (32 hex digits), so equal addresses stay equal within one key but
cannot be recovered or brute-forced without it; ``drop`` removes the field.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

from riffle.operators.enrichers.geo import ipv4_net24

IpMode = Literal["keep", "truncate", "hash", "drop"]


class IpProtector:
    """Maps a raw ``context.ip`` value to what may be kept, or ``None`` to remove it."""

    __slots__ = ("_key", "_protect", "ipv4_prefix", "ipv6_prefix", "mode")

    def __init__(
        self,
        mode: IpMode,
        *,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 48,
        key: bytes = b"",
        cache_size: int = 50_000,
    ) -> None:
        if mode == "hash" and not key:
            raise ValueError("IP hashing needs a key (RIFFLE_IP_HASH_KEY)")
        self.mode = mode
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        self._key = key
        uncached: Callable[[str], str | None] = self._protect_uncached
        self._protect = lru_cache(maxsize=cache_size)(uncached) if cache_size else uncached

    def protect(self, ip: str) -> str | None:
        """The value to keep in place of ``ip``; ``None`` means remove the field."""
        return self._protect(ip)

    def _protect_uncached(self, ip: str) -> str | None:
        if self.mode == "keep":
            return ip
        if self.mode == "drop":
            return None
        if self.mode == "truncate" and self.ipv4_prefix == 24:
            net = ipv4_net24(ip)  # the common case, without parsing the address
            if net is not None:
                return f"{net}.0"
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            address = None
        if self.mode == "hash":
            canonical = str(address) if address is not None else ip
            return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()[:32]
        if address is None:
            return None  # not an address: nothing safe to keep of it
        prefix = self.ipv4_prefix if address.version == 4 else self.ipv6_prefix
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        return str(network.network_address)
