"""Fails when the Python lock files and pyproject.toml disagree (run by `make lint`).

requirements/main.txt locks the runtime dependencies (the Docker image installs it),
requirements/dev.txt those plus the `dev` extra (set-up installs it). Each must pin, with
hashes, a version that every requirement of pyproject.toml it covers accepts, and the two
must pin shared packages alike. To update: edit pyproject.toml, then run pip-compile as the
header of each lock file says (`--upgrade-package NAME` to move one pin).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"requirements/main.txt": False, "requirements/dev.txt": True}  # file -> includes the dev extra
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(text: str) -> tuple[dict[str, Version], list[str]]:
    """A lock file's pins, and the names pinned without a hash."""
    found: dict[str, Version] = {}
    unhashed: list[str] = []
    entries = re.split(r"\n(?=\S)", text)
    for entry in entries:
        m = _PIN.match(entry)
        if m is None:
            continue
        name = canonicalize_name(m.group(1))
        found[name] = Version(m.group(2))
        if "--hash=sha256:" not in entry:
            unhashed.append(name)
    return found, unhashed


def problems(pyproject: str, locks: dict[str, tuple[str, bool]]) -> list[str]:
    """What is wrong, one line each; `locks`: file name -> (its text, includes dev)."""
    project = tomllib.loads(pyproject)["project"]
    main = [Requirement(r) for r in project["dependencies"]]
    dev = [Requirement(r) for r in project.get("optional-dependencies", {}).get("dev", [])]
    out: list[str] = []
    pinned: dict[str, dict[str, Version]] = {}
    for name, (text, with_dev) in locks.items():
        found, unhashed = pins(text)
        pinned[name] = found
        out += [f"{name}: {pkg} is pinned without a hash" for pkg in unhashed]
        for req in main + (dev if with_dev else []):
            if req.marker is not None and not req.marker.evaluate():
                continue
            have = found.get(canonicalize_name(req.name))
            if have is None:
                out.append(f"{name}: {req.name} is required by pyproject.toml but not locked")
            elif not req.specifier.contains(have, prereleases=True):
                out.append(f"{name}: {req.name}=={have} does not satisfy pyproject.toml's {req}")
    first, *rest = pinned.values()
    for other in rest:
        for pkg in sorted(first.keys() & other.keys()):
            if first[pkg] != other[pkg]:
                out.append(f"the locks pin {pkg} differently: {first[pkg]} and {other[pkg]}")
    return out


def main() -> int:
    locks = {name: ((ROOT / name).read_text(), dev) for name, dev in LOCKS.items()}
    found = problems((ROOT / "pyproject.toml").read_text(), locks)
    for line in found:
        print(f"lock check: {line}", file=sys.stderr)
    if found:
        print("lock check: update the locks with pip-compile (see scripts/check_lock.py)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
