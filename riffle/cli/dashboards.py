"""``riffle dashboards``: generate a starting dashboard from a spec, provision the folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings
from riffle.config.spec import load_spec

app = typer.Typer(help="Dashboards (docs/dashboards.md).", no_args_is_help=True)


@app.command("generate")
def dashboards_generate(
    spec_path: Annotated[
        Path | None, typer.Option("--spec", help="The spec (default RIFFLE_SPEC).")
    ] = None,
    dashboard_id: Annotated[str, typer.Option("--id", help="The dashboard's id.")] = "overview",
) -> None:
    """Print a starting dashboard for every metric of the spec as YAML."""
    from riffle.config.dashboards import starter_dashboard

    with clear_errors():
        spec = load_spec(spec_path or get_settings().spec)
        dashboard = starter_dashboard(spec, dashboard_id)
    typer.echo(yaml.safe_dump(dashboard.model_dump(mode="json"), sort_keys=False), nl=False)


@app.command("provision")
def dashboards_provision() -> None:
    """Store RIFFLE_DASHBOARDS_DIR's dashboards for every tenant, as the API does at start."""
    from riffle.api.app import create_app
    from riffle.api.deps import dashboard_store
    from riffle.api.provision import provision, provision_tenants

    settings = get_settings()
    with clear_errors():
        app = create_app(settings)
        services = app.state.services
        result = provision(
            dashboard_store(services),
            settings,
            services.spec,
            provision_tenants(settings, services.spec),
        )
        services.hot.client.close()
    typer.echo(f"dashboards: {result['saved']} saved, {result['kept']} kept")
