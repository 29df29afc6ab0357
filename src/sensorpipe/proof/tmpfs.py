"""A small filesystem for the disk faults: a size-limited tmpfs, mounted for the caller and
removed afterwards. It lives under the system's temporary folder, so that PostgreSQL's server
user can reach a cluster kept there. Mounting needs root (CI runs as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(size: int, name: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        raise PermissionError(f"mounting a tmpfs for {name} needs root")
    mount = Path(tempfile.gettempdir()) / f"sensorpipe-{name}-{uuid.uuid4().hex[:8]}"
    mount.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def fill(path: Path, leave: int) -> int:
    """Write a ballast file (`path/ballast`) until `leave` bytes stay free on `path`'s
    filesystem; returns its size. Whole MiB, so it may leave up to a MiB more."""
    chunk = b"\0" * (1 << 20)
    want = max(0, shutil.disk_usage(path).free - leave) // len(chunk)
    with open(path / "ballast", "wb") as f:
        for _ in range(want):
            f.write(chunk)
    return want * len(chunk)
