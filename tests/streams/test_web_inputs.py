"""Every 4xx of the admin endpoints, without a server."""

from __future__ import annotations

import json

import pytest

from streams.web.inputs import InputError, authorize, parse_bulk, parse_options

TOKEN = "a-configured-token-123"


def status_of(call, *args, **kwargs) -> int:
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)
    assert caught.value.message
    return caught.value.status


def test_authorization() -> None:
    assert status_of(authorize, None, f"Bearer {TOKEN}") == 403
    assert status_of(authorize, TOKEN, None) == 401
    assert status_of(authorize, TOKEN, "Bearer") == 401
    assert status_of(authorize, TOKEN, f"Basic {TOKEN}") == 401
    assert status_of(authorize, TOKEN, "Bearer wrong") == 401
    authorize(TOKEN, f"Bearer {TOKEN}")
    authorize(TOKEN, f"bearer {TOKEN}")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{", 400),
        (b"[1]", 400),
        (b'{"user_ids": []}', 400),
        (b'{"user_ids": "u1"}', 400),
        (b'{"user_ids": [1]}', 400),
        (b'{"user_ids": ["bad id"]}', 400),
        (b'{"user_ids": ["u"], "surprise": 1}', 400),
        (b'{"user_ids": ["u"], "dry_run": "yes"}', 400),
        (b'{"all": true, "user_ids": ["u"]}', 400),
        (b'{"all": "yes"}', 400),
        (b'{"user_ids": ["u"], "include_rolled_back": true}', 400),
        (b'{"all": true, "include_rolled_back": 1}', 400),
        (json.dumps({"user_ids": [f"u{i}" for i in range(10_001)]}).encode(), 413),
        (b" " * (1024 * 1024 + 1), 413),
    ],
)
def test_bad_bulk_bodies(raw: bytes, status: int) -> None:
    assert status_of(parse_bulk, raw, allow_all=True) == status


def test_all_is_only_for_migrate_and_ids_are_deduplicated() -> None:
    assert status_of(parse_bulk, b'{"all": true}', allow_all=False) == 400
    assert parse_bulk(b'{"all": true, "dry_run": true}', allow_all=True).user_ids is None
    everyone = parse_bulk(b'{"all": true, "include_rolled_back": true}', allow_all=True)
    assert everyone.user_ids is None and everyone.include_rolled_back is True
    bulk = parse_bulk(b'{"user_ids": ["a", "b", "a"], "reason": "r"}', allow_all=False)
    assert bulk.user_ids == ["a", "b"] and bulk.options.reason == "r"


def test_single_user_options() -> None:
    assert parse_options(b"").dry_run is False
    assert parse_options(b'{"dry_run": true, "requested_by": "ops"}').requested_by == "ops"
    assert status_of(parse_options, b'{"user_ids": ["x"]}') == 400
