"""Background server processes owned by one stack directory: start, identify, stop.

A pid file alone is not proof of ownership (pids are reused), so every server runs with its own
directory under the stack as its working directory and we check ``/proc/<pid>/cwd`` before we
signal anything. ``down`` therefore never touches a process of another stack or of the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerProcess:
    """Where one server of a stack keeps its pid file, log and working directory."""

    name: str
    workdir: Path

    @property
    def pid_file(self) -> Path:
        return self.workdir.parent / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir.parent / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of this server if it is running and really ours, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _owned_by(pid, self.workdir) else None

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> int:
        """Start ``argv`` detached (own session) with output appended to the log file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                user=user,
                group=_group_of(user),
            )
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def stop(self, *, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
        """Stop the server and everything in its process group; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        # Whatever is left of the group (a hung JVM, orphaned postgres children) is killed outright.
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _owned_by(pid: int, workdir: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(workdir.resolve())
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes: it answers nothing and holds no port.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_of(user: str | None) -> str | None:
    if user is None:
        return None
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
