"""``riffle topics``: the Kafka topics (and Pub/Sub topics and subscription) Riffle uses."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(help="Kafka and Pub/Sub topics Riffle reads and writes.", no_args_is_help=True)


@app.command("create")
def topics_create(
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of new topics (default RIFFLE_TOPIC_PARTITIONS)."),
    ] = None,
) -> None:
    """Create the events and dead-letter topics if they do not exist; with Pub/Sub in use
    (RIFFLE_SOURCE or RIFFLE_INGEST_BROKER), also its topics and the events subscription."""
    from riffle.sources.topics import ensure_topics

    settings = get_settings()
    if "pubsub" in (settings.source, settings.ingest_broker):
        from riffle.sources.pubsub_topics import SubscriptionPlan, ensure_pubsub

        plan = SubscriptionPlan(
            topic=settings.pubsub_topic,
            subscription=settings.pubsub_subscription,
            dead_letter_topic=settings.pubsub_deadletter_topic,
        )
        with clear_errors():
            created = ensure_pubsub(settings.pubsub_project, plan)
        made = ", ".join(created) if created else "nothing new"
        typer.echo(f"Pub/Sub ready in project {settings.pubsub_project} (created: {made})")
    names = [settings.events_topic, settings.deadletter_topic]
    with clear_errors():
        ensure_topics(settings.kafka_servers, names, partitions or settings.topic_partitions)
    typer.echo(f"topics ready at {settings.kafka_servers}: {', '.join(names)}")
