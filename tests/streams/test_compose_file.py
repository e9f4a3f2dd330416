"""docker-compose.yml and the image build are parsed and checked: no Docker engine runs here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_services_are_the_stack_and_the_worker() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "redis", "migrator"} <= set(services)


def test_images_are_pinned_to_exact_versions() -> None:
    for name, service in _compose()["services"].items():
        image = service.get("image")
        if "build" in service:
            continue
        assert image, f"{name} has neither image nor build"
        repository, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        assert any(ch.isdigit() for ch in tag), f"{name}: tag {tag!r} names no version"
    assert _compose()["services"]["kafka"]["image"].startswith("apache/kafka:4.")


def test_long_running_services_have_healthchecks_and_wait_for_health() -> None:
    services = _compose()["services"]
    for name in ("kafka", "postgres", "redis", "migrator"):
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
    waits = services["migrator"]["depends_on"]
    for dependency in ("kafka", "postgres", "redis"):
        assert waits[dependency]["condition"] == "service_healthy"


def test_kafka_is_kraft_with_single_broker_transactions() -> None:
    env = _compose()["services"]["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"


def test_worker_gets_the_contract_configuration() -> None:
    env = _compose()["services"]["migrator"]["environment"]
    for name in ("KAFKA_BROKER_URL", "DATABASE_URL", "REDIS_URL", "MIGRATOR_APP_ID"):
        assert env[name], name
    assert env["KAFKA_BROKER_URL"].startswith("kafka://")


def _dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_image_installs_the_pinned_versions() -> None:
    instructions = _dockerfile_instructions()
    installs = [i for i in instructions if i.startswith("RUN") and "pip install" in i]
    assert installs, "the Dockerfile installs nothing with pip"
    for install in installs:
        for command in install.split("&&"):
            if "pip install" in command:
                assert "-c constraints.txt" in command, f"unpinned: {command.strip()}"
    copied_first = instructions.index(installs[0])
    assert any(
        i.startswith("COPY") and "constraints.txt" in i.split() for i in instructions[:copied_first]
    ), "constraints.txt is not copied into the image before the first pip install"


def test_the_production_image_leaves_the_local_stack_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "streams/stack" in ignored and "tests" in ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY streams ./streams" in dockerfile  # filtered by .dockerignore
