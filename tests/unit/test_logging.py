from __future__ import annotations

import json

import pytest
import structlog

from storage.telemetry import configure_logging, trace_id_var


def test_log_lines_are_json_with_the_requests_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", component="test")
    token = trace_id_var.set("abc123")
    try:
        structlog.get_logger("x").info("something_happened", sku="S-1")
    finally:
        trace_id_var.reset(token)
        structlog.reset_defaults()  # the captured stream closes after this test
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "something_happened"
    assert line["trace_id"] == "abc123"
    assert line["component"] == "test"
    assert line["level"] == "info"
