"""``riffle recovery``: the dataflow's recovery store."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.cluster import ordinal
from riffle.config.settings import get_settings

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
    pod: Annotated[
        bool,
        typer.Option(
            "--pod",
            help="Create only this pod's partition (the ordinal of its host name or "
            "RIFFLE_POD_NAME): one volume per process.",
        ),
    ] = False,
    exist_ok: Annotated[
        bool,
        typer.Option(
            "--exist-ok", help="Leave a directory that already holds partitions as it is."
        ),
    ] = False,
) -> None:
    """Prepare a recovery store for `riffle run --recovery-dir`."""
    from riffle.dataflows.recovery import init_recovery

    if exist_ok and any(directory.glob("part-*.sqlite3")):
        typer.echo(f"recovery store kept: {directory} already holds partitions")
        return
    with clear_errors():
        only = ordinal(get_settings().pod_name or socket.gethostname()) if pod else None
        created = init_recovery(directory, partitions, only)
    names = ", ".join(path.name for path in created) or "none (a process added after the store)"
    typer.echo(f"recovery store ready: {directory} (of {partitions} partitions, here: {names})")
