"""``riffle spec``: check a pipeline spec without starting anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings
from riffle.config.spec import load_spec

app = typer.Typer(help="The pipeline spec.", no_args_is_help=True)


@app.command("check")
def spec_check(
    path: Annotated[
        Path | None, typer.Argument(help="Spec file (default RIFFLE_SPEC, the demo spec).")
    ] = None,
) -> None:
    """Load a spec; print its errors as file:line: field: message and exit 1, or a summary."""
    target = path or get_settings().spec
    with clear_errors():
        spec = load_spec(target)
    scheduled = "".join(
        f", {len(jobs)} scheduled {what}{'s' if len(jobs) > 1 else ''}"
        for jobs, what in ((spec.reports, "report"), (spec.imports, "import"))
        if jobs
    )
    typer.echo(
        f"{target}: ok ({len(spec.event_types)} event types, "
        f"{len(spec.dimensions)} dimensions, {len(spec.metrics)} metrics{scheduled})"
    )
