"""scripts/check_lock.py: the check that the Python locks and pyproject.toml agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PYPROJECT = """
[project]
dependencies = ["orjson>=3.10,<4", "numpy>=1.26; python_version < '3'"]
[project.optional-dependencies]
dev = ["pytest>=8"]
"""
HASH = "    --hash=sha256:" + "0" * 64


def test_the_repositorys_locks_agree_with_pyproject() -> None:
    check = _check()
    locks = {name: ((ROOT / name).read_text(), dev) for name, dev in check.LOCKS.items()}
    assert check.problems((ROOT / "pyproject.toml").read_text(), locks) == []


def test_a_pin_outside_the_range_a_missing_pin_a_missing_hash_and_a_split_pin_are_each_reported() -> None:
    check = _check()
    main = f"orjson==3.11.0 \\\n{HASH}\n    # via sensorpipe\n"
    dev_ok = f"orjson==3.11.0 \\\n{HASH}\npytest==8.3.0 \\\n{HASH}\n"
    assert check.problems(PYPROJECT, {"main": (main, False), "dev": (dev_ok, True)}) == []
    dev_bad = "orjson==4.0.1 \\\n" + HASH + "\nruff==0.6.0\n"
    found = check.problems(PYPROJECT, {"main": (main, False), "dev": (dev_bad, True)})
    assert found == [
        "dev: ruff is pinned without a hash",
        "dev: orjson==4.0.1 does not satisfy pyproject.toml's orjson<4,>=3.10",
        "dev: pytest is required by pyproject.toml but not locked",
        "the locks pin orjson differently: 3.11.0 and 4.0.1",
    ]
