"""Run ctdhub's commands as real processes, the way a newcomer does, and watch their output."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
#: A guard against a hung child, never an assertion: the tests count lines and exit statuses.
HANG_GUARD_S = 600


def hub_environment(instance: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment with the hub's settings pointed into ``instance``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTDHUB_")}
    env.update(
        CTDHUB_DATABASE_URL=f"sqlite:///{instance / 'hub.sqlite3'}",
        CTDHUB_KEYRING_FILE=str(instance / "keyring.json"),
        CTDHUB_RELEASE_DIRECTORY=str(instance / "releases"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def free_port() -> int:
    """Return a loopback port nobody listens on (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Tell whether ``port`` can be bound on the loopback interface."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Running:
    """A child process whose output (stdout and stderr together) is read line by line."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, marker: str, limit: float = HANG_GUARD_S) -> None:
        """Read output until a line contains ``marker``; fail if the process ends first, or
        (killing it) if no line comes for ``limit`` seconds."""
        while True:
            try:
                line = self._queue.get(timeout=limit)
            except queue.Empty:
                self.process.kill()
                pytest.fail(f"no {marker!r} line; output so far: {self.lines[-20:]}")
            if line is None:
                pytest.fail(f"the process ended before {marker!r}: {self.lines[-20:]}")
            self.lines.append(line)
            if marker in line:
                return

    def finish(self) -> int:
        """Wait for the process to end, keeping the rest of its output; return its status."""
        try:
            status = self.process.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        while (line := self._queue.get(timeout=HANG_GUARD_S)) is not None:
            self.lines.append(line)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return status


def start(args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> Running:
    """Start ``args`` with its output piped to a :class:`Running`."""
    process = subprocess.Popen(  # noqa: S603 - our own commands, fixed arguments
        args,
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    return Running(process)
