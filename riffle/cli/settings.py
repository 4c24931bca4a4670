"""``riffle settings``: the effective settings, or the reference table of every setting."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.config.settings import get_settings
from riffle.docs import effective_settings, settings_table

app = typer.Typer()


@app.command("settings")
def show_settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the reference table of every setting instead.")
    ] = False,
) -> None:
    """Print the effective settings as RIFFLE_NAME=value lines, secrets masked."""
    if markdown:
        typer.echo(settings_table())
        return
    for name, value in effective_settings(get_settings()):
        typer.echo(f"{name}={value}")
