"""Logs are JSON lines with the request id, and never carry a card number."""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.logs import JsonFormatter, PanMaskingFilter, mask_pans
from tests.conftest import TenantKeys

TEST_PANS = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117",
             "3566002020360505", "36227206271667", "2223003122003222", "6200000000000005"]


@pytest.mark.parametrize("pan", TEST_PANS)
@pytest.mark.parametrize("fmt", ["plain", "spaced", "dashed"])
def test_mask_pans(pan: str, fmt: str) -> None:
    text = pan if fmt == "plain" else (" " if fmt == "spaced" else "-").join(
        pan[i:i + 4] for i in range(0, len(pan), 4))
    masked = mask_pans(f"card {text} exp 12/29")
    assert pan[:6] not in masked.replace(" ", "").replace("-", "")
    # The shared detector keeps at most the last four digits, and masks the expiry beside it.
    assert f"****{pan[-4:]}" in masked and "12/29" not in masked


@pytest.mark.parametrize("text", ["order 1234567890123", "call 415-555-0100", "amount 1234.56",
                                  "2026-11-23 15:00:00", "4242424242424241"])
def test_non_cards_are_left_alone(text: str) -> None:
    assert mask_pans(text) == text


@settings(max_examples=200, derandomize=True)
@given(st.text(alphabet="0123456789 -abc", max_size=60))
def test_masking_never_leaves_a_luhn_valid_run(text: str) -> None:
    import re

    from guard.pci.cards import luhn_ok as _luhn_ok

    out = mask_pans(text)
    for m in re.finditer(r"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)", out):
        digits = re.sub(r"\D", "", m.group())
        assert not (12 <= len(digits) <= 19 and _luhn_ok(digits))


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PanMaskingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("guard.test.capture")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_filter_masks_args_and_exceptions() -> None:
    logger, stream = _capture()
    logger.info("charging %s now", "4242 4242 4242 4242")
    try:
        raise ValueError("bad card 5555-5555-5555-4444")
    except ValueError:
        logger.exception("failed")
    out = stream.getvalue()
    assert "4242 4242" not in out and "5555-5555" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["msg"] == "charging [CARD ****4242] now"
    assert "[CARD ****4444]" in lines[1]["exc"] and lines[1]["level"] == "ERROR"


@pytest.mark.integration
def test_request_logs_carry_the_request_id_and_no_pan(app: Flask, tenant: TenantKeys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.auth import service

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("exploded on 4242424242424242")

    monkeypatch.setattr(service, "list_keys", boom)
    stream = io.StringIO()
    root = logging.getLogger()
    handler = next(h for h in root.handlers if getattr(h, "guard_handler", False))
    monkeypatch.setattr(handler, "stream", stream)
    resp = app.test_client().get("/v1/keys", headers={**tenant.headers("admin"),
                                                      "X-Request-Id": "rid-42"})
    assert resp.status_code == 500
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [x for x in lines if x["level"] == "ERROR"]
    assert errors and all(x["request_id"] == "rid-42" for x in errors)
    assert "4242424242424242" not in stream.getvalue()
