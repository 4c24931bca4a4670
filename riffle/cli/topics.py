"""``riffle topics``: the Kafka topics (and Pub/Sub topics and subscriptions) Riffle uses."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import Settings, get_settings

app = typer.Typer(help="Kafka and Pub/Sub topics Riffle reads and writes.", no_args_is_help=True)


@app.command("create")
def topics_create(
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of new topics (default RIFFLE_TOPIC_PARTITIONS)."),
    ] = None,
) -> None:
    """Create what is missing: with Pub/Sub in use (RIFFLE_SOURCE or RIFFLE_INGEST_BROKER)
    its events topic and subscription, and with RIFFLE_SOURCE=pubsub the dead-letter and
    alerts topics and the notifier's subscription; with Kafka in use, the Kafka events and
    dead-letter topics."""
    from riffle.sources.topics import ensure_topics

    settings = get_settings()
    if "pubsub" in (settings.source, settings.ingest_broker):
        _create_pubsub(settings)
    if "kafka" in (settings.source, settings.ingest_broker):
        names = [settings.events_topic, settings.deadletter_topic]
        with clear_errors():
            ensure_topics(settings.kafka_servers, names, partitions or settings.topic_partitions)
        typer.echo(f"topics ready at {settings.kafka_servers}: {', '.join(names)}")


def _create_pubsub(settings: Settings) -> None:
    from riffle.sources.pubsub_topics import ensure_pubsub, riffle_pubsub

    with clear_errors():
        created = ensure_pubsub(settings.pubsub_project, *riffle_pubsub(settings))
    made = ", ".join(created) if created else "nothing new"
    typer.echo(f"Pub/Sub ready in project {settings.pubsub_project} (created: {made})")
