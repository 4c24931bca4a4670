"""``riffle topics``: the Kafka topics Riffle reads and writes."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(help="Kafka topics Riffle reads and writes.", no_args_is_help=True)


@app.command("create")
def topics_create(
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of new topics (default RIFFLE_TOPIC_PARTITIONS)."),
    ] = None,
) -> None:
    """Create the events and dead-letter topics if they do not exist."""
    from riffle.sources.topics import ensure_topics

    settings = get_settings()
    names = [settings.events_topic, settings.deadletter_topic]
    with clear_errors():
        ensure_topics(settings.kafka_servers, names, partitions or settings.topic_partitions)
    typer.echo(f"topics ready at {settings.kafka_servers}: {', '.join(names)}")
