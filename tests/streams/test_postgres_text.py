"""Text that reaches PostgreSQL's jsonb: a NUL is stored as U+FFFD, nothing else changes."""

from __future__ import annotations

import json

import pytest

from streams.connections import postgres_safe_json


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("a\x00b", "a\ufffdb"),
        ("\x00\x00", "\ufffd\ufffd"),
        ("\\u0000 as six characters", "\\u0000 as six characters"),
        ("\\\x00", "\\\ufffd"),
    ],
)
def test_only_a_real_nul_is_replaced(text: str, stored: str) -> None:
    encoded = json.dumps({"reason": text}).encode()
    assert json.loads(postgres_safe_json(encoded)) == {"reason": stored}
