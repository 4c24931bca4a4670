"""``riffle warehouse``: create, evolve and compact the warehouse's tables."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings
from riffle.config.spec import load_spec

app = typer.Typer(help="The warehouse (DuckDB or BigQuery).", no_args_is_help=True)


@app.command("init")
def warehouse_init() -> None:
    """Create the warehouse's tables and views, add missing columns, set partition
    expiration to the spec's retention.warehouse; safe to repeat."""
    from riffle.sinks.warehouse.engines import open_warehouse

    settings = get_settings()
    with clear_errors():
        warehouse = open_warehouse(settings, load_spec(settings.spec).retention.warehouse)
        warehouse.init()
    typer.echo(f"warehouse ready: {warehouse.url}")


@app.command("compact")
def warehouse_compact(
    min_age_minutes: Annotated[
        float,
        typer.Option(
            min=0,
            help="Only rows written at least this long ago (BigQuery refuses DML on rows "
            "in its streaming buffer: keep 90 or more there).",
        ),
    ] = 90.0,
) -> None:
    """Delete superseded raw rows (BigQuery) and expired rows (DuckDB); safe while the flow
    writes, and to repeat: what readers see does not change."""
    import time

    from riffle.sinks.warehouse.engines import open_warehouse

    settings = get_settings()
    with clear_errors():
        warehouse = open_warehouse(settings, load_spec(settings.spec).retention.warehouse)
        removed = warehouse.compact(int(min_age_minutes * 60_000))
        expired = warehouse.expire(int(time.time() * 1000))
    for table, count in removed.items():
        typer.echo(f"{table}: {count} superseded rows removed")
    for table, count in expired.items():
        typer.echo(f"{table}: {count} expired rows removed")
    typer.echo(f"warehouse compacted: {warehouse.url}")
