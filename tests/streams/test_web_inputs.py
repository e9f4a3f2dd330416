"""Every 4xx of the admin endpoints and of the reads of users' data, without a server."""

from __future__ import annotations

import json

import pytest

from streams.web.inputs import (
    InputError,
    authorize,
    authorize_read,
    check_run_id,
    may_read_user_ids,
    parse_bulk,
    parse_cancel,
    parse_options,
    parse_pause,
    parse_throttle,
)

TOKEN = "a-configured-token-123"
READ = "a-configured-read-token"


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


def test_read_authorization_takes_the_read_or_the_admin_token() -> None:
    authorize_read(READ, TOKEN, f"Bearer {READ}")
    authorize_read(READ, TOKEN, f"Bearer {TOKEN}")
    authorize_read(None, TOKEN, f"bearer {TOKEN}")  # the admin token alone serves reads
    authorize_read(READ, None, f"Bearer {READ}")
    for header in (None, "", "Bearer", "Bearer  ", f"Basic {READ}", f"{READ}"):
        assert status_of(authorize_read, READ, TOKEN, header) == 401, header
    assert status_of(authorize_read, READ, TOKEN, "Bearer wrong") == 401
    assert status_of(authorize_read, READ, None, f"Bearer {TOKEN}") == 401
    assert status_of(authorize_read, None, TOKEN, f"Bearer {READ}") == 401
    assert status_of(authorize_read, READ, TOKEN, f"Bearer {READ}x") == 401
    # The admin endpoints do not take the read token.
    assert status_of(authorize, TOKEN, f"Bearer {READ}") == 401


def test_reads_of_users_data_are_refused_when_no_token_is_configured() -> None:
    with pytest.raises(InputError) as refused:
        authorize_read(None, None, f"Bearer {READ}")
    assert refused.value.status == 403 and "MIGRATOR_READ_TOKEN" in refused.value.message
    assert status_of(authorize_read, "", None, None) == 403


def test_open_answers_name_users_only_for_a_right_token() -> None:
    assert may_read_user_ids(READ, TOKEN, None) is False
    assert may_read_user_ids(READ, TOKEN, "  ") is False
    assert may_read_user_ids(None, None, None) is False  # aggregates stay open, unconfigured
    assert may_read_user_ids(READ, TOKEN, f"Bearer {READ}") is True
    assert may_read_user_ids(READ, TOKEN, f"Bearer {TOKEN}") is True
    # A token given and wrong is an error, not a quiet answer without the ids.
    assert status_of(may_read_user_ids, READ, TOKEN, "Bearer wrong") == 401
    assert status_of(may_read_user_ids, READ, TOKEN, f"Basic {READ}") == 401
    assert status_of(may_read_user_ids, None, None, f"Bearer {READ}") == 403


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


def test_a_run_and_its_cohort_are_read_from_a_bulk_body() -> None:
    bulk = parse_bulk(b'{"all": true, "run": "canary", "percent": 1}', allow_all=True)
    assert bulk.user_ids is None and bulk.percent == 1 and bulk.options.run_id == "canary"
    ids = parse_bulk(b'{"user_ids": ["u1"], "run": "wave-2"}', allow_all=False)
    assert ids.options.run_id == "wave-2"
    for body, words in (
        (b'{"all": true, "percent": 1}', "percent goes with all and run"),
        (b'{"user_ids": ["u1"], "run": "r", "percent": 5}', "percent goes with all and run"),
        (b'{"all": true, "run": "bad run!"}', "run"),
        (b'{"all": true, "run": "r", "percent": 0}', "percent"),
    ):
        with pytest.raises(InputError) as refused:
            parse_bulk(body, allow_all=True)
        assert refused.value.status == 400 and words in refused.value.message


def test_control_bodies_are_checked() -> None:
    assert parse_pause(b"").by == "http-api"
    assert parse_pause(b'{"reason": "canary", "by": "ops"}').reason == "canary"
    assert parse_throttle(b'{"rate": 250}').rate == 250
    assert parse_throttle(b'{"rate": null}').rate is None
    for body in (
        b"{}",
        b'{"rate": -1}',
        b'{"rate": "fast"}',
        b'{"rate": 5, "x": 1}',
        b'{"rate": 1e-07}',  # a pause in all but name
        b'{"rate": 5e-324}',
    ):
        with pytest.raises(InputError) as refused:
            parse_throttle(body)
        assert refused.value.status == 400
    with pytest.raises(InputError):
        parse_pause(b'{"paused": true}')
    with pytest.raises(InputError):
        check_run_id("no spaces")


def test_a_cancel_body_is_checked() -> None:
    assert parse_cancel(b"").by == "http-api" and parse_cancel(b"").reason is None
    assert parse_cancel(b'{"reason": "wrong wave", "by": "ops"}').reason == "wrong wave"
    for body in (
        b'{"reason": 5}',
        b'{"by": ""}',
        b'{"run": "x"}',
        b"[]",
        b"{",
        b'{"reason": "' + b"x" * 513 + b'"}',
    ):
        with pytest.raises(InputError) as refused:
            parse_cancel(body)
        assert refused.value.status == 400, body


def test_a_body_nested_too_deeply_is_not_json_not_a_server_error() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    for parse in (parse_options, parse_pause, parse_throttle, parse_cancel):
        with pytest.raises(InputError) as refused:
            parse(deep)  # type: ignore[operator]
        assert refused.value.status == 400 and "nested too deeply" in refused.value.message
    with pytest.raises(InputError, match="nested too deeply"):
        parse_bulk(b'{"user_ids": ' + deep + b"}", allow_all=True)
