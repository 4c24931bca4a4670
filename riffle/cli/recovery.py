"""``riffle recovery``: the dataflow's recovery store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors

app = typer.Typer(help="The dataflow's recovery store.", no_args_is_help=True)


@app.command("init")
def recovery_init(
    directory: Annotated[Path, typer.Argument(help="Directory of the recovery store.")],
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions", "-p", min=1, help="Store partitions: one per process you will run."
        ),
    ] = 1,
) -> None:
    """Prepare a recovery store for `riffle run --recovery-dir`."""
    from riffle.dataflows.runner import init_recovery

    with clear_errors():
        init_recovery(directory, partitions)
    typer.echo(f"recovery store ready: {directory} ({partitions} partitions)")
