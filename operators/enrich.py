"""The enrich stage: user agent, geo-IP, sessions, derived fields, metadata, IP privacy.

:func:`compile_enrichment` builds an :class:`EnrichmentPlan` once per process
(parsers, the geo table, compiled expressions: shared and read-only), and each
source partition gets its own :class:`Enricher` holding the only state, the
open sessions. :meth:`Enricher.enrich` adds fields to a checked event in
place, in this order:

1. user agent → ``context.browser`` … ``context.is_bot``
2. geo-IP → ``context.geo_country``, ``context.asn_org``, ``context.asn_network``, ``context.asn``
3. IP privacy → ``context.ip`` truncated, hashed or removed (nothing after this
   step, metric plans included, sees the raw address)
4. sessions → ``context.session_id``, ``context.session_index``
5. metadata → ``meta.*``
6. derived fields, in spec order (each may read the ones before it)

A field that cannot be enriched raises
:class:`~operators.envelope.EnvelopeError` of type ``enrichment`` naming the
field, so the event becomes a dead letter instead of crashing the flow.
"""

from __future__ import annotations

import hashlib
from typing import Any

from riffle.config.enrichment import EnrichmentSpec
from riffle.config.errors import SpecError
from riffle.config.spec import PipelineSpec
from riffle.operators.enrichers.derive import Derivation, DerivationError
from riffle.operators.enrichers.geo import INVALID, GeoLookup
from riffle.operators.enrichers.privacy import IpProtector
from riffle.operators.enrichers.sessions import Sessionizer
from riffle.operators.enrichers.useragent import UserAgentParser
from riffle.operators.envelope import EnvelopeError

MAX_USER_ID = 256


def pipeline_version(spec: PipelineSpec) -> str:
    """A 12-hex-digit hash of the spec's content: changes when any setting of the spec does."""
    canonical = spec.model_dump_json().encode()
    return hashlib.blake2b(canonical, digest_size=6).hexdigest()


class EnrichmentPlan:
    """The compiled ``enrichment:`` section, shared by every partition of a process."""

    __slots__ = (
        "derivations",
        "geo",
        "invalid_ip_fails",
        "metadata",
        "privacy",
        "session_gap_ms",
        "spec",
        "user_agent",
        "user_field",
        "version",
    )

    def __init__(self, spec: EnrichmentSpec, *, version: str = "", ip_hash_key: str = "") -> None:
        self.spec = spec
        self.version = version
        ua, geo, session, privacy = spec.user_agent, spec.geo, spec.session, spec.privacy
        self.user_agent = UserAgentParser(ua.cache_size) if ua is not None else None
        self.geo = (
            GeoLookup(
                asn=geo.asn, ipv6=geo.ipv6, cache_size=geo.cache_size, asn_number=geo.asn_number
            )
            if geo is not None
            else None
        )
        self.invalid_ip_fails = geo is not None and geo.invalid_ip == "fail"
        self.privacy = (
            IpProtector(
                privacy.ip,
                ipv4_prefix=privacy.ipv4_prefix,
                ipv6_prefix=privacy.ipv6_prefix,
                key=ip_hash_key.encode(),
            )
            if privacy is not None and privacy.ip != "keep"
            else None
        )
        self.session_gap_ms = session.gap_ms if session is not None else 0
        self.user_field = session.user_field if session is not None else ""
        self.metadata = spec.metadata
        self.derivations = tuple(Derivation(d) for d in spec.derive)


def compile_enrichment(spec: PipelineSpec, *, ip_hash_key: str = "") -> EnrichmentPlan | None:
    """The plan for ``spec``'s enrichment section, or ``None`` when it enables nothing.

    Raises :class:`~config.errors.SpecError` when the section asks to hash IPs
    and no key is given.
    """
    section = spec.enrichment
    if section is None or not section.enabled:
        return None
    if section.privacy is not None and section.privacy.ip == "hash" and not ip_hash_key:
        raise SpecError(
            "enrichment.privacy.ip: 'hash' needs a key: set RIFFLE_IP_HASH_KEY "
            "(a long random string, kept secret)"
        )
    return EnrichmentPlan(section, version=pipeline_version(spec), ip_hash_key=ip_hash_key)


class Enricher:
    """The enrich stage of one source partition; its only state is the open sessions."""

    __slots__ = ("plan", "sessions")

    def __init__(self, plan: EnrichmentPlan) -> None:
        self.plan = plan
        self.sessions = Sessionizer(plan.session_gap_ms) if plan.session_gap_ms else None

    def enrich(self, event: dict[str, Any], ts: int, tenant: str, now: int, source: str) -> None:
        """Add the enriched fields to ``event`` (already checked by the envelope) in place.

        ``ts`` is the event time and ``now`` the wall clock, both epoch ms;
        ``source`` names the partition. Raises :class:`EnvelopeError`
        (``enrichment``) for a field that cannot be enriched; the event may
        then be partly enriched, and must be dropped.
        """
        plan = self.plan
        context = event.get("context")
        if context is None:
            context = event["context"] = {}
        if plan.user_agent is not None:
            agent = context.get("user_agent")
            if agent is not None:
                if type(agent) is not str:
                    raise EnvelopeError("enrichment", "context.user_agent", "must be a string")
                context.update(plan.user_agent.parse(agent))
        ip = context.get("ip")
        if ip is not None and (plan.geo is not None or plan.privacy is not None):
            if type(ip) is not str:
                raise EnvelopeError("enrichment", "context.ip", "must be a string")
            if plan.geo is not None:
                found = plan.geo.lookup(ip)
                if found is INVALID:
                    if plan.invalid_ip_fails:
                        raise EnvelopeError(
                            "enrichment", "context.ip", "is not an IPv4 or IPv6 address"
                        )
                else:
                    context.update(found)
            if plan.privacy is not None:
                kept = plan.privacy.protect(ip)
                if kept is None:
                    del context["ip"]
                else:
                    context["ip"] = kept
        if self.sessions is not None:
            self._session(context, tenant, ts)
        if plan.metadata:
            self._metadata(event, now, source)
        if plan.derivations:
            self._derive(event, ts)

    def _session(self, context: dict[str, Any], tenant: str, ts: int) -> None:
        assert self.sessions is not None
        field = self.plan.user_field
        user = context.get(field)
        if user is None or user == "":
            return
        kind = type(user)
        if kind is int:
            user = str(user)
        elif kind is not str or len(user) > MAX_USER_ID:
            raise EnvelopeError(
                "enrichment",
                f"context.{field}",
                f"must be a string of at most {MAX_USER_ID} characters or an integer",
            )
        sid, index = self.sessions.assign(tenant, user, ts)
        previous = context.get("session_id")
        if previous is not None and previous != sid:
            context["client_session_id"] = previous
        context["session_id"] = sid
        context["session_index"] = index

    def _metadata(self, event: dict[str, Any], now: int, source: str) -> None:
        schema = event.get("schema_version")
        if schema is not None and (type(schema) not in (str, int) or len(str(schema)) > 64):
            raise EnvelopeError(
                "enrichment", "schema_version", "must be a string or integer (at most 64 chars)"
            )
        event["meta"] = {
            "ingest_time": now,
            "source": source,
            "pipeline_version": self.plan.version,
            "schema_version": None if schema is None else str(schema),
        }

    def _derive(self, event: dict[str, Any], ts: int) -> None:
        event_type = event.get("type")
        for derivation in self.plan.derivations:
            if not derivation.applies_to(str(event_type)):
                continue
            try:
                value = derivation.evaluate(event, ts)
            except DerivationError as exc:
                if derivation.on_error == "fail":
                    raise EnvelopeError("enrichment", derivation.spec.field, str(exc)) from None
                value = None
            holder = event.get(derivation.section)
            if type(holder) is not dict:
                holder = event[derivation.section] = {}
            holder[derivation.key] = value

    def snapshot(self) -> bytes | None:
        """The recoverable state: the open sessions as compact JSON bytes, ``None`` without any.

        See :meth:`operators.enrichers.sessions.Sessionizer.snapshot` for the format.
        """
        return self.sessions.snapshot() if self.sessions is not None else None

    def restore(self, snapshot: bytes | None) -> Enricher:
        """Resume from a :meth:`snapshot` (``None``: start empty); returns ``self``."""
        if self.sessions is not None:
            self.sessions.restore(snapshot)
        return self
