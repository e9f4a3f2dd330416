"""The local stack: real Kafka, PostgreSQL and Redis servers as background processes."""

from streams.stack.errors import MissingDependency, StackError
from streams.stack.launcher import Ports, ServerStatus, down, exports, status, up

__all__ = [
    "MissingDependency",
    "Ports",
    "ServerStatus",
    "StackError",
    "down",
    "exports",
    "status",
    "up",
]
