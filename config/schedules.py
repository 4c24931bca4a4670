"""Schedule fields of the spec: cron expressions and report periods, checked on load.

A cron expression is the five fields of cron (minute hour day-of-month month
day-of-week) or one of ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``; it is
read on the wall clock of the job's tenant (``operators.schedule``). A period is
``hour``, ``day``, ``week``, ``month`` or a duration (``30m``, ``24h``, ``7d``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 1",
    "@monthly": "0 0 1 * *",
}
DURATION = re.compile(r"^(\d+)(m|h|d)$")
"""A period given as a duration: minutes, hours or days."""


def check_cron(expr: str) -> str:
    """``expr`` with aliases expanded; ``ValueError`` naming what is wrong."""
    expanded = ALIASES.get(expr.strip(), expr.strip())
    try:
        CronSim(expanded, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"not a cron expression {expr!r}: {exc}") from None
    return expanded


def check_period(text: str) -> str:
    """``text`` when it names a period; ``ValueError`` otherwise."""
    found = DURATION.match(text)
    if text in ("hour", "day", "week", "month") or (found and int(found.group(1)) > 0):
        return text
    raise ValueError(f"a period is hour, day, week, month or a duration like 24h (got {text!r})")


Cron = Annotated[str, AfterValidator(check_cron)]
"""A cron expression in the spec (aliases expanded)."""
Period = Annotated[str, AfterValidator(check_period)]
"""A report period in the spec."""
