"""``riffle keys``: API keys of tenants."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(help="API keys of tenants (stored hashed in Redis).", no_args_is_help=True)


@app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated scopes among ingest, read, admin.")
    ] = "ingest,read",
    expires: Annotated[
        str | None,
        typer.Option(help="Expiry: RFC 3339 instant or a duration from now (30d, 12h)."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from riffle.keys import create_key

    with clear_errors():
        key, record = create_key(get_settings(), tenant, scopes, expires, name)
    typer.echo(key)
    typer.echo(
        f"prefix {record.prefix}, tenant {record.tenant}, scopes {','.join(record.scopes)}"
        + (f", expires {record.expires_at} (epoch ms)" if record.expires_at else "")
        + ": store the key now, it is not shown again",
        err=True,
    )


@app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List keys (prefix, tenant, scopes, state); never the secrets."""
    from riffle.keys import list_keys

    with clear_errors():
        for line in list_keys(get_settings(), tenant):
            typer.echo(line)


@app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix.")]) -> None:
    """Revoke a key by its prefix; exit 1 if there is none."""
    from riffle.keys import revoke_key

    with clear_errors():
        revoke_key(get_settings(), prefix)
    typer.echo(f"revoked {prefix}")
