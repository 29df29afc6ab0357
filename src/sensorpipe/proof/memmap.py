"""Where a process's resident memory lies, by kind of mapping (/proc/PID/smaps).

A coarse memory profile that needs nothing inside the process: growth in `heap` is the main
malloc arena (the main thread's allocations, Python's small objects included once they spill
out of its own arenas); in `anonymous`, the other threads' malloc arenas, Python's object
arenas and native libraries' own mappings (librdkafka's buffers); `files` are code and
mapped files, which do not grow with work.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("heap", "anonymous", "stack", "files")


def resident_by_kind(pid: int) -> dict[str, float] | None:
    """Resident MB per kind of mapping; None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    kb = dict.fromkeys(KINDS, 0)
    kind = "anonymous"
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if "-" in fields[0] and not fields[0].endswith(":"):  # a header: range perms offset dev inode [path]
            kind = _kind(fields[5] if len(fields) > 5 else "")
        elif fields[0] == "Rss:":
            kb[kind] += int(fields[1])
    return {k: round(v / 1024, 1) for k, v in kb.items()}


def _kind(path: str) -> str:
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack"):
        return "stack"
    if not path or path.startswith("["):  # anonymous, [anon:...], [vvar], [vdso]
        return "anonymous"
    return "files"
