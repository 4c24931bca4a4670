"""``riffle schemas``: the event schema registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(help="The event schema registry.", no_args_is_help=True)


@app.command("check")
def schemas_check(
    directory: Annotated[
        Path | None, typer.Argument(help="Registry directory (default RIFFLE_SCHEMAS_DIR).")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="The published registry (e.g. main's): versions in both must agree."),
    ] = None,
) -> None:
    """Refuse incompatible schema edits within a MODEL; print the problems and exit 1."""
    from riffle.config.registry import check_registry, load_schemas

    target = directory or get_settings().schemas_dir
    with clear_errors():
        problems = check_registry(target, baseline)
        count = sum(len(v) for v in load_schemas(target).values())
    if problems:
        for problem in problems:
            typer.echo(f"incompatible: {problem}", err=True)
        typer.echo(
            "error: breaking changes need a new MODEL version (2-0-0), not an edit", err=True
        )
        raise typer.Exit(1)
    typer.echo(f"{target}: ok ({count} schema versions, compatible within each MODEL)")
