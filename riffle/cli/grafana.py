"""``riffle grafana``: dashboards as code and the provisioning bundle Grafana mounts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings
from riffle.config.spec import load_spec
from riffle.dashboards import provisioning

app = typer.Typer(help="Grafana dashboards and provisioning.", no_args_is_help=True)


@app.command("dashboards")
def dashboards(
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the bundle (mount as provisioning/).")
    ] = Path("grafana"),
    spec_path: Annotated[
        Path | None, typer.Option("--spec", help="Spec file (default RIFFLE_SPEC).")
    ] = None,
    api_url: Annotated[
        str, typer.Option(help="Riffle's API as Grafana's server reaches it.")
    ] = "http://host.docker.internal:8000",
    prometheus_url: Annotated[
        str, typer.Option(help="The Prometheus that scrapes Riffle, as Grafana reaches it.")
    ] = "http://host.docker.internal:9090",
) -> None:
    """Write the spec's dashboard, Riffle's health dashboard, and the datasource and
    dashboard-provider YAML (the API key comes from $RIFFLE_GRAFANA_KEY in Grafana's
    environment)."""
    with clear_errors():
        spec = load_spec(spec_path or get_settings().spec)
    for path in provisioning(spec, out, api_url=api_url, prometheus_url=prometheus_url):
        typer.echo(str(path))
