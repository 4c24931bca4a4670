"""`make bench`'s summary: recorded figures come back as verdicts against issue 12's targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import results, summary


def test_recorded_figures_are_judged_against_their_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bench.jsonl"
    monkeypatch.setenv(results.ENV, str(path))
    results.record("e2e", events_per_cpu_s=20_000.0, ratio=0.05)
    results.record("e2e", events_per_cpu_s=30_000.0, ratio=0.1)  # the last run counts
    results.record("idle", stack_pct=12.5)
    results.record("pipeline", ratio_cpu=0.49)
    rows = {line.split("  ")[0].strip(): line for line in summary.table(results.read(path))}
    assert "30,000" in rows["riffle run, demo spec: events/CPU-s"]
    assert "missed: 2.5x short" in rows["riffle run, demo spec: events/CPU-s"]
    assert "missed: 2.5x short" in rows["riffle run / raw consumer loop"]
    assert "missed: 1.02x short" in rows["metrics flow / reference loop (CPU)"]
    assert " met " in rows["make run at 200 ev/s: stack CPU"]
    assert "not measured" in rows["2 riffle run processes vs 1"]


def test_nothing_is_written_without_a_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(results.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    results.record("e2e", events_per_cpu_s=1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "verdict"),
    [(20.0, "met"), (19.0, "met"), (40.0, "missed: 2.0x over")],
)
def test_an_upper_bound_is_missed_by_its_factor(value: float, verdict: str) -> None:
    target = summary.Target("p99", "query", "p99", 20, at_least=False, unit=" ms")
    assert target.verdict(value) == verdict
