from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError


def test_defaults_match_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_broker_url == "kafka://localhost:9092"
    assert settings.app_id == "onboarding-migrator"
    assert settings.web_port == 6066
    assert settings.processing_guarantee == "exactly_once"
    assert settings.admin_token_value is None
    assert settings.read_token_value is None


def test_environment_overrides_and_empty_means_unset() -> None:
    settings = Settings.from_env(
        {
            "KAFKA_BROKER_URL": "kafka://a:1;b:2",
            "MIGRATOR_WEB_PORT": "7000",
            "MIGRATOR_PROCESSING_GUARANTEE": "at_least_once",
            "MIGRATOR_ADMIN_TOKEN": "",
        }
    )
    assert settings.kafka_bootstrap_servers == ["a:1", "b:2"]
    assert settings.web_port == 7000
    assert settings.processing_guarantee == "at_least_once"
    assert settings.admin_token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MIGRATOR_PROCESSING_GUARANTEE", "maybe_once"),
        ("MIGRATOR_WEB_PORT", "http"),
        ("KAFKA_BROKER_URL", "localhost:9092"),
        ("DATABASE_URL", "mysql://x"),
        ("MIGRATOR_ADMIN_TOKEN", "changeme"),
        ("MIGRATOR_ADMIN_TOKEN", "short"),
        ("MIGRATOR_READ_TOKEN", "secret"),
        ("MIGRATOR_READ_TOKEN", "short"),
        ("MIGRATOR_EVENT_LOOP", "trio"),
        ("MIGRATOR_RUN_EVENTS", "sometimes"),
        ("MIGRATOR_HOOKS_DIR", "/no/such/hooks/dir"),
        ("MIGRATOR_HOOK_TIMEOUT_S", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)


def test_token_is_not_printed() -> None:
    settings = Settings.from_env({"MIGRATOR_ADMIN_TOKEN": "a-long-enough-secret-token"})
    assert "a-long-enough" not in repr(settings)
    assert settings.admin_token_value == "a-long-enough-secret-token"


def test_the_read_token_is_read_and_must_differ_from_the_admin_token() -> None:
    settings = Settings.from_env(
        {"MIGRATOR_READ_TOKEN": "a-long-enough-read-token", "MIGRATOR_ADMIN_TOKEN": ""}
    )
    assert settings.read_token_value == "a-long-enough-read-token"
    assert settings.admin_token_value is None
    assert "a-long-enough" not in repr(settings)
    same = "a-long-enough-secret-token"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"MIGRATOR_READ_TOKEN": same, "MIGRATOR_ADMIN_TOKEN": same})
    message = str(caught.value)
    assert "MIGRATOR_READ_TOKEN must differ from MIGRATOR_ADMIN_TOKEN" in message, message
    assert "?" not in message


def test_the_worker_runs_uvloop_unless_told_asyncio() -> None:
    import asyncio

    from streams.worker import use_event_loop

    assert Settings.from_env({}).event_loop == "uvloop"
    assert Settings.from_env({"MIGRATOR_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    try:
        use_event_loop("uvloop")
        loop = asyncio.new_event_loop()
        assert type(loop).__module__.startswith("uvloop")
        loop.close()
    finally:
        use_event_loop("asyncio")
    loop = asyncio.new_event_loop()
    assert type(loop).__module__.startswith("asyncio")
    loop.close()


def test_the_settled_collector_no_longer_sees_what_existed_and_collects_the_young_less_often() -> (
    None
):
    import gc

    from streams.worker import GC_YOUNG_THRESHOLD, settle_garbage_collector

    before = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 10_000  # every module, class and function loaded so far
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        # Something made afterwards is still collected: a cycle with nothing pointing at it.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_run_events_are_on_and_hooks_off_by_default(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    assert settings.run_events and settings.hooks_dir is None and settings.hook_timeout_s == 30
    hooked = Settings.from_env({"MIGRATOR_RUN_EVENTS": "off", "MIGRATOR_HOOKS_DIR": str(tmp_path)})
    assert not hooked.run_events and hooked.hooks_dir == str(tmp_path)
