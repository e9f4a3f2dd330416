"""How the command line fails: one line on stderr naming the cause, exit code 2, no traceback.

``CliError`` is raised by the commands for what the user can fix (a bad id in a file, an
unreadable file, a plan for another command); ``one_line`` turns the errors of the libraries
underneath (a server down, a file missing) into the same kind of line.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class CliError(Exception):
    """A failure the user can act on; its message is the whole explanation."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too (``migrator enqueue: …``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def one_line(exc: BaseException) -> str | None:
    """The one-line message for an error of a dependency or of the system; None if unknown."""
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, CliError):
        return str(exc)
    from streams.connections import unreachable

    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return unreachable("Redis", _url("redis_url"), _first_line(exc))
    if isinstance(exc, RedisError):
        return f"Redis refused: {_first_line(exc)}"
    if isinstance(exc, KafkaConnectionError):
        return unreachable("Kafka", _url("kafka_broker_url"))
    if isinstance(exc, KafkaError):
        return f"Kafka refused: {_first_line(exc) or type(exc).__name__}"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename}: is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    if isinstance(exc, UnicodeDecodeError):
        return f"the input is not UTF-8 text ({exc.reason} at byte {exc.start})"
    return None


def _url(name: str) -> str:
    from streams.connections import redact
    from streams.settings import Settings, SettingsError

    try:
        return redact(str(getattr(Settings.from_env(), name)))
    except SettingsError:
        return "the configured address"


def fail(message: str) -> int:
    print(f"migrator: {message}", file=sys.stderr)
    return 2


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
