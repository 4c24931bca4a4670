"""The ``riffle`` command: run the flow, the API, the demo producer, or the whole stack.

One module per command group, each with its own Typer app: :mod:`.processes` (the
long-running top-level commands ``run``, ``api``, ``notify``, ``demo-produce``,
``up``), :mod:`.settings` (``settings``) and one sub-command per module for
``topics``, ``spec``, ``recovery``, ``warehouse``, ``keys``, ``schemas``,
``models``, ``grafana``, ``dashboards``, ``scheduler`` (the process, and ``runs``),
``reports``, ``imports`` and ``backup``; :mod:`.imports` also holds ``import``, ``replay``
and ``backfill``. A new group is a module here and one ``add_typer`` line below.

Every command reads :func:`config.settings.get_settings` (``RIFFLE_*``
variables) and logs through :mod:`riffle.logging`. Errors Riffle raises on
purpose (:class:`~config.errors.RiffleError`) end the command with their
message on stderr and exit code 1; invalid settings exit with code 2.
"""

from __future__ import annotations

import typer

from riffle.cli import (
    backup,
    dashboards,
    grafana,
    imports,
    keys,
    models,
    processes,
    recovery,
    reports,
    scheduler,
    schemas,
    settings,
    spec,
    topics,
    warehouse,
)
from riffle.cli.common import load_settings
from riffle.logging import configure_logging

app = typer.Typer(
    name="riffle",
    help="Riffle: streaming analytics on Bytewax. Settings come from RIFFLE_* variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(processes.app)
app.add_typer(settings.app)
app.add_typer(topics.app, name="topics")
app.add_typer(spec.app, name="spec")
app.add_typer(recovery.app, name="recovery")
app.add_typer(warehouse.app, name="warehouse")
app.add_typer(keys.app, name="keys")
app.add_typer(schemas.app, name="schemas")
app.add_typer(models.app, name="models")
app.add_typer(imports.app)
app.add_typer(imports.runs_app, name="imports")
app.add_typer(dashboards.app, name="dashboards")
app.add_typer(grafana.app, name="grafana")
app.add_typer(scheduler.app, name="scheduler")
app.add_typer(reports.app, name="reports")
app.add_typer(backup.app, name="backup")


@app.callback()
def _main() -> None:
    """Load the settings and set up logging before any command runs."""
    loaded = load_settings()
    configure_logging(loaded.log_level, loaded.log_format)
