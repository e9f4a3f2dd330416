"""Development tooling, not the service: real Kafka, PostgreSQL and Redis as local processes.

``migrator stack up`` downloads Kafka from Maven Central and runs PostgreSQL and Redis from the
``[stack]`` extra's wheels, for the demo, the tests and the benchmark on a machine without a
container engine. The production image leaves this package out (``.dockerignore``); there the
servers are the deployment's own (``docker-compose.yml`` or managed services).
"""

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
