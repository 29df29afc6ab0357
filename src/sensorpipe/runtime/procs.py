"""Process plumbing for the local platform: spawning, pid records, port checks, stopping.

A pid record stores the pid *and* the process start time from /proc, so a record whose
pid was reused by an unrelated process is recognised as stale instead of being signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

_PR_SET_PDEATHSIG = 1


class PlatformError(RuntimeError):
    """A problem the user can fix; the message names the cause and the fix."""


def _set_pdeathsig(sig: int) -> Callable[[], None]:
    """Child-side hook: die with `sig` when the supervisor dies, so nothing is orphaned.

    libc is loaded here, in the parent, so the child between fork and exec only makes
    one system call and takes no loader lock that another thread might hold.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return hook


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` in clock ticks, or None when no such process exists."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return int(fields[19])


def pid_alive(pid: int) -> bool:
    return start_time(pid) is not None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_port(port: int, what: str, env_var: str) -> None:
    if not port_free(port):
        raise PlatformError(
            f"port {port} on 127.0.0.1 is already in use, so {what} cannot listen there. "
            f"Stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) or set {env_var} to a free port."
        )


@dataclass(frozen=True)
class PidRecord:
    """What `status` needs to know about one running component."""

    name: str
    pid: int
    started: int  # /proc start time, guards against pid reuse
    address: str | None = None
    log: str | None = None

    def alive(self) -> bool:
        return start_time(self.pid) == self.started


class RunDir:
    """The `run/` folder of the state dir: one JSON pid record per component."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "run"

    def write(self, rec: PidRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{rec.name}.json.tmp"
        tmp.write_bytes(orjson.dumps(asdict(rec)))
        tmp.replace(self.path / f"{rec.name}.json")

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / f"{name}.json").unlink()

    def read(self, name: str) -> PidRecord | None:
        try:
            return PidRecord(**orjson.loads((self.path / f"{name}.json").read_bytes()))
        except (FileNotFoundError, orjson.JSONDecodeError, TypeError):
            return None

    def all(self) -> list[PidRecord]:
        if not self.path.is_dir():
            return []
        recs = [self.read(p.stem) for p in sorted(self.path.glob("*.json"))]
        return [r for r in recs if r is not None]


def spawn(
    cmd: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (a terminal's Ctrl-C reaches only the supervisor, which
    then stops children in order) with output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            preexec_fn=_set_pdeathsig(death_signal),  # noqa: PLW1509 - the hook only calls prctl
        )


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Send `sig`, wait up to `timeout`, then SIGKILL. True if the process had to be killed."""
    started = start_time(pid)
    if started is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if start_time(pid) != started:
            return False
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text[-lines:])
