"""What every ``riffle`` command shares: the settings and how errors end a command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings, get_settings


def load_settings() -> Settings:
    """The settings, or their problems on stderr and exit code 2."""
    try:
        return get_settings()
    except ValidationError as exc:
        lines = [
            f"  RIFFLE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        ]
        typer.echo("invalid settings:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from None


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn a RiffleError into its message on stderr and exit code 1."""
    try:
        yield
    except RiffleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
