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
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write <id>.yaml files here (needed when the spec makes several).", file_okay=False
        ),
    ] = None,
) -> None:
    """A starting dashboard for every metric of the spec, as YAML on stdout (or files in
    --out). Past 50 panels the rows are split over several dashboards, none dropped."""
    from riffle.config.dashboards import MAX_PANELS, starter_dashboards

    with clear_errors():
        spec = load_spec(spec_path or get_settings().spec)
        dashboards = starter_dashboards(spec, dashboard_id)
    if out is None and len(dashboards) > 1:
        panels = sum(len(d.panels) for d in dashboards)
        typer.echo(
            f"error: the spec makes {panels} panels and a dashboard holds at most {MAX_PANELS}: "
            f"give --out DIR to write {len(dashboards)} dashboards "
            f"({', '.join(d.id for d in dashboards)})",
            err=True,
        )
        raise typer.Exit(1)
    texts = [yaml.safe_dump(d.model_dump(mode="json"), sort_keys=False) for d in dashboards]
    if out is None:
        typer.echo(texts[0], nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for dashboard, text in zip(dashboards, texts, strict=True):
        path = out / f"{dashboard.id}.yaml"
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path} ({len(dashboard.panels)} panels)")


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
