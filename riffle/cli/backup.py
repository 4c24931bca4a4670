"""``riffle backup``: back up and restore the local engines (Redis, DuckDB, recovery store)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(
    help="Back up and restore Redis, the DuckDB warehouse and the recovery store.",
    no_args_is_help=True,
)


@app.command("create")
def backup_create(
    root: Annotated[Path, typer.Argument(help="Directory to put the new backup in.")],
    recovery_dir: Annotated[
        Path | None,
        typer.Option("--recovery-dir", "-r", help="Recovery store (RIFFLE_RECOVERY_DIR)."),
    ] = None,
) -> None:
    """Take a backup into ROOT/riffle-backup-<UTC time>/ and print its path."""
    from riffle.backup import create_backup

    settings = get_settings()
    if recovery_dir is not None:
        settings = settings.model_copy(update={"recovery_dir": recovery_dir})
    with clear_errors():
        target = create_backup(settings, root)
    typer.echo(str(target))


@app.command("restore")
def backup_restore(
    backup: Annotated[Path, typer.Argument(help="A directory `riffle backup create` made.")],
    only: Annotated[
        str,
        typer.Option(help="Parts to restore, comma separated: redis, warehouse, recovery."),
    ] = "redis,warehouse,recovery",
    recovery_dir: Annotated[
        Path | None,
        typer.Option("--recovery-dir", "-r", help="Recovery store (RIFFLE_RECOVERY_DIR)."),
    ] = None,
) -> None:
    """Restore a backup into the engines the settings name (stop the flow first)."""
    from riffle.backup import restore_backup

    settings = get_settings()
    if recovery_dir is not None:
        settings = settings.model_copy(update={"recovery_dir": recovery_dir})
    parts = tuple(p.strip() for p in only.split(",") if p.strip())
    started = time.monotonic()
    with clear_errors():
        restored = restore_backup(settings, backup, parts)
    summary = ", ".join(f"{part}: {count}" for part, count in restored.items())
    typer.echo(f"restored {summary} in {time.monotonic() - started:.2f} s")
