"""The processes' log handler writes to the stderr of the moment, never to a closed one."""

from __future__ import annotations

import io
import logging
import sys
import threading

import orjson
import pytest

from riffle.logging import configure_logging


def test_records_follow_stderr_when_it_is_swapped_and_the_old_one_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_logging("INFO", "json")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("tests.logging").info("hello %s", "first")
    assert "hello first" in first.getvalue()
    first.close()  # a test's capture ends; a library thread of an earlier one logs on
    monkeypatch.setattr(sys, "stderr", second)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    thread = threading.Thread(
        target=lambda: logging.getLogger("mail.log").info("%r connection lost", ("h", 1))
    )
    thread.start()
    thread.join()
    record = orjson.loads(second.getvalue().splitlines()[-1])
    assert record["event"] == "('h', 1) connection lost"
    assert record["logger"] == "mail.log"
