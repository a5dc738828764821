"""A server in a child process for the serving benchmarks: a free port, start it, wait for /health, stop it.

Shared by serve_load.py, serve_floor.py and serve_bombs.py (run as scripts from any folder: each puts this folder
on `sys.path`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(cmd: Sequence[str], port: int, log: Path, timeout_s: float = 60.0,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` with its output in `log` (a file, not a pipe nobody drains) and return once
    http://127.0.0.1:PORT/health answers 200; killed, with the log's tail in the error, if it does not within
    `timeout_s` or exits first."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(list(cmd), stdout=sink, stderr=subprocess.STDOUT, cwd=cwd,
                                env=None if env is None else {**os.environ, **env})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    """SIGTERM (or SIGKILL: a server still decoding does not stop on SIGTERM) and wait for the process."""
    proc.kill() if kill else proc.terminate()
    proc.wait(timeout=30)


@contextmanager
def running_server(cmd: Sequence[str], port: int, log: Path, timeout_s: float = 60.0,
                   env: Mapping[str, str] | None = None, cwd: Path | None = None,
                   kill: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """`start_server`, then `stop_server` when the block ends (whatever happened in it)."""
    proc = start_server(cmd, port, log, timeout_s, env, cwd)
    try:
        yield proc
    finally:
        stop_server(proc, kill)
