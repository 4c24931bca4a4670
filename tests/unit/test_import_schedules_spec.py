"""The spec's ``imports:``: loaded with mapping files read next to the spec, every problem
named by file and line (the mapping file's too), and ``riffle up`` starts the scheduler."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from riffle.config.errors import SpecError
from riffle.config.settings import Settings
from riffle.config.spec import load_spec, parse_spec
from riffle.stack import spec_children

DEMO = Path("config/demo.yaml").read_text()
MAPPING = """\
type: purchase
event_id: order_id
ts: {column: created_at, format: "%Y-%m-%d %H:%M:%S", zone: Europe/Berlin}
props:
  amount: {column: total, type: float}
  currency: currency
"""
IMPORTS = """
imports:
  - name: shop-orders
    source: gs://acme-exports/orders/
    mapping: mappings/orders.yaml
    tenant: acme
    schedule: "15 * * * *"
    max_attempts: 3
    backoff: 1m
  - name: drops
    source: drops/*.ndjson
    type: page_view
    mapping: {ts: {column: at, format: epoch_ms}, rest: props}
    schedule: "@daily"
    lateness: all
    max_errors: 10
"""


def write_spec(folder: Path, imports: str, mapping: str = MAPPING) -> Path:
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "mappings" / "orders.yaml").write_text(mapping)
    spec = folder / "spec.yaml"
    spec.write_text(DEMO + imports)
    return spec


def test_imports_load_with_their_mapping_files_and_options(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, IMPORTS))
    orders, drops = spec.imports
    assert orders.mapping is not None and orders.mapping.ts.zone == "Europe/Berlin"
    assert orders.event_type == "purchase" and orders.source == "gs://acme-exports/orders/"
    assert (orders.schedule, orders.max_attempts, orders.backoff) == (
        "15 * * * *",
        3,
        timedelta(minutes=1),
    )
    assert orders.lateness_s == 3600.0
    # A local source is taken from the spec's folder, wherever the process runs.
    assert drops.source == str((tmp_path / "drops" / "*.ndjson").absolute())
    assert drops.schedule == "0 0 * * *" and drops.lateness_s is None
    assert drops.mapping is not None and drops.mapping.rest == "props"
    assert drops.event_type == "page_view"


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message"),
    [
        ('"15 * * * *"', '"75 * * * *"', '"75 * * * *"', "imports[0].schedule", "Bad minute"),
        (
            "type: page_view",
            "type: pageview",
            "type: pageview",
            "imports[1].type",
            "unknown event type 'pageview'",
        ),
        (
            "source: drops/",
            "source: s3://drops/",
            "s3://drops/",
            "imports[1].source",
            "gs://bucket/prefix or a local path",
        ),
        (
            "lateness: all",
            "lateness: soon",
            "lateness: soon",
            "imports[1].lateness",
            "'soon' is not a duration",
        ),
        (
            "backoff: 1m",
            "backoff: 2h",
            "backoff: 2h",
            "imports[0].backoff",
            "backoff lies between 1s and 1h",
        ),
        ("rest: props}", "rest: all}", "rest: all", "imports[1].mapping.rest", "Input should be"),
        (
            "name: drops",
            "name: shop-orders",
            "name: shop-orders\n    source: drops",
            "imports[1].name",
            "import 'shop-orders' is defined twice",
        ),
        (
            "mappings/orders.yaml",
            "mappings/missing.yaml",
            "missing.yaml",
            "imports[0].mapping",
            "cannot read the mapping",
        ),
    ],
)
def test_a_bad_import_names_the_spec_line_and_field(
    tmp_path: Path, old: str, new: str, needle: str, field: str, message: str
) -> None:
    assert old in IMPORTS
    path = write_spec(tmp_path, IMPORTS.replace(old, new, 1))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    text = path.read_text()
    line = text.count("\n", 0, text.index(needle, text.index("imports:"))) + 1
    [problem] = str(caught.value).splitlines()[1:]
    assert problem.startswith(f"{path}:{line}: {field}: "), problem
    assert message in problem


def test_a_broken_mapping_file_names_both_files_and_lines(tmp_path: Path) -> None:
    broken = MAPPING.replace("zone: Europe/Berlin", "zone: Europe/Berln")
    path = write_spec(tmp_path, IMPORTS, mapping=broken)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    [problem] = str(caught.value).splitlines()[1:]
    mapping_at = f"{tmp_path / 'mappings' / 'orders.yaml'}:3: ts.zone"
    spec_line = DEMO.count("\n") + IMPORTS[: IMPORTS.index("mapping: mappings")].count("\n") + 1
    assert problem.startswith(f"{path}:{spec_line}: imports[0].mapping: "), problem
    assert mapping_at in problem and "unknown time zone 'Europe/Berln'" in problem


def test_the_same_import_twice_is_refused(tmp_path: Path) -> None:
    again = (
        "  - {name: again, source: 'gs://acme-exports/orders', mapping: mappings/orders.yaml,\n"
        '     tenant: acme, schedule: "@hourly"}\n'
    )
    path = write_spec(tmp_path, IMPORTS + again)
    with pytest.raises(SpecError, match=r"imports\[2\]\.source: import 'shop-orders' imports"):
        load_spec(path)
    load_spec(write_spec(tmp_path, IMPORTS + again.replace("tenant: acme", "source_id: b")))


def test_riffle_up_starts_the_scheduler_for_imports_or_reports(tmp_path: Path) -> None:
    settings = Settings(alert_webhook_url="")
    plain = parse_spec(DEMO)
    assert "scheduler" not in spec_children(plain, settings)
    with_imports = load_spec(write_spec(tmp_path, IMPORTS))
    assert spec_children(with_imports, settings)["scheduler"] == ["scheduler"]


def test_riffle_spec_check_counts_the_scheduled_imports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from riffle.cli import app

    path = write_spec(tmp_path, IMPORTS)
    done = CliRunner().invoke(app, ["spec", "check", str(path)])
    assert done.exit_code == 0, done.output
    assert done.output.strip().endswith(" metrics, 2 scheduled imports)")
    broken = write_spec(tmp_path, IMPORTS.replace('"@daily"', '"@never"'))
    failed = CliRunner().invoke(app, ["spec", "check", str(broken)])
    assert failed.exit_code == 1
    assert "imports[1].schedule: Value error, not a cron expression '@never'" in failed.output
